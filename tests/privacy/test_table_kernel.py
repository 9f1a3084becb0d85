"""privacy/_table.c, the contribution table's per-event kernel: the same table as a
plain per-event reference for any batches (hypothesis), every column type it writes,
and inputs it must refuse without changing the table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privmon.privacy import _table
from privmon.privacy.bounding import ContributionTable
from privmon.privacy.kinds import BooleanMetric, HistogramMetric, ValueMetric
from tests.privacy.policies import make_policy

EDGES = (0, 10, 20, 50, 100, 200, 500, 1000)


def _policy(linf: int, upper: float):
    """make_policy's metrics (value, boolean, histogram), the value one as wide as
    ``upper``: its column is int16 .. int64 as Linf * upper grows."""
    policy = make_policy(max_cells=10**6, max_events_per_cell=linf)
    return dataclasses.replace(policy, metrics=(
        ValueMetric(name="latency", field="latency_ms", lower=0, upper=upper),
        BooleanMetric(name="errors", field="error"),
        HistogramMetric(name="latency_hist", field="latency_ms", edges=EDGES)))


def _reference(batches, policy):
    """Per (account, cell), in order of first event: kept events and column sums
    (the first Linf events of each pair), one event at a time in Python."""
    linf = policy.bounds.max_events_per_cell
    value, flag, hist = policy.metrics
    rows: dict[tuple[int, int], list] = {}
    for accounts, cells, latency, error in batches:
        q = value.quantize(latency).tolist()
        b = hist.quantize(latency).tolist()
        e = flag.quantize(error).tolist()
        for i, key in enumerate(zip(accounts.tolist(), cells.tolist(), strict=True)):
            row = rows.setdefault(key, [0, 0, 0, [0] * (len(EDGES) - 1)])
            if row[0] < linf:
                row[0] += 1
                row[1] += q[i]
                row[2] += e[i]
                row[3][b[i]] += 1
    return rows


ids = st.one_of(st.integers(0, 5), st.integers(0, 2**31 - 1))
cell_ids = st.one_of(st.integers(0, 5), st.integers(0, 2**32 - 1))
events = st.tuples(ids, cell_ids, st.floats(-1e3, 1e12, allow_nan=False), st.booleans())


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(st.lists(events, max_size=60), max_size=8),
       linf=st.sampled_from([1, 2, 5, 255, 256, 70_000]),
       upper=st.sampled_from([1000.0, 1e9]), capacity=st.integers(1, 8))
def test_table_equals_a_per_event_reference(batches, linf, upper, capacity):
    policy = _policy(linf, upper)
    table = ContributionTable(policy, capacity=capacity)
    arrays = []
    kept = 0
    for batch in batches:
        a = np.array([e[0] for e in batch], np.int64)
        c = np.array([e[1] for e in batch], np.int64)
        lat = np.array([e[2] for e in batch], np.float64)
        err = np.array([e[3] for e in batch], bool)
        arrays.append((a, c, lat, err))
        kept += table.add(a, c, {"latency_ms": lat, "error": err})
    reference = _reference(arrays, policy)
    rows = table.bounded_rows(np.random.default_rng(0))  # L0 keeps every row
    got = list(zip(rows.account.tolist(), rows.cell.tolist(), strict=True))
    assert got == list(reference)  # rows in order of their pair's first event
    assert rows.events.tolist() == [r[0] for r in reference.values()]
    assert rows.columns["latency"].tolist() == [r[1] for r in reference.values()]
    assert rows.columns["errors"].tolist() == [r[2] for r in reference.values()]
    assert rows.columns["latency_hist"].tolist() == [r[3] for r in reference.values()]
    total = sum(len(b) for b in batches)
    assert kept == sum(r[0] for r in reference.values())
    assert table.dropped_by_linf == total - kept


def test_column_types_follow_the_bounds():
    """The kernel writes 1-, 2-, 4- and 8-byte columns, signed and unsigned."""
    small, wide = ContributionTable(_policy(5, 1000.0)), ContributionTable(_policy(70_000, 1e9))
    assert (small._events.dtype, small._cols["latency"].dtype) == (np.uint8, np.int16)
    assert (wide._events.dtype, wide._cols["latency"].dtype) == (np.uint32, np.int64)
    # the extremes of a wide row: 70,000 events of the largest and smallest value
    n = 70_000
    for value in (1e9, 0.0):
        table = ContributionTable(_policy(n, 1e9))
        table.add(np.zeros(n + 3, np.int64), np.zeros(n + 3, np.int64),
                  {"latency_ms": np.full(n + 3, value), "error": np.ones(n + 3, bool)})
        rows = table.bounded_rows(np.random.default_rng(0))
        assert rows.events.tolist() == [n]
        assert rows.columns["latency"].tolist() == [n * (1e9 if value else -1e9)]
        assert rows.columns["errors"].tolist() == [n]


def _state(table: ContributionTable):
    """What the table holds (its arrays may have grown; their used rows may not change)."""
    n = len(table)
    return (n, table._account[:n].tolist(), table._cell[:n].tolist(),
            table._events[:n].tolist(), {k: v[:n].tolist() for k, v in table._cols.items()},
            table.dropped_by_linf)


@pytest.mark.parametrize("account, cell", [(-1, 0), (2**31, 0), (0, -1), (0, 2**32)])
def test_ids_out_of_range_are_refused_before_anything_is_written(account, cell):
    table = ContributionTable(_policy(2, 1000.0), capacity=2)
    table.add(np.array([1, 2]), np.array([3, 4]),
              {"latency_ms": np.ones(2), "error": np.zeros(2, bool)})
    before = _state(table)
    with pytest.raises(ValueError, match="account ids in"):
        table.add(np.array([5, account]), np.array([6, cell]),
                  {"latency_ms": np.ones(2), "error": np.zeros(2, bool)})
    assert before == _state(table)
    table.add(np.array([2]), np.array([4]),  # the index still finds the old rows
              {"latency_ms": np.ones(1), "error": np.zeros(1, bool)})
    assert len(table) == 2 and table._events[:2].tolist() == [1, 2]


def _kernel_args(n_slots=8, cap=4, size=0, n=2):
    slots = np.full(n_slots, -1, np.int32)
    rows = (np.zeros(cap, np.int32), np.zeros(cap, np.uint32), np.zeros(cap, np.uint8))
    col = np.zeros((cap, 3), np.uint8)
    return slots, rows, col, np.arange(n, dtype=np.int64)


@pytest.mark.parametrize("case, error, match", [
    ("bucket", ValueError, "bucket indices in"),
    ("few slots", ValueError, "slots: expected more than"),
    ("odd slots", ValueError, "power of two"),
    ("no room", ValueError, "size: expected"),
    ("linf", ValueError, "linf: expected"),
    ("dtype", TypeError, "account_rows: expected signed 4-byte"),
    ("lengths", ValueError, "cell: expected 2 entries"),
    ("read-only", TypeError, "writable"),
])
def test_the_kernel_refuses_bad_arguments_and_writes_nothing(case, error, match):
    slots, (acc, cell, ev), col, ids = _kernel_args()
    contribution = np.array([0, 3 if case == "bucket" else 2], np.int64)
    size, linf, cells = 0, 2, ids
    if case == "few slots":
        slots = np.full(2, -1, np.int32)
    elif case == "odd slots":
        slots = np.full(6, -1, np.int32)
    elif case == "no room":
        size = 3
    elif case == "linf":
        linf = 256  # more than uint8 events hold
    elif case == "dtype":
        acc = acc.astype(np.int64)
    elif case == "lengths":
        cells = ids[:1]
    elif case == "read-only":
        slots.flags.writeable = False
    before = [a.copy() for a in (slots, acc, cell, ev, col)]
    with pytest.raises(error, match=match):
        _table.add(slots, acc, cell, ev, size, linf, ids, cells, ((col, contribution, 3),))
    for x, y in zip(before, (slots, acc, cell, ev, col), strict=True):
        assert np.array_equal(x, y)


def test_rehash_indexes_every_row_and_refuses_a_used_slot_array():
    acc = np.array([7, 7, 9, 0, 0], np.int32)  # 3 rows in use, room for 2 more
    cell = np.array([1, 2, 1, 0, 0], np.uint32)
    slots = np.full(8, -1, np.int32)
    _table.rehash(slots, acc, cell, 3)
    assert sorted(slots[slots >= 0].tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="every slot empty"):
        _table.rehash(slots, acc, cell, 3)
    # the rehashed index finds the rows: adding the same pairs makes no new rows
    ev = np.zeros(5, np.uint8)
    size, kept = _table.add(slots, acc, cell, ev, 3, 5, np.array([9, 7], np.int64),
                            np.array([1, 2], np.int64), ())
    assert (size, kept, ev.tolist()) == (3, 2, [0, 1, 1, 0, 0])
