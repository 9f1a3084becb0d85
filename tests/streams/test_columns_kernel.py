"""agents/_columns.c, stage 1's columns from decoded events: the values attribute access
gives, codes in order of first sight with their labels, and refusals that name what
arrived."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privmon.agents import _columns
from privmon.agents.stage1_columns import _FIELDS, DimCodes
from privmon.streams.decode import decode_singles
from privmon.streams.schema import TelemetryEvent

NOW = 1_700_000_000_000


def _event(**kw) -> TelemetryEvent:
    base = dict(account_id="a", server="s", region="eu", client_version="1.0",
                platform="linux", latency_ms=1.5, bytes=10, error=False, session_s=2.0,
                event_time_ms=NOW)
    return TelemetryEvent(**{**base, **kw})


numbers = st.tuples(st.floats(0, 600_000), st.integers(0, 10**12), st.booleans(),
                    st.integers(0, 2**62))


@settings(max_examples=100, deadline=None)
@given(st.lists(numbers, max_size=50))
def test_fill_gives_each_events_attribute(rows):
    events = [_event(latency_ms=lat, bytes=b, error=e, event_time_ms=t)
              for lat, b, e, t in rows]
    for name, dtype in (("latency_ms", np.float64), ("bytes", np.int64),
                        ("error", np.bool_), ("event_time_ms", np.int64)):
        out = np.empty(len(events), dtype)
        _columns.fill(events, _FIELDS[name], out)
        assert out.tolist() == [getattr(e, name) for e in events]


def test_fill_reads_decoded_events_and_ints_as_floats():
    """decode's own event type (a subclass), and a float field that arrived as an int."""
    raw = (b'{"account_id":"a","server":"s","region":"r","client_version":"1",'
           b'"platform":"p","latency_ms":3,"bytes":5,"error":true,"session_s":1.25,'
           b'"event_time_ms":%d}' % NOW)
    events = decode_singles([raw], now_ms=NOW)
    assert events[0] is not None and type(events[0]) is not TelemetryEvent
    out = np.empty(1)
    _columns.fill(events, _FIELDS["latency_ms"], out)
    assert out.tolist() == [3.0]
    big = [_event(latency_ms=2**70)]  # (an int too big for int64 is still a float)
    _columns.fill(big, _FIELDS["latency_ms"], out)
    assert out.tolist() == [float(2**70)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["eu", "us", "ap", "(unlisted)", "é", ""]),
                         max_size=30), max_size=6))
def test_codes_number_values_in_order_of_first_sight(batches):
    table = DimCodes().table("region")
    seen: dict[str, int] = {}
    for values in batches:
        events = [_event(region=v) for v in values]
        out = np.empty(len(events), np.int64)
        new = _columns.codes(events, _FIELDS["region"], table, table.labels, out)
        before = len(seen)
        for v in values:
            seen.setdefault(v, len(seen))
        assert out.tolist() == [seen[v] for v in values]
        assert new == len(seen) - before
        assert dict(table) == seen and table.labels == list(seen)


@pytest.mark.parametrize("case, error, match", [
    ("not an event", TypeError, "descriptor|object"),
    ("wrong type", TypeError, r"events\[0\]: expected an int, got float"),
    ("length", ValueError, "one dimension of 2 items"),
    ("dtype", TypeError, "int64, float64 or bool"),
    ("tuple", TypeError, "events: expected a list"),
    ("field", TypeError, "attribute descriptor"),
])
def test_fill_refuses_what_it_cannot_read(case, error, match):
    events: object = [_event(), _event()]
    out = np.empty(2, np.int64)
    field = _FIELDS["bytes"]
    if case == "not an event":
        events = [_event(), object()]
    elif case == "wrong type":
        field = _FIELDS["latency_ms"]
    elif case == "length":
        out = np.empty(3, np.int64)
    elif case == "dtype":
        out = np.empty(2, np.int32)
    elif case == "tuple":
        events = tuple(events)  # type: ignore[arg-type]
    elif case == "field":
        field = "bytes"
    with pytest.raises(error, match=match):
        _columns.fill(events, field, out)


def test_codes_refuse_a_table_and_labels_out_of_step_and_unhashable_values():
    table = DimCodes().table("region")
    out = np.empty(1, np.int64)
    with pytest.raises(ValueError, match="labels: expected one per code"):
        _columns.codes([_event()], _FIELDS["region"], table, ["stale"], out)
    with pytest.raises(TypeError, match="int codes"):
        _columns.codes([_event()], _FIELDS["region"], {"eu": "x"}, ["eu"], out)
    unhashable = {}
    with pytest.raises(TypeError, match="unhashable"):
        _columns.codes([_event(region=[])], _FIELDS["region"], unhashable, [], out)  # type: ignore[arg-type]
    assert unhashable == {}


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.binary(max_size=4), st.integers(0, 2**62), max_size=20),
       st.lists(st.binary(max_size=4), max_size=40))
def test_lookup_is_dict_get_with_minus_one(table, keys):
    out = np.empty(len(keys), np.int64)
    missing = _columns.lookup(table, keys, out)
    assert out.tolist() == [table.get(k, -1) for k in keys]
    assert missing == sum(k not in table for k in keys)


@pytest.mark.parametrize("value", [-1, "7", 2**64, 1.0])
def test_lookup_refuses_values_that_are_not_ids(value):
    with pytest.raises((ValueError, OverflowError)):
        _columns.lookup({b"k": value}, [b"k"], np.empty(1, np.int64))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-3, 3), st.integers(-2**63, 2**63 - 1)), max_size=80))
def test_dense_codes_number_values_in_order_of_first_sight(values):
    from privmon.agents.stage1_columns import dense_codes

    codes, firsts = dense_codes(np.array(values, np.int64))
    seen: dict[int, int] = {}
    for v in values:
        seen.setdefault(v, len(seen))
    assert codes.tolist() == [seen[v] for v in values]
    assert firsts.tolist() == [values.index(v) for v in seen]


def test_dense_refuses_overlapping_arrays():
    values = np.arange(4, dtype=np.int64)
    with pytest.raises(ValueError, match="do not overlap"):
        _columns.dense(values, values, np.empty(4, np.int64))
    assert values.tolist() == [0, 1, 2, 3]


class _Label(str):
    """A str subclass: equal to its str, so a dict gives it the same code."""


_POOL = ["eu", "us", "e", "é", "€", "😀", "eu-central", "", "ü€", "u"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_POOL) - 1), st.integers(1, 4),
                          st.sampled_from(["fresh", "same", "subclass"])), max_size=40))
def test_codes_of_runs_of_equal_values_are_the_dicts(runs):
    """``codes`` reuses the previous event's code for an equal str (an envelope's events
    repeat their server, region, version and platform): equal values that are distinct
    objects (each built afresh), of every width of str (1, 2 and 4 bytes a character),
    and a str subclass, get the code a dict gives them."""
    values = []
    for index, repeat, how in runs:
        for _ in range(repeat):
            v = _POOL[index]
            values.append(v if how == "same" else
                          _Label(v) if how == "subclass" else "".join(list(v)) + "")
    events = [_event(region=v) for v in values]
    table = DimCodes().table("region")
    out = np.empty(len(events), np.int64)
    _columns.codes(events, _FIELDS["region"], table, table.labels, out)
    seen: dict[str, int] = {}
    for v in values:
        seen.setdefault(v, len(seen))
    assert out.tolist() == [seen[v] for v in values]
    assert table.labels == [str(v) for v in seen]
