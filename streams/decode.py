"""Raw message bytes -> accepted ``TelemetryEvent``s and ``DeadLetter``s, total by construction.

``decode_message`` returns for any bytes; it has no code path that raises:

- the fast path (msgspec, strict JSON) is taken only for messages on which
  every common JSON parser agrees: no backslash escapes, and as many keys in
  the bytes as the decoders kept, so no object has a key twice to disagree
  about (see ``_strict``);
- everything else goes through ``_scan``, a position-aware reading of the
  top-level object with Python's strict JSON scanner: each envelope item's
  byte span is known, so a dead letter carries the client's own bytes (never
  a re-serialization of what was parsed), and one bad item does not take the
  envelope's good ones with it;
- whatever still raises is caught around each item and around the whole
  message, and becomes an ``internal_error`` dead letter naming the
  exception's type.

Parser differentials, decided (see SECURITY.md): a key twice in one object
(at any depth, compared after unescaping) is ``duplicate_key``: a producer's
validator that keeps the first value and privmon keeping the last must not
read two different events from the same bytes. NaN/Infinity literals and
numbers that overflow a double are read (as Python's parser does) only to
dead-letter their event as ``non_finite``; integers too long for Python's
parser (over 4,300 digits) make the message ``bad_json``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import NamedTuple

import msgspec
import numpy as np

from privmon.streams.jsonscan import Item, Malformed, Reader, scan
from privmon.streams.schema import (
    DeadLetter,
    Decoded,
    InputLimits,
    TelemetryEvent,
    dead_letter,
)

_FIELDS = tuple(TelemetryEvent.__struct_fields__)


class _StrictEvent(TelemetryEvent, frozen=True, forbid_unknown_fields=True):
    """The fast path's type: an unknown field sends the message to the careful path."""


class _StrictEnvelope(msgspec.Struct, forbid_unknown_fields=True):
    events: list[_StrictEvent]


class _LenientEnvelope(msgspec.Struct):
    events: list[TelemetryEvent]


_EVENT = msgspec.json.Decoder(_StrictEvent)
_ENVELOPE = msgspec.json.Decoder(_StrictEnvelope)
_LENIENT_EVENT = msgspec.json.Decoder(TelemetryEvent)
_LENIENT_ENVELOPE = msgspec.json.Decoder(_LenientEnvelope)
_ANY = msgspec.json.Decoder()
_SPACED_KEY = re.compile(rb'"[ \t\n\r]+:')
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
# Deeper than this is ``too_deep`` (telemetry needs 3; unknown fields get room).
MAX_DEPTH = 100
NUMPY_FROM_BYTES = 1024  # _facts: from this size numpy's compares are the faster way
# decode_singles tries a message as an envelope of one event only up to this size: the
# longest fields the schema allows make a compact one under 2 KiB of UTF-8 (the test
# says so), and counting the keys of every large envelope cost the envelope path ~8%.
# A longer message is left to the per-message path, which decides any message alone.
ONE_EVENT_ENVELOPE_MAX_BYTES = 4096
_TYPE_RE = re.compile(r"^Expected `[^`]+`, got `")
_MAX_DETAIL = 300


def decode_message(raw: bytes, *, now_ms: int, limits: InputLimits = InputLimits()) -> Decoded:
    """Decode one raw message into accepted events and dead letters. Never raises:
    anything unforeseen dead-letters the whole message as ``internal_error``."""
    try:
        return _decode(raw, now_ms, limits)
    except Exception as exc:  # totality is the contract
        return Decoded(dead=[_internal(exc, raw, -1, None, limits)])


def _internal(exc: BaseException, raw: bytes, index: int, span: tuple[int, int] | None,
              limits: InputLimits) -> DeadLetter:
    return dead_letter("internal_error", type(exc).__name__, raw, index, span, limits)


def _decode(raw: bytes, now_ms: int, limits: InputLimits) -> Decoded:
    if len(raw) > limits.max_message_bytes:
        return Decoded(dead=[dead_letter(
            "oversize_message", f"{len(raw)} bytes > limit {limits.max_message_bytes}",
            raw, -1, None, limits)])
    facts = _facts(raw)
    # The typed decoders descend only as deep as the schema (3 levels), whatever the
    # bytes hold: what they read needs no depth check (an envelope of 100 events has
    # over MAX_DEPTH brackets, and the check would cost as much as the decode).
    events = _strict(raw, facts)
    if events is None:
        if facts.brackets > MAX_DEPTH and _too_deep(raw, facts.escape):
            return Decoded(dead=[dead_letter(
                "too_deep", f"JSON nested deeper than {MAX_DEPTH} levels", raw, -1, None,
                limits)])
        events = _lenient(raw, facts)
    if events is None:
        return _careful(raw, now_ms, limits)
    if len(events) > limits.max_envelope_events:
        return Decoded(dead=[dead_letter(
            "oversize_envelope", f"{len(events)} events > limit {limits.max_envelope_events}",
            raw, -1, None, limits)])
    if events:
        times = [e.event_time_ms for e in events]
        if (now_ms - limits.max_event_age_ms <= min(times)
                and max(times) <= now_ms + limits.max_future_ms):
            return Decoded(events=events)
    # Some time is out of range: decide event by event, with each event's own bytes.
    return _careful(raw, now_ms, limits)


