"""Property tests of stage 1's input handling over generated JSON, bytes and unicode.

The invariants are tests/fuzz/oracle.py's (the fuzzer's oracle): never raises,
no internal_error, every item accounted for once, accepted events within the
schema's limits, dead letters carrying the client's own bytes, and no event
read from an object with a key twice. A negative control shows the oracle
catches a decoder that lets a duplicate key through.
"""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from privmon.streams.decode import decode_message
from privmon.streams.schema import Decoded, TelemetryEvent
from tests.fuzz.oracle import NOW, check_decode
from tests.fuzz.targets import IngestTarget

FIELDS = list(TelemetryEvent.__struct_fields__)
SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def good(**overrides: object) -> dict:
    event = {"account_id": "acct-1", "server": "fra-01", "region": "eu", "client_version": "5",
             "platform": "chrome", "latency_ms": 42.5, "bytes": 1000, "error": False,
             "session_s": 30.0, "event_time_ms": NOW - 1000}
    event.update(overrides)
    return event


# JSON text built fragment by fragment, so it can hold what json.dumps never writes:
# duplicate and escaped keys, lone surrogates, NaN literals, huge numbers, odd spacing.
ws = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])
escape = st.sampled_from(["\\ud800", "\\udfff", "\\ud83d\\ude00", "\\u0000", "\\u0041",
                          "\\\"", "\\\\", "\\n", "\\/"])
plain = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                       blacklist_characters='"\\\x00\x1f'), max_size=8)
string = st.lists(plain | escape, max_size=4).map(lambda parts: '"' + "".join(parts) + '"')
number = st.one_of(
    st.integers(-10**6, 10**15).map(str), st.integers(10**18, 10**40).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", "0.0", "1E+2", "1" * 400]),
)
scalar = st.one_of(string, number, st.sampled_from(["true", "false", "null"]))
key = st.one_of(st.sampled_from([f'"{f}"' for f in FIELDS] + ['"events"', '"junk"']), string,
                st.sampled_from(['"\\u0061ccount_id"', '"serv\\u0065r"']))


def _obj(pairs: list[tuple[str, str]], spaces: list[str]) -> str:
    """An object; pair i spaced by spaces[i % len] (mixed spacing around colons too)."""
    sp = spaces or [""]
    return "{" + ",".join(f"{sp[i % len(sp)]}{k}{sp[(i + 1) % len(sp)]}:{sp[i % len(sp)]}{v}"
                          for i, (k, v) in enumerate(pairs)) + "}"


fragment = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.builds(_obj, st.lists(st.tuples(key, inner), max_size=5), st.lists(ws, max_size=3)),
    ),
    max_leaves=12,
)


@st.composite
def event_text(draw: st.DrawFn) -> str:
    """A valid event's JSON with some of its fields replaced, repeated or added."""
    pairs = [(f'"{k}"', json.dumps(v)) for k, v in good().items()]
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["replace", "duplicate", "add", "drop"]))
        i = draw(st.integers(0, len(pairs) - 1))
        if action == "replace":
            pairs[i] = (pairs[i][0], draw(fragment))
        elif action == "duplicate":
            pairs.insert(draw(st.integers(0, len(pairs))), (pairs[i][0], draw(fragment)))
        elif action == "add":
            pairs.append((draw(key), draw(fragment)))
        elif len(pairs) > 1:
            pairs.pop(i)
    return _obj(pairs, draw(st.lists(ws, max_size=4)))


message = st.one_of(
    event_text(),
    st.lists(st.one_of(event_text(), fragment), max_size=6).map(
        lambda items: '{"events": [' + ", ".join(items) + "]}"),
    fragment,
)


@SETTINGS
@given(message)
@example('{"account_id": "a", "account_id": "b"}')
@example(json.dumps(good())[:-1] + ', "server" : "other"}')  # one key spaced, repeated
@example('{"events": [{"a": 1, "a": 2}], "events": []}')
@example('{"events": [' + json.dumps(good())[:-1] + ', "note": "\\ud800"}]}')
@example('{"events": [' + json.dumps(good())[:-1] + ', "j": ' + "[" * 600 + "]" * 600 + "}]}")
def test_generated_json_keeps_every_invariant(text):
    raw = text.encode("utf-8", "surrogatepass")  # (lone surrogates as raw bytes, too)
    check_decode(raw, decode_message(raw, now_ms=NOW))


def test_the_numpy_byte_facts_agree_with_the_bytes_methods(monkeypatch):
    """Long messages take streams.decode._facts' numpy branch: with it forced on every
    size, the generated messages keep every invariant (and the facts are equal)."""
    from privmon.streams import decode

    @SETTINGS
    @given(message)
    def run(text):
        raw = text.encode("utf-8", "surrogatepass")
        monkeypatch.setattr(decode, "NUMPY_FROM_BYTES", 10**9)
        by_bytes = decode._facts(raw)
        monkeypatch.setattr(decode, "NUMPY_FROM_BYTES", 0)
        assert decode._facts(raw) == by_bytes
        check_decode(raw, decode_message(raw, now_ms=NOW))

    run()


@SETTINGS
@given(st.binary(max_size=600))
def test_arbitrary_bytes_keep_every_invariant(raw):
    check_decode(raw, decode_message(raw, now_ms=NOW))


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_unicode_keeps_every_invariant(text):
    raw = text.encode("utf-8", "surrogatepass")
    check_decode(raw, decode_message(raw, now_ms=NOW))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 12), st.data())
def test_a_bad_item_at_every_position_of_an_envelope_costs_only_itself(n, data):
    bad = data.draw(st.sampled_from(['{"a": 1, "a": 2}', "42", '"x"', "null",
                                     json.dumps(good(latency_ms="x")), '{"latency_ms": NaN}']))
    for position in range(n + 1):
        items = [json.dumps(good(bytes=i)) for i in range(n)]
        items.insert(position, bad)
        raw = ('{"events": [' + ", ".join(items) + "]}").encode()
        decoded = decode_message(raw, now_ms=NOW)
        check_decode(raw, decoded)
        assert [e.bytes for e in decoded.events] == list(range(n))
        assert [d.index for d in decoded.dead] == [position]


@settings(max_examples=200, deadline=None)
@given(st.lists(message, min_size=1, max_size=8), st.lists(st.integers(0, 3), min_size=8,
                                                           max_size=8))
def test_stage1_ingest_never_raises_and_reconciles(texts, modes):
    target = IngestTarget()
    for text, mode in zip(texts, modes, strict=False):
        target(bytes([mode]) + text.encode("utf-8", "surrogatepass"))


def test_the_oracle_catches_a_decoder_that_reads_a_duplicate_key():
    """Negative control: msgspec alone keeps the last of two values; the oracle must
    refuse an event read that way."""
    raw = json.dumps(good())[:-1].encode() + b', "server": "other"}'
    naive = Decoded(events=[msgspec.json.decode(raw, type=TelemetryEvent)])
    with pytest.raises(AssertionError, match="repeated key"):
        check_decode(raw, naive)
    check_decode(raw, decode_message(raw, now_ms=NOW))  # privmon's own: fine
    assert [d.reason for d in decode_message(raw, now_ms=NOW).dead] == ["duplicate_key"]
