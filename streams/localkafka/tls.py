"""TLS for the local Kafka: a throw-away certificate authority, and a broker whose
listeners speak SSL with client certificates required (mutual TLS).

A client's principal is the CN of its certificate (``CN=analyst`` is
``User:analyst``, the same names as the SASL users of streams/localkafka/security.py),
and ``StandardAuthorizer`` denies what no ACL allows, with ``admin`` and the broker
itself as super users. Certificates are made with the ``openssl`` command line
(EC P-256 keys, PKCS#8 PEM, which Kafka reads as ``ssl.keystore.type=PEM``), valid
for 127.0.0.1 and localhost: for tests and local trials, not for production.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from privmon.streams.kafka_client import ClientSecurity, KafkaOptions

ADMIN = "admin"
BROKER = "broker"  # the broker's own principal (inter-broker and controller connections)
DAYS = 30


@dataclass(frozen=True)
class Pki:
    """A directory of PEM files: ``ca.pem``, the broker's ``broker-keystore.pem``
    (key, then certificate) and per client ``<name>.pem`` + ``<name>.key``."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def broker_keystore(self) -> Path:
        return self.dir / "broker-keystore.pem"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def client(self, name: str) -> ClientSecurity:
        """The mutual-TLS connection of principal ``name``."""
        if not self.cert(name).exists():
            raise ValueError(f"no certificate for {name!r} in {self.dir}")
        return ClientSecurity(ca_file=self.ca, cert_file=self.cert(name),
                              key_file=self.key(name))

    def client_options(self, name: str) -> KafkaOptions:
        return self.client(name).options()


def _openssl(*args: str, cwd: Path) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {out.stderr.strip()}")


def _key(name: str, cwd: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", f"{name}.key", cwd=cwd)


def _signed(name: str, cwd: Path, *, extensions: str) -> None:
    _key(name, cwd)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}",
             "-out", f"{name}.csr", cwd=cwd)
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", str(DAYS), "-sha256", "-extfile", f"{name}.ext",
             "-out", f"{name}.pem", cwd=cwd)


def make_pki(directory: Path, clients: Iterable[str]) -> Pki:
    """A new CA, a broker certificate for 127.0.0.1/localhost and one client certificate
    per name (``admin`` always among them: the local broker's tools log in as admin)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed to make certificates")
    directory.mkdir(parents=True, exist_ok=True)
    _key("ca", directory)
    _openssl("req", "-new", "-x509", "-key", "ca.key", "-subj", "/CN=privmon local CA",
             "-days", str(DAYS), "-sha256", "-out", "ca.pem", cwd=directory)
    _signed(BROKER, directory, extensions=(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"))
    for name in dict.fromkeys([ADMIN, *clients]):
        _signed(name, directory, extensions="extendedKeyUsage=clientAuth\n")
    pki = Pki(directory)
    pki.broker_keystore.write_text((directory / f"{BROKER}.key").read_text()
                                   + (directory / f"{BROKER}.pem").read_text())
    return pki


def broker_properties(host: str, port: int, controller_port: int, pki: Pki) -> list[str]:
    """Both listeners SSL with client certificates required; principals from the CN."""
    return [
        f"listeners=SSL://{host}:{port},CONTROLLER://{host}:{controller_port}",
        f"advertised.listeners=SSL://{host}:{port}",
        "listener.security.protocol.map=SSL:SSL,CONTROLLER:SSL",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=SSL",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={pki.broker_keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={pki.ca}",
        "ssl.client.auth=required",
        "ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{ADMIN};User:{BROKER}",
        "allow.everyone.if.no.acl.found=false",
    ]
