"""The batch path for single-event messages (streams/decode.py: decode_singles) gives
an event only where the per-message decoder accepts that message as exactly that
event; and the numpy depth check agrees with the regex one wherever it is used."""

from __future__ import annotations

import json

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from privmon.streams import decode
from privmon.streams.decode import decode_message, decode_singles
from privmon.streams.schema import InputLimits
from tests.fuzz.oracle import NOW
from tests.fuzz.test_properties import SETTINGS, good, message


def _agrees(values: list[bytes]) -> int:
    """Check decode_singles against decode_message per value; how many it took."""
    got = decode_singles(values, now_ms=NOW)
    assert len(got) == len(values)
    for raw, event in zip(values, got, strict=True):
        if event is not None:
            whole = decode_message(raw, now_ms=NOW)
            assert whole.dead == [] and whole.events == [event], raw
    return sum(e is not None for e in got)


@SETTINGS
@given(st.lists(message, max_size=12))
def test_generated_batches_agree_with_the_per_message_decoder(texts):
    _agrees([t.encode("utf-8", "surrogatepass") for t in texts])


@SETTINGS
@given(st.lists(st.binary(max_size=200), max_size=8), st.integers(0, 8))
def test_arbitrary_bytes_beside_good_events_agree(noise, where):
    values = [json.dumps(good(bytes=i)).encode() for i in range(5)]
    values[where % 5:where % 5] = noise
    assert _agrees(values) >= 5  # the good ones are taken whatever is beside them


def test_good_events_are_taken_and_everything_doubtful_is_not():
    good_ones = [json.dumps(good(bytes=i)).encode() for i in range(50)]
    assert _agrees(good_ones) == 50  # the batch path is taken: not vacuous
    event = json.dumps(good())
    doubtful = [
        event[:-1] + ', "server": "x"}',  # a key twice
        event[:-1] + ', "server" : "x"}',  # twice, spaced from its colon
        event.replace('"fra-01"', '"fra\\u002d01"'),  # an escape
        event + ", " + event,  # two events in one message
        event[:40], event[40:],  # one event split over two messages
        json.dumps(good(event_time_ms=NOW + 10**9)),  # out of range
        json.dumps({"events": [good(), good()]}),  # two events: the per-message path
        json.dumps({"events": []}),  # none
        json.dumps({"events": [good()], "events ": 1}),  # an envelope field too many
        json.dumps({"events": [good()]})[:-1] + ', "events": []}',  # "events" twice
        event + " " * (2 << 20),  # over max_message_bytes
        "", "null", "[]",
    ]
    values = [v.encode() for v in doubtful]
    assert decode_singles(values, now_ms=NOW) == [None] * len(values)
    # ... also when good events surround them (the joined checks fail, per message then)
    mixed = good_ones[:3] + values + good_ones[3:6]
    got = decode_singles(mixed, now_ms=NOW)
    assert [g is not None for g in got] == [True] * 3 + [False] * len(values) + [True] * 3


def test_envelopes_of_one_event_are_taken_like_bare_events():
    bare = [json.dumps(good(bytes=i)).encode() for i in range(20)]
    wrapped = [json.dumps({"events": [good(bytes=i)]}).encode() for i in range(20)]
    mixed = [v for pair in zip(bare, wrapped, strict=True) for v in pair]
    assert _agrees(mixed) == 40  # taken, not vacuous, and as decode_message reads them
    assert decode_singles(wrapped, now_ms=NOW) == decode_singles(bare, now_ms=NOW)
    spaced = json.dumps({"events": [good()]}).replace('"events":', '"events" :').encode()
    assert decode_singles([spaced], now_ms=NOW) == [None]
    assert decode_singles([wrapped[0]], now_ms=NOW,
                          limits=InputLimits(max_envelope_events=0)) == [None]


def test_one_event_envelopes_up_to_the_size_cutoff_are_taken_and_longer_ones_left():
    # The longest fields the schema allows, in 4-byte UTF-8 characters: the size the
    # cutoff must cover for every compact envelope of one event.
    wide = "\U0001F600"
    longest = good(account_id=wide * 128, server=wide * 64, region=wide * 64,
                   client_version=wide * 64, platform=wide * 64,
                   latency_ms=599_999.123456789, bytes=999_999_999_999,
                   session_s=604_799.123456789, event_time_ms=NOW - 1)
    compact = json.dumps({"events": [longest]}, ensure_ascii=False,
                         separators=(",", ":")).encode()
    assert len(compact) <= decode.ONE_EVENT_ENVELOPE_MAX_BYTES
    assert _agrees([compact]) == 1
    # Padded past the cutoff it is the per-message path's: None here, accepted there.
    padded = compact[:-1] + b" " * decode.ONE_EVENT_ENVELOPE_MAX_BYTES + b"}"
    assert decode_singles([padded], now_ms=NOW) == [None]
    assert len(decode_message(padded, now_ms=NOW).events) == 1


@SETTINGS
@given(st.lists(message, max_size=6), st.lists(message, max_size=6))
def test_generated_envelopes_of_one_agree_with_the_per_message_decoder(texts, more):
    wrapped = ['{"events": [' + t + "]}" for t in texts] + ['{"events":[' + t + "]}"
                                                             for t in more]
    _agrees([t.encode("utf-8", "surrogatepass") for t in wrapped + texts])


def test_messages_split_and_merged_across_boundaries_are_not_taken():
    """Three messages whose bytes, joined, read as three events: two in the first,
    and one from the other two (a string spans them). Each alone is bad_json."""
    a = json.dumps(good(bytes=1)) + "," + json.dumps(good(bytes=2))
    head, tail = json.dumps(good(bytes=3)).split('"fra-01"', 1)
    b, c = head + '"}', '{"' + tail  # joined by a comma: "server": "},{"
    values = [a.encode(), b.encode(), c.encode()]
    joined = msgspec.json.decode(b"[" + b",".join(values) + b"]")  # the attack is real
    assert len(joined) == 3 and all(isinstance(e, dict) and len(e) == 10 for e in joined)
    assert decode_singles(values, now_ms=NOW) == [None, None, None]
    assert all(decode_message(v, now_ms=NOW).events == [] for v in values)


_NO_BACKSLASH = st.binary(max_size=400).map(lambda b: b.replace(b"\\", b"x"))
_BRACKETY = st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"a", b",", b":"]),
                     max_size=600).map(b"".join)


@SETTINGS
@given(st.one_of(_NO_BACKSLASH, _BRACKETY))
def test_the_numpy_depth_check_agrees_with_the_regex_one(raw):
    assert decode._too_deep(raw, escape=False) == decode._too_deep(raw, escape=True)


def test_the_depth_check_can_say_both():
    deep = b"[" * 101 + b"]" * 101
    quoted = b'"' + b"[" * 200 + b'"'
    unclosed = b'"x" [' + b'"' + b"[" * 200  # the last quote opens nothing: 201 deep
    for raw, want in ((deep, True), (quoted, False), (unclosed, True)):
        assert decode._too_deep(raw, escape=False) is want
        assert decode._too_deep(raw, escape=True) is want