def decode_singles(values: Sequence[bytes], *, now_ms: int,
                   limits: InputLimits = InputLimits()) -> list[TelemetryEvent | None]:
    """Per message of a batch: its one event, or None where ``decode_message`` must decide.

    The batch form of the fast path for one-event messages (a bare event, or an
    envelope of one, as a client flushing often sends): one typed decode per
    message, and the byte checks of ``_strict`` (no backslash, no spaced key,
    exactly as many ``":`` as the decoder kept keys) once over the decoded
    messages' bytes together, per message only if that fails. An event is given
    only where ``decode_message`` would accept the message as exactly that one
    event (tests/streams/test_decode_singles.py compares the two on fuzzed
    batches); anything else, larger envelopes included, is None. Never raises.
    """
    try:
        return _singles(values, now_ms, limits)
    except Exception:  # the per-message path decides every one of them
        return [None] * len(values)


def _singles(values: Sequence[bytes], now_ms: int,
             limits: InputLimits) -> list[TelemetryEvent | None]:
    decode, envelope = _EVENT.decode, _ENVELOPE.decode
    out: list[TelemetryEvent | None] = []
    keys: list[int] = []  # per message: the keys its decode kept (as _strict counts them)
    one_event_envelopes = limits.max_envelope_events >= 1
    for raw in values:
        # (an envelope, compactly written, cannot be a strict event: "events" is no field
        # of one; a decode that raises costs as much as one that works)
        if raw[:10] != b'{"events":':
            try:
                out.append(decode(raw))
                keys.append(len(_FIELDS))
                continue
            except Exception:  # not a strict single event
                pass
        event = None
        # _strict's envelope branch, for envelopes of one event: _strict takes an envelope
        # only if it has exactly 1 + 10 ``":`` per event, so any other count is left to
        # the per-message path before decoding (a count is ~50x cheaper than a decode of
        # the larger envelopes that would be decoded twice otherwise)
        if (one_event_envelopes and len(raw) <= ONE_EVENT_ENVELOPE_MAX_BYTES
                and raw.count(b'":') == 1 + len(_FIELDS)
                and _is_envelope(raw)):
            try:
                events = envelope(raw).events
                event = events[0] if len(events) == 1 else None
            except Exception:  # the per-message path
                pass
        out.append(event)
        keys.append(1 + len(_FIELDS))
    took = [i for i, e in enumerate(out) if e is not None]
    if not took:
        return out
    kept = [values[i] for i in took]
    whole = b"".join(kept)  # each starts with "{" or space and ends with "}" or space
    facts = _facts(whole)
    lengths_ok = max(map(len, kept)) <= limits.max_message_bytes
    if (not lengths_ok or facts.escape or (facts.spaced and _SPACED_KEY.search(whole))
            or facts.colons != sum(keys[i] for i in took)):
        for i in took:  # find the messages that fail, one by one
            raw = values[i]
            f = _facts(raw)
            if (len(raw) > limits.max_message_bytes or f.escape
                    or (f.spaced and _SPACED_KEY.search(raw)) or f.colons != keys[i]):
                out[i] = None
    times = np.fromiter((out[i].event_time_ms if out[i] is not None else now_ms  # type: ignore[union-attr]
                         for i in took), np.int64, len(took))
    bad = (times < now_ms - limits.max_event_age_ms) | (times > now_ms + limits.max_future_ms)
    for j in np.flatnonzero(bad).tolist():
        out[took[j]] = None
    return out


class _Facts(NamedTuple):
    escape: bool  # a backslash anywhere
    spaced: bool  # a quote followed by whitespace (a key spaced from its colon, maybe)
    colons: int  # occurrences of '":'
    brackets: int  # '[' and '{'


