"""The one place client connections are built (streams/kafka_client.py): which protocol
each combination of settings means, what reaches the clients, and errors that name
the flag."""

from __future__ import annotations

import ssl

import pytest

from privmon.streams.kafka_client import ClientSecurity, ClientSecurityError, from_settings
from privmon.streams.localkafka.tls import make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"), ["analyst"])


def test_each_combination_names_its_protocol(pki):
    assert ClientSecurity().protocol == "PLAINTEXT" and ClientSecurity().options() == {}
    sasl = ClientSecurity(sasl_user="analyst", sasl_password="pw")
    assert sasl.protocol == "SASL_PLAINTEXT"
    assert sasl.options() == {"security_protocol": "SASL_PLAINTEXT",
                              "sasl_mechanism": "SCRAM-SHA-256",
                              "sasl_plain_username": "analyst", "sasl_plain_password": "pw"}
    tls = ClientSecurity(ca_file=pki.ca)
    assert tls.protocol == "SSL"
    assert isinstance(tls.options()["ssl_context"], ssl.SSLContext)
    both = ClientSecurity(sasl_user="analyst", sasl_password="pw", tls=True)
    assert both.protocol == "SASL_SSL" and "ssl_context" in both.options()
    mtls = pki.client("analyst")
    assert mtls.protocol == "SSL"
    context = mtls.options()["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_the_environment_fills_in_what_the_flags_leave_out(pki):
    env = {"PRIVMON_TLS_CA": str(pki.ca), "PRIVMON_TLS_CERT": str(pki.cert("analyst")),
           "PRIVMON_TLS_KEY": str(pki.key("analyst")), "PRIVMON_KAFKA_PASSWORD": "pw"}
    got = from_settings(environ=env)
    assert (got.ca_file, got.cert_file, got.protocol) == (pki.ca, pki.cert("analyst"), "SSL")
    assert from_settings(sasl_user="u", environ=env).protocol == "SASL_SSL"
    assert from_settings(ca_file=pki.cert("admin"), environ=env).ca_file == pki.cert("admin")
    assert "pw" not in repr(from_settings(sasl_user="u", environ=env))  # secrets stay out


@pytest.mark.parametrize("kwargs, message", [
    ({"sasl_user": "analyst"}, r"--sasl-user analyst needs the password in \$PRIVMON_KAFKA"),
    ({"sasl_user": "a", "sasl_password": "p", "sasl_mechanism": "GSSAPI"},
     "--sasl-mechanism: expected one of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN, got 'GSSAPI'"),
    ({"cert_file": "CERT"}, "--tls-cert needs --tls-key too"),
    ({"key_file": "KEY"}, "--tls-key needs --tls-cert too"),
    ({"ca_file": "/nonexistent/ca.pem"}, "--tls-ca: no such file: /nonexistent/ca.pem"),
])
def test_incomplete_settings_name_the_flag(pki, kwargs, message):
    kwargs = {k: (pki.cert("analyst") if v == "CERT" else pki.key("analyst") if v == "KEY"
                  else v) for k, v in kwargs.items()}
    with pytest.raises(ClientSecurityError, match=message):
        ClientSecurity(**kwargs)


def test_unusable_files_name_the_flag_and_the_file(pki, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ClientSecurityError, match="--tls-ca .*junk.pem: not a PEM CA"):
        ClientSecurity(ca_file=junk).options()
    with pytest.raises(ClientSecurityError, match="--tls-cert .*analyst.pem / --tls-key .*"
                       "admin.key: cannot load"):  # a key that is not the certificate's
        ClientSecurity(cert_file=pki.cert("analyst"), key_file=pki.key("admin")).options()
