"""The input contract of ``telemetry.raw``, and what happens to input that breaks it.

A message is one JSON event or an envelope ``{"events": [event, ...]}``,
keyed by account. An event has exactly the declared fields below (types and
ranges enforced by msgspec); unknown fields — including any e-mail or IP a
client might add — are dropped at decode and never pass this stage.

Every event ends in exactly one place: accepted (a ``TelemetryEvent``), or a
``DeadLetter`` with a reason code (for ``telemetry.dlq``). A malformed
message never raises: the worker keeps running.

Reason codes: bad_json, not_an_object, bad_envelope, oversize_message,
oversize_envelope, too_deep, missing_field, wrong_type, non_finite,
out_of_range, time_out_of_range, bad_unicode, key_mismatch (set by stage 1).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from msgspec import Meta

NonEmpty64 = Annotated[str, Meta(min_length=1, max_length=64)]
AccountId = Annotated[str, Meta(min_length=1, max_length=128)]


class TelemetryEvent(msgspec.Struct, frozen=True):
    """One operational event as declared; anything else in the JSON is dropped."""

    account_id: AccountId
    server: NonEmpty64
    region: NonEmpty64
    client_version: NonEmpty64
    platform: NonEmpty64
    latency_ms: Annotated[float, Meta(ge=0, le=600_000)]
    bytes: Annotated[int, Meta(ge=0, le=1_000_000_000_000)]
    error: bool
    session_s: Annotated[float, Meta(ge=0, le=604_800)]
    event_time_ms: Annotated[int, Meta(ge=0)]

    @property
    def hour_utc(self) -> int:
        """Hour of day (0-23, UTC) of the event: lets a daily stream show peak hours."""
        return (self.event_time_ms // 3_600_000) % 24


# The fields a metric may aggregate (``field = ...`` in configs/): numbers and
# flags of TelemetryEvent, and the derived hour of day.
METRIC_FIELDS = ("latency_ms", "bytes", "error", "session_s", "hour_utc")


class _Envelope(msgspec.Struct):
    events: list[TelemetryEvent]


@dataclass(frozen=True, kw_only=True)
class InputLimits:
    max_message_bytes: int = 1_048_576
    max_envelope_events: int = 2_000  # collectors batch far fewer; 2,000 fit in 1 MiB
    max_event_age_ms: int = 7 * 86_400_000  # older: dead-lettered (not merely late)
    max_future_ms: int = 5 * 60_000  # clock skew allowed into the future
    dlq_payload_bytes: int = 65_536  # payload kept in a dead letter; the rest by offset


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    reason: str
    detail: str
    index: int  # position in the envelope, or -1 for the whole message
    payload: str  # the offending event or message (truncated to dlq_payload_bytes)
    payload_bytes: int
    payload_sha256: str

    def to_dict(self, *, topic: str, partition: int, offset: int) -> dict[str, Any]:
        return {
            "schema": "privmon.deadletter/1", "reason": self.reason, "detail": self.detail,
            "source": {"topic": topic, "partition": partition, "offset": offset,
                       "index": self.index},
            "payload": self.payload, "payload_bytes": self.payload_bytes,
            "payload_sha256": self.payload_sha256,
        }


@dataclass
class Decoded:
    events: list[TelemetryEvent] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.events) + len(self.dead)


_DECODER = msgspec.json.Decoder(TelemetryEvent)
_ENVELOPE = msgspec.json.Decoder(_Envelope)
_ANY = msgspec.json.Decoder()
_TYPE_RE = re.compile(r"^Expected `[^`]+`, got `")


def _dead(reason: str, detail: str, raw: bytes, index: int, limits: InputLimits) -> DeadLetter:
    return DeadLetter(
        reason=reason, detail=detail, index=index,
        payload=raw[: limits.dlq_payload_bytes].decode("utf-8", "replace"),
        payload_bytes=len(raw), payload_sha256=hashlib.sha256(raw).hexdigest(),
    )


def _reason(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    if text.startswith("Object missing required field"):
        return "missing_field"
    if _TYPE_RE.match(text) or text.startswith("Expected `object`"):
        return "wrong_type"
    return "out_of_range"


def _time_ok(event: TelemetryEvent, now_ms: int, limits: InputLimits) -> bool:
    return now_ms - limits.max_event_age_ms <= event.event_time_ms <= now_ms + limits.max_future_ms


_TEXT_FIELDS = ("account_id", "server", "region", "client_version", "platform")


def _text_ok(event: TelemetryEvent) -> bool:
    """False if a string holds a lone surrogate (valid JSON escape, not encodable text):
    it would break every later encode of a cell key or record."""
    for name in _TEXT_FIELDS:
        value = getattr(event, name)
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                return False
    return True


def _check(event: TelemetryEvent, now_ms: int, limits: InputLimits) -> tuple[str, str] | None:
    """(reason, detail) if a decoded event is still unacceptable, else None."""
    if not _time_ok(event, now_ms, limits):
        return "time_out_of_range", _time_detail(event, now_ms)
    if not _text_ok(event):
        return "bad_unicode", "a text field holds a lone UTF-16 surrogate"
    return None


def decode_message(raw: bytes, *, now_ms: int, limits: InputLimits = InputLimits()) -> Decoded:
    """Decode one raw message into accepted events and dead letters (never raises)."""
    out = Decoded()
    if len(raw) > limits.max_message_bytes:
        out.dead.append(_dead("oversize_message",
                              f"{len(raw)} bytes > limit {limits.max_message_bytes}",
                              raw, -1, limits))
        return out
    # Fast path: a well-formed single event or envelope decodes in one typed pass.
    try:
        if raw.lstrip()[:1] == b"{" and b'"events"' in raw:
            events = _ENVELOPE.decode(raw).events
        else:
            events = [_DECODER.decode(raw)]
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return _decode_slow(raw, now_ms, limits)
    if len(events) > limits.max_envelope_events:
        out.dead.append(_dead("oversize_envelope",
                              f"{len(events)} events > limit {limits.max_envelope_events}",
                              raw, -1, limits))
        return out
    # Usually every event is fine: no escape that could hide a lone surrogate, and all
    # times in range (checked on the min and max). Otherwise check event by event.
    if events and b"\\ud" not in raw and b"\\uD" not in raw:
        times = [e.event_time_ms for e in events]
        if (now_ms - limits.max_event_age_ms <= min(times)
                and max(times) <= now_ms + limits.max_future_ms):
            out.events = list(events)
            return out
    for i, event in enumerate(events):
        problem = _check(event, now_ms, limits)
        if problem is None:
            out.events.append(event)
        else:
            out.dead.append(_dead(*problem, json.dumps(msgspec.to_builtins(event)).encode(),
                                  i if len(events) > 1 else -1, limits))
    return out


def key_mismatch(event: TelemetryEvent, limits: InputLimits) -> DeadLetter:
    """An event whose account_id is not its message's key (see agents/stage1.py)."""
    return _dead("key_mismatch", "account_id differs from the message key; key each message "
                 "(or envelope) by the account it carries", msgspec.json.encode(event), -1, limits)