def _facts(raw: bytes) -> _Facts:
    """What the fast path and the depth check need from the bytes, in one look: bytes
    methods for short messages, numpy's vector compares for long ones (one pass each
    instead of CPython's slower multi-byte searches)."""
    if len(raw) < NUMPY_FROM_BYTES:
        return _Facts(b"\\" in raw,
                      b'" ' in raw or b'"\n' in raw or b'"\t' in raw or b'"\r' in raw,
                      raw.count(b'":'), raw.count(b"[") + raw.count(b"{"))
    a = np.frombuffer(raw, np.uint8)
    quote, nxt = a[:-1] == 0x22, a[1:]
    ws = (nxt == 0x20) | (nxt == 0x0A) | (nxt == 0x09) | (nxt == 0x0D)
    return _Facts(bool((a == 0x5C).any()), bool((quote & ws).any()),
                  int(np.count_nonzero(quote & (nxt == 0x3A))),
                  int(np.count_nonzero((a == 0x5B) | (a == 0x7B))))


def _too_deep(raw: bytes, escape: bool = True) -> bool:
    """Whether brackets outside strings nest deeper than MAX_DEPTH (called only when
    there are more brackets than that, as in any envelope of 100 events).

    Decided from the bytes alone, before any parser recurses: a parser's own
    limit depends on how deep the caller's stack already is, and the same
    message must get the same outcome wherever it is decoded. Without a
    backslash (``escape`` False) every quote opens or closes a string, so what
    is inside strings follows from the quotes' running parity, in numpy;
    otherwise strings are blanked with a regex (tests/streams/test_decode.py
    checks the two agree)."""
    if escape:
        bare = np.frombuffer(_STRING.sub(b'""', raw), np.uint8)
        outside = np.ones(bare.size, bool)
    else:
        bare = np.frombuffer(raw, np.uint8)
        quote = bare == 0x22
        parity = np.cumsum(quote, dtype=np.int64)
        if parity.size and parity[-1] % 2:  # an unclosed string: its quote is not one
            parity[int(np.flatnonzero(quote)[-1]):] -= 1
        outside = parity % 2 == 0
    step = (((bare == 0x5B) | (bare == 0x7B)) & outside).astype(np.int32)
    step -= ((bare == 0x5D) | (bare == 0x7D)) & outside
    return bool(np.cumsum(step).max(initial=0) > MAX_DEPTH)


def _readable(raw: bytes, facts: _Facts) -> bool:
    """Whether every JSON parser reads the keys of ``raw`` the same way, given that
    the decoders kept as many keys as ``facts.colons`` counts (see ``_strict``)."""
    if facts.escape:  # an escape could spell a key or a surrogate
        return False
    # (a quote then whitespace is rare in encoders' output: only then look for a spaced key)
    return not (facts.spaced and _SPACED_KEY.search(raw))


def _is_envelope(raw: bytes) -> bool:
    return raw.lstrip()[:1] == b"{" and b'"events"' in raw


def _strict(raw: bytes, facts: _Facts) -> list[TelemetryEvent] | None:
    """The events of a message every JSON parser reads the same way, with declared
    fields only; else None.

    Without backslashes every ``"`` delimits a string, so each key shows in the
    bytes as ``"...":`` (a key spaced from its colon sends the message on), and
    ``raw.count(b'":')`` is at least the number of keys K. A dict keeps one
    entry per distinct key, so the keys the decoders kept equal K, and that
    count, exactly when no object has a key twice."""
    if not _readable(raw, facts):
        return None
    try:  # declared fields only: each event kept exactly 10 keys
        if _is_envelope(raw):
            events: list[TelemetryEvent] = list(_ENVELOPE.decode(raw).events)
            kept = 1 + len(_FIELDS) * len(events)
        else:
            events = [_EVENT.decode(raw)]
            kept = len(_FIELDS)
        return events if facts.colons == kept else None
    except (msgspec.DecodeError, RecursionError):
        return None


def _lenient(raw: bytes, facts: _Facts) -> list[TelemetryEvent] | None:
    """``_strict`` for a message with unknown fields (dropped): the keys kept are
    counted at every depth. Only after the depth check: the untyped decode recurses."""
    if not _readable(raw, facts):
        return None
    try:
        doc = _ANY.decode(raw)
        if facts.colons != _keys_kept(doc):
            return None
        if _is_envelope(raw):
            return list(_LENIENT_ENVELOPE.decode(raw).events)
        return [_LENIENT_EVENT.decode(raw)]
    except (msgspec.DecodeError, RecursionError):
        return None


