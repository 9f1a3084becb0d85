"""How every privmon Kafka client connects: PLAINTEXT, SASL_PLAINTEXT, SSL (with a
client certificate: mTLS) or SASL_SSL, from command-line flags or the environment.

One place builds the options, and both client libraries take them: aiokafka's and
kafka-python's clients share the names ``security_protocol``, ``sasl_mechanism``,
``sasl_plain_username``, ``sasl_plain_password`` and ``ssl_context`` (TLS goes in as
one ``ssl.SSLContext``, which both accept). Secrets never come from the command line,
where other local users could read them: the SASL password is in
$PRIVMON_KAFKA_PASSWORD and a client key's passphrase in $PRIVMON_TLS_KEY_PASSWORD.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BOOTSTRAP_ENV = "PRIVMON_BOOTSTRAP"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
PASSWORD_ENV = "PRIVMON_KAFKA_PASSWORD"
CA_ENV = "PRIVMON_TLS_CA"
CERT_ENV = "PRIVMON_TLS_CERT"
KEY_ENV = "PRIVMON_TLS_KEY"
KEY_PASSWORD_ENV = "PRIVMON_TLS_KEY_PASSWORD"
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")

KafkaOptions = Mapping[str, Any]  # keyword arguments of an aiokafka or kafka-python client


class ClientSecurityError(ValueError):
    """The connection settings are incomplete or point at unusable files."""


@dataclass(frozen=True, kw_only=True)
class ClientSecurity:
    """A client's identity and transport. ``tls`` (implied by any certificate file):
    encrypt, and verify the broker against ``ca_file`` (else the system's CAs);
    ``cert_file`` + ``key_file``: present a client certificate (mTLS, the principal is
    then taken from it by the broker); ``sasl_user``: authenticate with SASL."""

    sasl_user: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    sasl_mechanism: str = "SCRAM-SHA-256"
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.sasl_user and not self.sasl_password:
            raise ClientSecurityError(
                f"--sasl-user {self.sasl_user} needs the password in ${PASSWORD_ENV} (not on "
                "the command line, where other local users could read it)")
        if self.sasl_mechanism not in MECHANISMS:
            raise ClientSecurityError(
                f"--sasl-mechanism: expected one of {', '.join(MECHANISMS)}, got "
                f"{self.sasl_mechanism!r}")
        if (self.cert_file is None) != (self.key_file is None):
            given, missing = (("--tls-cert", "--tls-key") if self.key_file is None
                              else ("--tls-key", "--tls-cert"))
            raise ClientSecurityError(
                f"{given} needs {missing} too (a client certificate and its private key; "
                f"${CERT_ENV} and ${KEY_ENV})")
        for flag, path in (("--tls-ca", self.ca_file), ("--tls-cert", self.cert_file),
                           ("--tls-key", self.key_file)):
            if path is not None and not Path(path).is_file():
                raise ClientSecurityError(f"{flag}: no such file: {path}")

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None

    @property
    def protocol(self) -> str:
        """Kafka's name for this transport: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
        if self.sasl_user:
            return "SASL_SSL" if self.uses_tls else "SASL_PLAINTEXT"
        return "SSL" if self.uses_tls else "PLAINTEXT"

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the broker's certificate and host name; presents ours if given."""
        try:
            context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file else None)
        except (ssl.SSLError, OSError) as exc:
            raise ClientSecurityError(
                f"--tls-ca {self.ca_file}: not a PEM CA certificate ({exc})") from exc
        if self.cert_file is not None:
            try:
                context.load_cert_chain(str(self.cert_file), str(self.key_file),
                                        password=self.key_password)
            except (ssl.SSLError, OSError) as exc:
                raise ClientSecurityError(
                    f"--tls-cert {self.cert_file} / --tls-key {self.key_file}: cannot load "
                    f"the client certificate ({exc}); a passphrase goes in "
                    f"${KEY_PASSWORD_ENV}") from exc
        return context

    def options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's and kafka-python's clients ({} for
        PLAINTEXT, so that an unsecured deployment's clients are built as before)."""
        if self.protocol == "PLAINTEXT":
            return {}
        out: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            out["ssl_context"] = self.ssl_context()
        if self.sasl_user:
            out.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_user,
                       sasl_plain_password=self.sasl_password)
        return out


def from_settings(*, sasl_user: str | None = None, sasl_mechanism: str = "SCRAM-SHA-256",
                  tls: bool = False, ca_file: str | Path | None = None,
                  cert_file: str | Path | None = None, key_file: str | Path | None = None,
                  environ: Mapping[str, str]) -> ClientSecurity:
    """Flags first, then the environment ($PRIVMON_TLS_CA, $PRIVMON_TLS_CERT,
    $PRIVMON_TLS_KEY); the secrets only from the environment."""
    def path(value: str | Path | None, env: str) -> Path | None:
        chosen = value or environ.get(env)
        return Path(chosen) if chosen else None

    return ClientSecurity(
        sasl_user=sasl_user or None, sasl_password=environ.get(PASSWORD_ENV) or None,
        sasl_mechanism=sasl_mechanism, tls=tls, ca_file=path(ca_file, CA_ENV),
        cert_file=path(cert_file, CERT_ENV), key_file=path(key_file, KEY_ENV),
        key_password=environ.get(KEY_PASSWORD_ENV) or None)


def default_bootstrap(environ: Mapping[str, str]) -> str:
    """The bootstrap servers when none are given: $PRIVMON_BOOTSTRAP, else the local
    broker's default address (every command and the pandas API)."""
    return environ.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP
