"""A corpus of malformed and adversarial raw messages, each with what must happen to it.

``corpus(now_ms)`` returns ``Entry`` values: the message (key, value bytes),
the dead-letter reasons it must produce (in order) and how many of its events
must be accepted. The expectations are written here by hand, from the input
contract in streams/schema.py, not by running the decoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    name: str
    key: bytes
    value: bytes
    reasons: tuple[str, ...]
    accepted: int = 0


def good_event(now_ms: int, account: str = "acct-hostile-good", **overrides: object) -> dict:
    event = {
        "account_id": account, "server": "hostile-01", "region": "zz", "client_version": "5.2.1",
        "platform": "chrome", "latency_ms": 42.0, "bytes": 1000, "error": False,
        "session_s": 30.0, "event_time_ms": now_ms,
    }
    event.update(overrides)
    return event


def corpus(now_ms: int) -> list[Entry]:
    out: list[Entry] = []
    acct = "acct-hostile"
    key = acct.encode()

    def add(name: str, value: bytes, reasons: tuple[str, ...], accepted: int = 0,
            k: bytes = key) -> None:
        out.append(Entry(name, k, value, reasons, accepted))

    valid = json.dumps(good_event(now_ms, acct)).encode()
    # Truncated JSON at ~80 cut points.
    for cut in range(1, len(valid), max(1, len(valid) // 80)):
        add(f"truncated@{cut}", valid[:cut], ("bad_json",))
    # Wrong types for every field.
    wrong = {
        "account_id": [5, None, ["a"]], "server": [1, True, {}], "region": [2.5, [], None],
        "client_version": [5, False, {}], "platform": [0, [], None],
        "latency_ms": ["fast", True, [1]], "bytes": ["1kB", 1.5, None],
        "error": ["yes", 1, None], "session_s": ["long", {}, False],
        "event_time_ms": ["now", 1.5e12, None],
    }
    for field, values in wrong.items():
        for v in values:
            add(f"wrong_type:{field}={v!r}",
                json.dumps(good_event(now_ms, acct, **{field: v})).encode(), ("wrong_type",))
    # NaN and infinities (Python's json writes them as bare literals).
    for field in ("latency_ms", "session_s"):
        for v in (float("nan"), float("inf"), float("-inf")):
            add(f"non_finite:{field}={v}",
                json.dumps(good_event(now_ms, acct, **{field: v})).encode(), ("non_finite",))
    add("overflow_literal", valid.replace(b"42.0", b"1e999"), ("non_finite",))
    # Negative and huge values.
    for field, values in {"latency_ms": [-1, -1e-9, 600_001, 1e12],
                          "bytes": [-1, 10**13, 10**18],
                          "session_s": [-0.5, 604_801, 1e30],
                          "event_time_ms": [-1]}.items():
        for v in values:
            add(f"range:{field}={v}", json.dumps(good_event(now_ms, acct, **{field: v})).encode(),
                ("out_of_range",))
    # Far-future and ancient event times.
    for delta in (6 * 60_000, 3_600_000, 86_400_000 * 365, -8 * 86_400_000, -now_ms + 1):
        add(f"time:{delta:+d}",
            json.dumps(good_event(now_ms, acct, event_time_ms=now_ms + delta)).encode(),
            ("time_out_of_range",))
    # Missing and empty account ids, missing fields.
    for i, field in enumerate(good_event(now_ms)):
        event = good_event(now_ms, acct)
        del event[field]
        add(f"missing:{field}", json.dumps(event).encode(), ("missing_field",),
            k=key if field != "account_id" else f"{acct}-{i}".encode())
    for blank in ("",):
        add("empty_account_id", json.dumps(good_event(now_ms, blank)).encode(),
            ("out_of_range",), k=b"")
    add("overlong_account_id", json.dumps(good_event(now_ms, "a" * 129)).encode(),
        ("out_of_range",), k=b"a" * 129)
    add("overlong_server", json.dumps(good_event(now_ms, acct, server="s" * 65)).encode(),
        ("out_of_range",))
    # Not an object / not an envelope.
    for name, value in {"null": b"null", "number": b"3", "string": b'"event"',
                        "array": b"[1, 2]", "array_of_events": b"[" + valid + b"]",
                        "true": b"true"}.items():
        add(f"not_object:{name}", value, ("not_an_object",))
    for name, value in {"events_number": b'{"events": 5}', "events_string": b'{"events": "x"}',
                        "events_object": b'{"events": {"a": 1}}',
                        "events_null": b'{"events": null}'}.items():
        add(f"bad_envelope:{name}", value, ("bad_envelope",))
    add("empty_message", b"", ("bad_json",))
    add("empty_object", b"{}", ("missing_field",))
    # Invalid bytes and odd unicode.
    add("invalid_utf8", valid[:-1] + b"\xff}", ("bad_json",))
    add("utf16_bom", b"\xff\xfe" + valid, ("bad_json",))
    # A lone surrogate in an unknown field or a non-text field of an envelope item
    # (this once stopped the worker: the item was re-serialized for its dead letter).
    surrogate_item = valid[:-1] + b', "note": "\\ud800"}'
    add("lone_surrogate_unknown_field", surrogate_item, (), accepted=1)
    # (found by tests/fuzz/test_properties.py: msgspec could not convert an object
    # whose unknown key held a lone surrogate)
    add("lone_surrogate_unknown_key", valid[:-1] + b', "\\ud800": ""}', (), accepted=1)
    add("lone_surrogate_in_envelope_item",
        b'{"events": [' + valid + b", " + valid.replace(b'"5.2.1"', b'"\\udc00"') + b"]}",
        ("bad_unicode",), accepted=1)
    # (a declared field holding a lone surrogate is bad_unicode, whatever its type)
    add("lone_surrogate_wrong_type_in_envelope",
        b'{"events": [' + valid.replace(b"42.0", b'"\\ud800"') + b"]}", ("bad_unicode",))
    # Deep nesting inside an envelope item: within the parser's reach it is an
    # unknown field like any other (once it stopped the worker when re-serialized);
    # beyond it the item's end cannot be found, so the whole message goes.
    # (beyond streams.decode.MAX_DEPTH = 100, decided from the bytes, not by how deep
    # the decoder's caller already is: the soak found the stack-dependent version)
    for depth, reasons, ok in ((50, (), 2), (101, ("too_deep",), 0), (400, ("too_deep",), 0),
                               (5_000, ("too_deep",), 0)):
        add(f"deep_in_envelope_item:{depth}", b'{"events": [' + valid + b", " + valid[:-1]
            + b', "j": ' + b"[" * depth + b"]" * depth + b"}]}", reasons, accepted=ok)
    add("lone_surrogate_server",
        json.dumps(good_event(now_ms, acct)).replace('"hostile-01"', '"\\ud800x"').encode(),
        ("bad_unicode",))
    for i, odd in enumerate(["\u202efra\u200b", "fra-😀", "ф р а", "\x00\x01", "a\nb"]):
        add(f"odd_unicode_ok:{i}", json.dumps(good_event(now_ms, acct, server=odd)).encode(),
            (), accepted=1)
    # Deep nesting in an unknown field, and as the whole message.
    for depth in (5_000, 20_000):
        nested = b"[" * depth + b"]" * depth
        add(f"deep_unknown:{depth}", valid[:-1] + b', "junk": ' + nested + b"}", ("too_deep",))
        add(f"deep_message:{depth}", nested, ("too_deep",))
    add("shallow_unknown_ok", json.dumps(good_event(now_ms, acct, junk=[[[1]]])).encode(), (),
        accepted=1)
    # Duplicate keys: parsers disagree on which value wins, so none is read.
    dup_same = b'{"account_id": "other", ' + valid[1:]
    add("duplicate_account_first", dup_same, ("duplicate_key",))
    dup_other = valid[:-1] + b', "account_id": "acct-someone-else"}'
    add("duplicate_account_last", dup_other, ("duplicate_key",))
    add("duplicate_latency", valid[:-1] + b', "latency_ms": "x"}', ("duplicate_key",))
    add("duplicate_escaped_key", valid[:-1] + b', "\\u0061ccount_id": "acct-x"}',
        ("duplicate_key",))
    add("duplicate_spaced_key", valid[:-1] + b', "server" : "other"}', ("duplicate_key",))
    add("duplicate_unknown_key", valid[:-1] + b', "pad": 1, "pad": 2}', ("duplicate_key",))
    add("duplicate_nested_key", valid[:-1] + b', "junk": {"a": 1, "a": 2}}', ("duplicate_key",))
    add("duplicate_events_key", b'{"events": [], "events": [' + valid + b']}',
        ("duplicate_key",))
    add("duplicate_in_envelope_item",
        b'{"events": [' + valid + b", " + valid[:-1] + b', "bytes": 5}]}', ("duplicate_key",),
        accepted=1)
    # Identifiers under the wrong key.
    for i in range(10):
        add(f"key_mismatch:{i}", json.dumps(good_event(now_ms, f"{acct}-{i}")).encode(),
            ("key_mismatch",))
    add("no_key", valid, ("key_mismatch",), k=b"")
    # Oversize.
    add("oversize_message", valid[:-1] + b', "pad": "' + b"x" * 1_100_000 + b'"}',
        ("oversize_message",))
    many = [good_event(now_ms, acct)] * 2_001  # over InputLimits.max_envelope_events
    add("oversize_envelope", json.dumps({"events": many}).encode(), ("oversize_envelope",))
    # Envelopes mixing good and bad events.
    for i in range(10):
        events = [good_event(now_ms, acct), good_event(now_ms, acct, latency_ms="x"),
                  good_event(now_ms, acct, bytes=7), 42,
                  good_event(now_ms, acct, session_s=float("nan")),
                  good_event(now_ms, f"{acct}-other")]
        add(f"mixed_envelope:{i}", json.dumps({"events": events}).encode(),
            ("wrong_type", "not_an_object", "non_finite", "key_mismatch"), accepted=2)
    add("empty_envelope", b'{"events": []}', ())
    return out