def _time_detail(event: TelemetryEvent, now_ms: int) -> str:
    return f"event_time_ms {event.event_time_ms} is {event.event_time_ms - now_ms:+d} ms from now"


def _decode_slow(raw: bytes, now_ms: int, limits: InputLimits) -> Decoded:
    """Per-event decoding of a message the fast path refused: find what is wrong where."""
    out = Decoded()
    try:
        doc = _ANY.decode(raw)
    except RecursionError:
        out.dead.append(_dead("too_deep", "JSON nested too deeply", raw, -1, limits))
        return out
    except msgspec.DecodeError as exc:
        # Strict JSON failed. Python's parser also reads NaN/Infinity literals,
        # so one such event need not take its envelope's good events with it.
        try:
            doc = json.loads(raw)
        except RecursionError:
            out.dead.append(_dead("too_deep", "JSON nested too deeply", raw, -1, limits))
            return out
        except ValueError:
            out.dead.append(_dead("bad_json", str(exc), raw, -1, limits))
            return out
    if isinstance(doc, dict) and "events" in doc:
        items = doc["events"]
        if not isinstance(items, list):
            out.dead.append(_dead("bad_envelope", "`events` must be a list of event objects",
                                  raw, -1, limits))
            return out
        if len(items) > limits.max_envelope_events:
            out.dead.append(_dead("oversize_envelope",
                                  f"{len(items)} events > limit {limits.max_envelope_events}",
                                  raw, -1, limits))
            return out
        indexed = list(enumerate(items))
    else:
        indexed = [(-1, doc)]
    for index, item in indexed:
        item_raw = raw if index == -1 else json.dumps(item, ensure_ascii=False).encode()
        if not isinstance(item, dict):
            out.dead.append(_dead("not_an_object", f"expected a JSON object, got "
                                  f"{type(item).__name__}", item_raw, index, limits))
            continue
        bad = sorted(k for k, v in item.items() if isinstance(v, float) and not math.isfinite(v))
        if bad:
            out.dead.append(_dead("non_finite", f"NaN or infinity in {bad}", item_raw, index,
                                  limits))
            continue
        try:
            event = msgspec.convert(item, TelemetryEvent)
        except msgspec.ValidationError as exc:
            out.dead.append(_dead(_reason(exc), str(exc), item_raw, index, limits))
            continue
        problem = _check(event, now_ms, limits)
        if problem is None:
            out.events.append(event)
        else:
            out.dead.append(_dead(*problem, item_raw, index, limits))
    return out
