"""Input contract: good events pass, every bad one is dead-lettered with its reason."""

from __future__ import annotations

import base64
import json

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from privmon.streams.decode import decode_message
from privmon.streams.schema import InputLimits, TelemetryEvent

NOW = 1_800_000_000_000


def event(**overrides) -> dict:
    base = {
        "account_id": "acct-000001", "server": "fra-01", "region": "eu-central",
        "client_version": "5.2.1", "platform": "chrome", "latency_ms": 42.5, "bytes": 1000,
        "error": False, "session_s": 30.0, "event_time_ms": NOW - 1000,
    }
    base.update(overrides)
    return base


def reasons(raw: bytes, **limits) -> list[str]:
    decoded = decode_message(raw, now_ms=NOW, limits=InputLimits(**limits))
    return [d.reason for d in decoded.dead]


def test_single_event_and_envelope_are_accepted():
    one = decode_message(json.dumps(event()).encode(), now_ms=NOW)
    assert len(one.events) == 1 and not one.dead
    assert one.events[0].latency_ms == 42.5
    many = decode_message(json.dumps({"events": [event(), event(bytes=5)]}).encode(), now_ms=NOW)
    assert [e.bytes for e in many.events] == [1000, 5]


def test_unknown_and_pii_fields_never_pass():
    raw = json.dumps(event(email="alice@example.com", ip="203.0.113.9", extra={"a": 1})).encode()
    decoded = decode_message(raw, now_ms=NOW)
    assert len(decoded.events) == 1
    encoded = msgspec.json.encode(decoded.events[0])
    assert b"alice@example.com" not in encoded and b"203.0.113.9" not in encoded
    assert not hasattr(decoded.events[0], "email")


def test_reason_codes():
    missing = event()
    del missing["account_id"]
    cases = {
        b'{"account_id": "a", ': "bad_json",
        b"[1, 2]": "not_an_object",
        b'{"events": 5}': "bad_envelope",
        json.dumps(missing).encode(): "missing_field",
        json.dumps(event(account_id="")).encode(): "out_of_range",
        json.dumps(event(latency_ms="fast")).encode(): "wrong_type",
        json.dumps(event(error="yes")).encode(): "wrong_type",
        json.dumps(event(latency_ms=-1)).encode(): "out_of_range",
        json.dumps(event(bytes=10**15)).encode(): "out_of_range",
        json.dumps(event(latency_ms=float("nan"))).encode(): "non_finite",
        json.dumps(event(session_s=float("inf"))).encode(): "non_finite",
        json.dumps(event()).replace('42.5', '1e999').encode(): "non_finite",
        json.dumps(event(event_time_ms=NOW + 3_600_000)).encode(): "time_out_of_range",
        json.dumps(event(event_time_ms=1)).encode(): "time_out_of_range",
        b"[" * 5000 + b"]" * 5000: "too_deep",
    }
    for raw, reason in cases.items():
        assert reasons(raw) == [reason], (raw[:60], reasons(raw))


def test_oversize_message_and_envelope():
    assert reasons(json.dumps(event(pad="x" * 2000)).encode(), max_message_bytes=1000) == [
        "oversize_message"
    ]
    envelope = json.dumps({"events": [event()] * 11}).encode()
    assert reasons(envelope, max_envelope_events=10) == ["oversize_envelope"]


def test_envelope_mixing_good_and_bad_keeps_the_good_and_reconciles():
    items = [event(), event(latency_ms="x"), event(bytes=7), event(latency_ms=float("nan")), 3]
    decoded = decode_message(json.dumps({"events": items}).encode(), now_ms=NOW)
    assert [e.bytes for e in decoded.events] == [1000, 7]
    assert [(d.index, d.reason) for d in decoded.dead] == [
        (1, "wrong_type"), (3, "non_finite"), (4, "not_an_object")
    ]
    assert (len(decoded.events) + len(decoded.dead)) == len(items)
    letter = decoded.dead[0].to_dict(topic="telemetry.raw", partition=2, offset=99)
    raw = json.dumps({"events": items}).encode()
    span = decoded.dead[0].span
    assert letter["source"] == {"topic": "telemetry.raw", "partition": 2, "offset": 99,
                                "index": 1, "span": list(span)}
    # The client's own bytes of item 1, not a re-serialization of what was parsed.
    assert base64.b64decode(letter["payload_b64"]) == raw[span[0]:span[1]]
    assert json.loads(raw[span[0]:span[1]])["latency_ms"] == "x"


def test_dead_letter_payload_is_truncated_but_identified():
    raw = b'{"account_id": ' + b"x" * 200_000
    letter = decode_message(raw, now_ms=NOW).dead[0]
    assert letter.reason == "bad_json"
    assert len(letter.payload) == InputLimits().dlq_payload_bytes
    assert letter.payload_bytes == len(raw) and len(letter.payload_sha256) == 64


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise_and_reconcile(raw):
    decoded = decode_message(raw, now_ms=NOW)
    assert (len(decoded.events) + len(decoded.dead)) >= 1
    assert all(isinstance(e, TelemetryEvent) for e in decoded.events)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(json_values, st.builds(event)), max_size=6))
def test_arbitrary_envelopes_reconcile_exactly(items):
    decoded = decode_message(json.dumps({"events": items}).encode(), now_ms=NOW)
    assert (len(decoded.events) + len(decoded.dead)) == len(items)
