"""Which Kafka errors mean "refused access", for both clients privmon uses.

Recognised by exception type (aiokafka's and kafka-python's authorization errors,
and kafka-python's ``AuthorizationError`` base), not by name, so that a
production module does not depend on the development launcher.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiokafka.errors as aio
import kafka.errors as kp

AUTHORIZATION_ERRORS: tuple[type[BaseException], ...] = (
    aio.TopicAuthorizationFailedError, aio.GroupAuthorizationFailedError,
    aio.ClusterAuthorizationFailedError, aio.TransactionalIdAuthorizationFailed,
    aio.DelegationTokenAuthorizationFailed,
    kp.AuthorizationError, kp.TopicAuthorizationFailedError, kp.GroupAuthorizationFailedError,
    kp.ClusterAuthorizationFailedError, kp.TransactionalIdAuthorizationFailedError,
    kp.DelegationTokenAuthorizationFailedError,
)


class BrokerUnreachable(ConnectionError):
    """No broker of the bootstrap list answered while a client started (kafka-python 3
    says so with a KafkaTimeoutError, which also means other timeouts)."""


@contextmanager
def connecting(bootstrap: str) -> Iterator[None]:
    """Around a kafka-python client's construction, which bootstraps: its timeout there
    means no broker answered."""
    try:
        yield
    except kp.KafkaTimeoutError as exc:
        raise BrokerUnreachable(f"no broker of {bootstrap} answered ({exc})") from exc


UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (
    aio.KafkaConnectionError, kp.KafkaConnectionError, BrokerUnreachable,
)


def unreachable(exc: BaseException) -> bool:
    """True when no broker of the bootstrap list could be reached (either client)."""
    return isinstance(exc, UNREACHABLE_ERRORS)


def refused(exc: BaseException) -> bool:
    """True for Kafka's authorization failures (either client)."""
    return isinstance(exc, AUTHORIZATION_ERRORS)


def refusal_message(command: str, exc: BaseException) -> str:
    """What to tell the operator of ``privmon <command>`` when Kafka refused it."""
    return (f"privmon {command}: Kafka refused access ({type(exc).__name__}: {exc}). The "
            "principal needs the ACLs that `privmon kafka acl apply` creates from "
            "configs/acls.toml; check --sasl-user and the topic names in --config.")
