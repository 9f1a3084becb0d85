"""The input contract of ``telemetry.raw``, and what happens to input that breaks it.

A message is one JSON event or an envelope ``{"events": [event, ...]}``,
keyed by account. An event has exactly the declared fields below (types and
ranges enforced by msgspec); unknown fields — including any e-mail or IP a
client might add — are dropped at decode and never pass this stage.

Every event ends in exactly one place: accepted (a ``TelemetryEvent``), or a
``DeadLetter`` with a reason code (for ``telemetry.dlq``), or counted late.
Decoding (streams/decode.py) is total: no input raises, the worker keeps running.

Reason codes (``REASONS``): bad_json, not_an_object, bad_envelope,
oversize_message, oversize_envelope, too_deep, duplicate_key, missing_field,
wrong_type, non_finite, out_of_range, time_out_of_range, bad_unicode,
key_mismatch (set by stage 1), internal_error (anything no other code names;
its detail is the exception's type).
"""

from __future__ import annotations

import base64
import hashlib
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


# The fields a metric may aggregate (``field = ...`` in configs/): numbers and
# flags of TelemetryEvent, and the hour of day (0-23, UTC) of event_time_ms, derived
# in agents/stage1_columns.py (lets a daily stream show peak hours).
METRIC_FIELDS = ("latency_ms", "bytes", "error", "session_s", "hour_utc")


REASONS = (
    "bad_json", "not_an_object", "bad_envelope", "oversize_message", "oversize_envelope",
    "too_deep", "duplicate_key", "missing_field", "wrong_type", "non_finite", "out_of_range",
    "time_out_of_range", "bad_unicode", "key_mismatch", "internal_error",
)


@dataclass(frozen=True, kw_only=True)
class InputLimits:
    max_message_bytes: int = 1_048_576
    max_envelope_events: int = 2_000  # collectors batch far fewer; 2,000 fit in 1 MiB
    max_event_age_ms: int = 7 * 86_400_000  # older: dead-lettered (not merely late)
    max_future_ms: int = 5 * 60_000  # clock skew allowed into the future
    dlq_payload_bytes: int = 65_536  # payload kept in a dead letter; the rest by offset


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """Why one message (index -1) or one envelope item was refused, with the
    client's own bytes: the item's byte ``span`` of the message, truncated to
    ``InputLimits.dlq_payload_bytes`` (length and SHA-256 of the untruncated)."""

    reason: str
    detail: str  # privmon's words (bounded), no client text
    index: int  # position in the envelope, or -1 for the whole message
    span: tuple[int, int] | None  # the item's bytes in the message, or None: all of it
    payload: bytes
    payload_bytes: int
    payload_sha256: str

    def to_dict(self, *, topic: str, partition: int, offset: int) -> dict[str, Any]:
        return {
            "schema": "privmon.deadletter/2", "reason": self.reason, "detail": self.detail,
            "source": {"topic": topic, "partition": partition, "offset": offset,
                       "index": self.index, "span": list(self.span) if self.span else None},
            "payload_b64": base64.b64encode(self.payload).decode(),
            "payload_bytes": self.payload_bytes, "payload_sha256": self.payload_sha256,
        }


def dead_letter(reason: str, detail: str, raw: bytes, index: int,
                span: tuple[int, int] | None, limits: InputLimits) -> DeadLetter:
    """A dead letter for ``raw``: the whole message, or the item at ``span`` of it."""
    return DeadLetter(
        reason=reason, detail=detail[:300], index=index, span=span,
        payload=raw[: limits.dlq_payload_bytes], payload_bytes=len(raw),
        payload_sha256=hashlib.sha256(raw).hexdigest(),
    )


@dataclass
class Decoded:
    """One message's outcome: each item is an accepted event or a dead letter."""

    events: list[TelemetryEvent] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    # Envelope index of each accepted event (-1: the message was one event); None
    # when every item was accepted, in order (the fast path).
    indices: list[int] | None = None




def key_mismatch(raw: bytes, index: int, span: tuple[int, int] | None,
                 limits: InputLimits) -> DeadLetter:
    """An event whose account_id is not its message's key (see agents/stage1.py)."""
    item = raw if span is None else raw[span[0]:span[1]]
    return dead_letter("key_mismatch", "account_id differs from the message key; key each "
                       "message (or envelope) by the account it carries", item, index, span,
                       limits)
