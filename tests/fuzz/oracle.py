"""The invariants of stage 1's input handling, as checks a fuzzer or property test calls.

Each check raises ``AssertionError`` with what broke. Used by tests/fuzz/run.py
(atheris, coverage-guided) and tests/fuzz/test_properties.py (hypothesis).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from typing import Any

import msgspec

from privmon.streams.decode import MAX_DEPTH, decode_message, event_spans
from privmon.streams.schema import REASONS, Decoded, InputLimits, TelemetryEvent

NOW = 1_800_000_000_000
LIMITS = InputLimits()
_FIELDS = tuple(TelemetryEvent.__struct_fields__)


class _Dup(dict):
    """A JSON object in which some key appeared twice."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    return _Dup(out) if len(out) != len(pairs) else out


def _has_dup(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, _Dup):
            return True
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def _outcome(decoded: Decoded) -> tuple:
    return ([(d.reason, d.index, d.span) for d in decoded.dead],
            [msgspec.json.encode(e) for e in decoded.events], decoded.indices)


def _stack_depth() -> int:
    n, frame = 0, sys._getframe()
    while frame is not None:
        n, frame = n + 1, frame.f_back
    return n


def _at_depth(frames: int, raw: bytes, now_ms: int, limits: InputLimits) -> Decoded:
    if frames:
        return _at_depth(frames - 1, raw, now_ms, limits)
    return decode_message(raw, now_ms=now_ms, limits=limits)


def check_decode(raw: bytes, decoded: Decoded, *, now_ms: int = NOW,
                 limits: InputLimits = LIMITS) -> None:
    """Everything ``decode_message(raw)`` must satisfy, whatever ``raw`` is."""
    assert isinstance(decoded, Decoded)
    # Nothing unforeseen: internal_error means some code path raised.
    for d in decoded.dead:
        assert d.reason in REASONS and d.reason != "internal_error", (d.reason, d.detail)
        assert len(d.detail) <= 300
        # The payload is the client's bytes: the item's span of the message, or all of it.
        item = raw if d.span is None else raw[d.span[0]:d.span[1]]
        assert d.span is None or 0 <= d.span[0] < d.span[1] <= len(raw), d.span
        assert d.payload == item[:limits.dlq_payload_bytes]
        assert d.payload_bytes == len(item)
        assert d.payload_sha256 == hashlib.sha256(item).hexdigest()
        assert (d.index == -1) == (d.span is None)
        json.dumps(d.to_dict(topic="t", partition=0, offset=0))  # always encodable
    # Every accepted event meets the schema and its limits, and its text is encodable.
    for e in decoded.events:
        assert isinstance(e, TelemetryEvent)
        msgspec.convert(msgspec.to_builtins(e), TelemetryEvent)  # re-validates constraints
        assert now_ms - limits.max_event_age_ms <= e.event_time_ms <= now_ms + limits.max_future_ms
        assert math.isfinite(e.latency_ms) and math.isfinite(e.session_s)
        for name in ("account_id", "server", "region", "client_version", "platform"):
            getattr(e, name).encode()
        msgspec.json.encode(e)
    # Every item has exactly one outcome: an envelope's indices are a partition of 0..n-1.
    indices = [d.index for d in decoded.dead]
    if decoded.indices is not None:
        assert len(decoded.indices) == len(decoded.events)
        indices += decoded.indices
    whole = [i for i in indices if i == -1]
    if whole:
        assert indices == whole and len(whole) == 1, indices
    else:
        if decoded.indices is None:
            indices += list(range(len(decoded.events)))
        assert sorted(indices) == list(range(len(indices))), indices
    if not decoded.events and not decoded.dead:
        assert json.loads(raw) == {"events": []} or _empty_envelope(raw), raw[:80]
    _check_agreement(raw, decoded)
    # The same bytes, the same outcome, however deep the caller's stack is (a worker's
    # is deeper than a test's).
    # Near the recursion limit, leaving room for MAX_DEPTH levels and the decoder itself
    # (only parsers' recursion could make a difference: checked where there is nesting).
    if raw.count(b"[") + raw.count(b"{") > 8:
        frames = sys.getrecursionlimit() - _stack_depth() - MAX_DEPTH - 150
        assert _outcome(_at_depth(frames, raw, now_ms, limits)) == _outcome(decoded), (
            "stack-dependent")


def _empty_envelope(raw: bytes) -> bool:
    doc = json.loads(raw)
    return isinstance(doc, dict) and doc.get("events") == []


def _check_agreement(raw: bytes, decoded: Decoded) -> None:
    """Parser differential: what privmon accepted, Python's parser reads the same,
    and no accepted event comes from an object with a key twice."""
    if not decoded.events:
        return
    doc = json.loads(raw, object_pairs_hook=_pairs)
    if isinstance(doc, dict) and "events" in doc:
        assert not isinstance(doc, _Dup), "accepted events from an envelope with a repeated key"
        items = doc["events"]
        at = decoded.indices if decoded.indices is not None else range(len(decoded.events))
        pairs = [(items[i], e) for i, e in zip(at, decoded.events, strict=True)]
        assert len(event_spans(raw)) == len(items)
    else:
        assert len(decoded.events) == 1
        pairs = [(doc, decoded.events[0])]
    for item, event in pairs:
        assert not _has_dup(item), "accepted an event from an object with a repeated key"
        for name in _FIELDS:
            assert item[name] == getattr(event, name), (name, item[name], getattr(event, name))
