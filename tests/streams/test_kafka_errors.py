"""Authorization failures are recognised by type, for both Kafka clients."""

from __future__ import annotations

import aiokafka.errors as aio
import kafka.errors as kp

from privmon.streams.kafka_errors import refusal_message, refused


def test_authorization_errors_of_both_clients_are_refusals():
    for exc in (aio.TopicAuthorizationFailedError(), aio.GroupAuthorizationFailedError(),
                aio.TransactionalIdAuthorizationFailed(), kp.TopicAuthorizationFailedError(),
                kp.ClusterAuthorizationFailedError()):
        assert refused(exc), type(exc)


def test_other_errors_are_not_even_when_named_alike():
    class AuthorizationLookalike(Exception):
        pass

    for exc in (aio.KafkaConnectionError(), kp.KafkaConnectionError(), RuntimeError("x"),
                AuthorizationLookalike()):
        assert not refused(exc), type(exc)


def test_the_message_names_the_command_and_the_fix():
    text = refusal_message("subscribe", aio.TopicAuthorizationFailedError())
    assert text.startswith("privmon subscribe: Kafka refused access (TopicAuthorization")
    assert "privmon kafka acl apply" in text and "--sasl-user" in text
