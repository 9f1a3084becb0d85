"""The internal records' one wire format: msgspec structs, tagged, versioned, strict."""

from __future__ import annotations

import pytest

from privmon.streams.partials import Mark, Partial, WireError, decode, mark
from privmon.streams.progress import Progress


def test_partials_and_marks_round_trip_with_their_tag_and_version():
    p = Partial(3, "monitoring", 1764000000000, ("fra-01", "eu"), 41, 97,
                {"latency": 1234, "latency_hist": [0, 3, 5]})
    m = mark(3, "monitoring", 1764000060000, [(1764000000000, "ValueError")])
    assert decode(p.encode()) == p and decode(m.encode()) == m
    assert p.encode().startswith(b'{"k":"partial","p":3,') and b'"v":1' in p.encode()
    assert m.failed == ((1764000000000, "ValueError"),)
    assert isinstance(decode(Mark(0, "s", 5).encode()), Mark)


def test_records_written_before_the_version_field_still_read():
    old = b'{"k":"mark","p":3,"s":"monitoring","t":1764000060000,"f":{"17":"KeyError"}}'
    assert decode(old) == mark(3, "monitoring", 1764000060000, [(17, "KeyError")])


@pytest.mark.parametrize(("raw", "fragment"), [
    (b'{"k":"mark","p":3,"s":"m","t":5,"v":2}', "version 2, this worker reads 1"),
    (b'{"k":"cell","p":3}', "Invalid value 'cell'"),
    (b'{"k":"partial","p":"3","s":"m","w":1,"cell":[],"a":1,"e":1,"m":{}}', "Expected `int`"),
    (b'{"k":"partial","p":3,"s":"m","w":1,"cell":[],"a":1,"e":1,"m":{"x":1.5}}', "$.m"),
    (b'{"k":"mark","p":3,"s":"m"}', "missing required field `t`"),
    (b'\xff\xfe', "malformed"),
])
def test_anything_else_is_refused_naming_what_is_wrong(raw, fragment):
    with pytest.raises(WireError, match="partials record") as info:
        decode(raw)
    assert fragment in str(info.value)


def test_progress_round_trips_and_refuses_other_versions():
    p = Progress(closed={"monitoring": 60_000}, next_offset=12)
    assert Progress.decode(p.encode()) == p
    assert Progress.decode(b'{"closed":{"a":1},"next_offset":3}') == Progress(
        closed={"a": 1}, next_offset=3)
    with pytest.raises(WireError, match="progress record: version 9"):
        Progress.decode(b'{"closed":{},"next_offset":0,"v":9}')
    with pytest.raises(WireError, match="progress record: Expected `int`"):
        Progress.decode(b'{"closed":{"a":"x"},"next_offset":0}')
