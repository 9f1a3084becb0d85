"""The internal records' one wire format: msgspec structs, tagged, versioned, strict."""

from __future__ import annotations

import msgspec
import pytest

from privmon.streams.partials import (
    Mark,
    Partial,
    Partials,
    WireError,
    decode,
    mark,
    partial_key,
    partial_keys,
    route,
)
from privmon.streams.partitioner import partitions_for_keys
from privmon.streams.progress import Progress


def test_partials_and_marks_round_trip_with_their_tag_and_version():
    p = Partials(3, "monitoring", 1764000000000, [("fra-01", "eu"), ("fra-02", "eu")],
                 [41, 2], [97, 3], {"latency": [1234, 5], "latency_hist": [[0, 3, 5], [1, 0, 0]]})
    m = mark(3, "monitoring", 1764000060000, [(1764000000000, "ValueError")])
    assert decode(p.encode()) == p and decode(m.encode()) == m
    assert p.encode().startswith(b'{"k":"partials","p":3,') and b'"v":1' in p.encode()
    assert m.failed == ((1764000000000, "ValueError"),)
    assert isinstance(decode(Mark(0, "s", 5).encode()), Mark)


def test_the_per_cell_partials_of_earlier_versions_read_as_blocks_of_one():
    old = Partial(3, "monitoring", 1764000000000, ("fra-01", "eu"), 41, 97,
                  {"latency": 1234, "latency_hist": [0, 3, 5]})
    wire = msgspec.json.encode(old)  # as earlier versions wrote it
    assert wire.startswith(b'{"k":"partial","p":3,')
    assert decode(wire) == Partials(3, "monitoring", 1764000000000, [("fra-01", "eu")],
                                            [41], [97], {"latency": [1234],
                                                         "latency_hist": [[0, 3, 5]]})


@pytest.mark.parametrize("partitions", [1, 3, 4])
def test_route_sends_each_cell_once_to_its_keys_partition_under_the_size_limit(partitions):
    n = 3000
    block = Partials(0, "monitoring", 1764000000000, [(f"s{i:05d}", f"r{i % 4}") for i in range(n)],
                     list(range(n)), [2 * i for i in range(n)],
                     {"latency": [3 * i for i in range(n)], "hist": [[i, 1] for i in range(n)]})
    where = dict(zip(block.cells, partitions_for_keys(block.keys(), partitions).tolist(),
                     strict=True))
    records = route(block, partitions, max_bytes=20_000)
    assert len(records) > partitions  # the limit split them
    seen = []
    for key, value, q in records:
        assert key == b"monitoring|1764000000000" and len(value) <= 20_000
        got = decode(value)
        assert all(where[c] == q for c in got.cells)
        seen += [(c, a, e, lat, h) for c, a, e, lat, h in zip(
            got.cells, got.accounts, got.events, got.columns["latency"], got.columns["hist"],
            strict=True)]
    assert sorted(seen) == sorted(zip(block.cells, block.accounts, block.events,
                                      block.columns["latency"], block.columns["hist"],
                                      strict=True))
    assert route(Partials(0, "m", 1, [], [], [], {}), partitions) == []


def test_records_written_before_the_version_field_still_read():
    old = b'{"k":"mark","p":3,"s":"monitoring","t":1764000060000,"f":{"17":"KeyError"}}'
    assert decode(old) == mark(3, "monitoring", 1764000060000, [(17, "KeyError")])


@pytest.mark.parametrize(("raw", "fragment"), [
    (b'{"k":"mark","p":3,"s":"m","t":5,"v":2}', "version 2, this worker reads 1"),
    (b'{"k":"cell","p":3}', "Invalid value 'cell'"),
    (b'{"k":"partial","p":"3","s":"m","w":1,"cell":[],"a":1,"e":1,"m":{}}', "Expected `int`"),
    (b'{"k":"partial","p":3,"s":"m","w":1,"cell":[],"a":1,"e":1,"m":{"x":1.5}}', "$.m"),
    (b'{"k":"partials","p":3,"s":"m","w":1,"cells":[["a"]],"a":[1,2],"e":[1],"m":{}}',
     "1 cells, 2 account and 1 event counts"),
    (b'{"k":"partials","p":3,"s":"m","w":1,"cells":[["a"]],"a":[1],"e":[1],"m":{"x":[]}}',
     "column 'x' has 0 rows for 1 cells"),
    (b'{"k":"partials","p":3,"s":"m","w":1,"cells":[["a"],["b"]],"a":[1,1],"e":[1,1],'
     b'"m":{"h":[[1,2],3]}}', "column 'h' mixes rows"),
    (b'{"k":"partials","p":3,"s":"m","w":1,"cells":[["a"],["b"]],"a":[1,1],"e":[1,1],'
     b'"m":{"h":[[1,2],[3]]}}', "column 'h' mixes rows"),
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


@pytest.mark.parametrize("cells", [
    [("fra-01", "eu"), ("s|x", ""), ("é", "\u2028"), ("", "")],
    [("one",)],
    [(), ()],  # a stream without dimensions: no separator after the window
    [],
])
def test_partial_keys_are_partial_key_of_each_cell(cells):
    assert partial_keys("monitoring", 1764000000000, cells) == [
        partial_key("monitoring", 1764000000000, c) for c in cells]
