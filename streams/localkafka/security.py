"""SASL/SCRAM and the standard authorizer for the local Kafka (secure mode).

In secure mode the client listener speaks SASL_PLAINTEXT with SCRAM-SHA-256
(users are created at storage format time, `kafka-storage format
--add-scram`), the controller listener uses SASL PLAIN for the ``admin``
user, and ``StandardAuthorizer`` denies everything no ACL allows, with
``admin`` as the only super user. ACLs for privmon's principals come from
``privmon kafka acl apply`` (streams/acls.py). Loopback only: SASL_PLAINTEXT
sends no secrets in clear (SCRAM), but it does not encrypt the data.
"""

from __future__ import annotations

from collections.abc import Mapping

from privmon.streams.kafka_client import ClientSecurity

ADMIN = "admin"
MECHANISM = "SCRAM-SHA-256"


def _quote(value: str) -> str:
    if '"' in value or "\\" in value:
        raise ValueError("passwords for the local Kafka must not contain quotes or backslashes")
    return value


def broker_properties(host: str, port: int, controller_port: int, admin_password: str) -> list[str]:
    pw = _quote(admin_password)
    return [
        f"listeners=SASL_PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        f"advertised.listeners=SASL_PLAINTEXT://{host}:{port}",
        "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=SASL_PLAINTEXT",
        f"sasl.enabled.mechanisms={MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        "listener.name.controller.plain.sasl.jaas.config="
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN}" password="{pw}" user_{ADMIN}="{pw}";',
        f"listener.name.sasl_plaintext.{MECHANISM.lower()}.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{pw}";',
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{ADMIN}",
        "allow.everyone.if.no.acl.found=false",
    ]


def scram_format_args(users: Mapping[str, str]) -> list[str]:
    """`kafka-storage format` arguments creating every user's SCRAM credential."""
    args = []
    for name, password in users.items():
        args += ["--add-scram", f"{MECHANISM}=[name={name},password={_quote(password)}]"]
    return args


def client_options(user: str, password: str) -> dict[str, object]:
    """Connection options for kafka-python and aiokafka clients of the local SASL broker
    (the production module, streams/kafka_client.py, builds them)."""
    return ClientSecurity(sasl_user=user, sasl_password=password,
                          sasl_mechanism=MECHANISM).options()