def _keys_kept(doc: object) -> int:
    n, stack = 0, [doc]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            n += len(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return n


def _careful(raw: bytes, now_ms: int, limits: InputLimits) -> Decoded:
    """Per-item decoding of a message the fast path did not take: what is wrong where."""
    whole = Decoded()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        whole.dead.append(dead_letter("bad_json", f"not UTF-8 at byte {exc.start}", raw, -1,
                                      None, limits))
        return whole
    try:
        items, single = scan(text, Reader())
    except Malformed as exc:
        whole.dead.append(dead_letter(exc.reason, exc.detail, raw, -1, None, limits))
        return whole
    except RecursionError:
        whole.dead.append(dead_letter("too_deep", "JSON nested too deeply", raw, -1, None,
                                      limits))
        return whole
    except ValueError as exc:  # json.JSONDecodeError, and over-long integers
        whole.dead.append(dead_letter("bad_json", _detail(exc), raw, -1, None, limits))
        return whole
    if single is not None:
        return _items(raw, text, [single], now_ms, limits, envelope=False)
    assert items is not None
    if len(items) > limits.max_envelope_events:
        whole.dead.append(dead_letter(
            "oversize_envelope", f"{len(items)} events > limit {limits.max_envelope_events}",
            raw, -1, None, limits))
        return whole
    return _items(raw, text, items, now_ms, limits, envelope=True)


def _items(raw: bytes, text: str, items: list[Item], now_ms: int, limits: InputLimits, *,
           envelope: bool) -> Decoded:
    out = Decoded(indices=[])
    spans = _byte_spans(raw, text, items) if envelope else []
    for i, item in enumerate(items):
        index = i if envelope else -1
        if envelope:
            span = spans[i]
            item_raw = raw[span[0]:span[1]]
        else:
            span, item_raw = None, raw
        try:
            problem = _problem(item)
            if problem is None:
                # Declared fields only: unknown ones are dropped anyway, and msgspec
                # cannot even name (encode) a key holding a lone surrogate.
                declared = {k: item.value[k] for k in _FIELDS if k in item.value}
                event = msgspec.convert(declared, TelemetryEvent)
                problem = _check(event, now_ms, limits)
        except msgspec.ValidationError as exc:
            problem = (_reason(exc), _detail(exc))
        except Exception as exc:  # this item only
            out.dead.append(_internal(exc, item_raw, index, span, limits))
            continue
        if problem is None:
            out.events.append(event)
            out.indices.append(index)  # type: ignore[union-attr]
        else:
            out.dead.append(dead_letter(*problem, item_raw, index, span, limits))
    return out


def _problem(item: Item) -> tuple[str, str] | None:
    if item.duplicate:
        return "duplicate_key", "a key appears twice in one JSON object"
    value = item.value
    if not isinstance(value, dict):
        return "not_an_object", f"expected a JSON object, got {type(value).__name__}"
    bad = sorted(k for k, v in value.items() if isinstance(v, float) and not math.isfinite(v))
    if bad:
        return "non_finite", f"NaN or infinity in {len(bad)} field(s)"
    # A lone surrogate (a valid JSON escape, not encodable text) in a declared field:
    # it would break every later encode of a cell key or record (and msgspec's own
    # error message for a wrongly typed one). Unknown fields are dropped anyway.
    for name in _FIELDS:
        v = value.get(name)
        if isinstance(v, str) and not v.isascii() and _has_surrogate(v):
            return "bad_unicode", f"`{name}` holds a lone UTF-16 surrogate"
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _check(event: TelemetryEvent, now_ms: int, limits: InputLimits) -> tuple[str, str] | None:
    """(reason, detail) if a decoded event is still unacceptable, else None."""
    t = event.event_time_ms
    if not now_ms - limits.max_event_age_ms <= t <= now_ms + limits.max_future_ms:
        return "time_out_of_range", f"event_time_ms is {t - now_ms:+d} ms from now"
    return None


def _reason(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    if text.startswith("Object missing required field"):
        return "missing_field"
    if _TYPE_RE.match(text) or text.startswith("Expected `object`"):
        return "wrong_type"
    return "out_of_range"


def _detail(exc: BaseException) -> str:
    return str(exc)[:_MAX_DETAIL]


def event_spans(raw: bytes) -> list[tuple[int, int]]:
    """Byte spans of an envelope's items (for dead letters of accepted events, such
    as a key mismatch); [] if ``raw`` is not a readable envelope."""
    try:
        text = raw.decode("utf-8")
        items, _ = scan(text, Reader())
    except Exception:  # only called on messages that decoded
        return []
    if items is None:
        return []
    return _byte_spans(raw, text, items)


def _byte_spans(raw: bytes, text: str, items: list[Item]) -> list[tuple[int, int]]:
    """The items' character spans as byte spans of ``raw``. The text is strict UTF-8,
    so re-encoding a slice of it gives exactly the client's bytes; each stretch is
    encoded once, in order (not every prefix again: that is quadratic per envelope)."""
    if len(text) == len(raw):  # ASCII: characters are bytes
        return [item.span for item in items]
    out: list[tuple[int, int]] = []
    char = byte = 0
    for item in items:  # spans are in order and do not overlap
        s, e = item.span
        start = byte + len(text[char:s].encode())
        end = start + len(text[s:e].encode())
        out.append((start, end))
        char, byte = e, end
    return out
