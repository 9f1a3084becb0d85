"""Releases by column give the values and the bytes the per-value code gives.

``MetricColumn`` clips every interval at once and writes each value's JSON from
its arrays; ``WindowRelease.encoded`` writes whole records from the columns. The
definitions they must equal: ``MetricValue.around`` per value, ``json.dumps`` of
``to_dict``, and ``ReleaseRecord.to_json`` of the records the same release gives.
Property-tested over values (with NaN and infinities where a kind can make them),
cells (any text), selection rules, mechanisms and public cells under k.
"""

from __future__ import annotations

import dataclasses
import json
import math
from types import MappingProxyType

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from privmon.privacy.accumulators import CellTotals
from privmon.privacy.columns import MetricColumn
from privmon.privacy.records import MetricValue
from privmon.privacy.release import release_window
from privmon.privacy.rowjson import float_json
from tests.privacy.keyed import window_noise
from tests.privacy.policies import make_policy

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
anything = st.floats(width=64)  # NaN and +-inf too
domains = st.sampled_from([(-math.inf, math.inf), (0.0, math.inf), (0.0, 1.0),
                           (-math.inf, 0.0), (0.0, 5000.0)])


def _json(v: MetricValue) -> str:
    return json.dumps(v.to_dict(), separators=(",", ":"))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(finite, st.integers(-2**60, 2**60)), min_size=1,
                       max_size=20),
       std=finite.map(abs), halves=st.lists(finite.map(abs), min_size=20, max_size=20),
       per_value=st.booleans(), domain=domains)
def test_around_equals_metric_value_around_value_by_value(values, std, halves, per_value,
                                                          domain):
    n = len(values)
    half = np.array(halves[:n]) if per_value else halves[0]
    column = MetricColumn.around(np.array(values, dtype=np.float64 if any(
        isinstance(v, float) for v in values) else np.int64), std, half, *domain)
    for i, v in enumerate(values):
        h = float(half[i]) if per_value else half
        one = MetricValue.around(np.float64(v), std, h, *domain)
        assert repr(column.at(i)) == repr(one)
        assert column.json_parts()[i] == _json(one)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(anything, anything, anything, anything), min_size=1,
                     max_size=12))
def test_values_with_intervals_of_their_own_encode_as_json_writes_them(rows):
    value, std, low, high = (np.array(c, np.float64) for c in zip(*rows, strict=True))
    column = MetricColumn.of(value, std, low, high)
    assert column.json_parts() == [_json(column.at(i)) for i in range(len(rows))]
    assert all(column.at(i).ci95_half is None for i in range(len(rows)))


def test_float_json_is_repr_for_any_float64():
    """float_json takes msgspec's digits inside [1e-4, 1e16) and repr's outside: equal to
    repr (json.dumps) on random bit patterns (every exponent), on values of every
    magnitude near the notation's edges, and on rounded decimals. Deterministic seeds."""
    rng = np.random.default_rng(16)
    bits = rng.integers(0, 2**64 - 1, 400_000, dtype=np.uint64, endpoint=True).view(np.float64)
    edges = np.array([1e-4, 1e16], np.float64)
    near = np.array([np.nextafter(e, d) for e in edges for d in (0.0, np.inf)])
    scaled = rng.normal(0, 1, 200_000) * 10.0 ** rng.integers(-8, 20, 200_000)
    values = np.concatenate([bits, edges, -edges, near, -near, scaled,
                             np.round(rng.normal(0, 1e6, 100_000), 3)])
    assert float_json(values) == [json.dumps(v) for v in values.tolist()]


def test_float_json_keeps_zero_signs_and_specials():
    values = np.array([0.0, -0.0, math.nan, math.inf, -math.inf, 1e300, 5e-324, 0.1])
    assert float_json(values) == [json.dumps(float(v)) for v in values]
    # one std for all would be written once: not where 0.0 and -0.0 differ
    column = MetricColumn.of(np.zeros(2), np.array([0.0, -0.0]), np.zeros(2), np.zeros(2))
    assert column.json_parts() == [_json(column.at(0)), _json(column.at(1))]
    assert '"noise_std":-0.0' in column.json_parts()[1]


labels = st.text(min_size=1, max_size=6).filter(  # any text: escaped, non-ASCII, quotes
    lambda t: t != "(unlisted)")


@settings(max_examples=60, deadline=None)
@given(accounts=st.lists(st.integers(0, 60), min_size=1, max_size=12), seed=st.integers(0, 9),
       names=st.lists(labels, min_size=12, max_size=12, unique=True),
       rule=st.sampled_from(["noisy_threshold", "truncated_geometric", "public",
                             "gaussian"]),
       histogram=st.booleans())
def test_encoded_records_are_the_records_to_json(accounts, seed, names, rule, histogram):
    n = len(accounts)
    cells = sorted((name, "eu") for name in names[:n])
    if rule == "gaussian":
        policy = make_policy(mechanism="gaussian", rho=0.5, delta=1e-6, k=3,
                             histogram=histogram, dimensions=("server", "region"))
    elif rule == "public":
        policy = make_policy(delta=0, k=20, histogram=histogram, public_cells=tuple(cells),
                             dimensions=("server", "region"))
    else:
        policy = dataclasses.replace(make_policy(k=3, histogram=histogram,
                                                 dimensions=("server", "region")),
                                     selection=rule)
    acc = np.array(accounts, np.int64)
    columns = {}
    rng = np.random.default_rng(seed)
    for m in policy.metrics:
        shape = (n, *m.buckets)
        columns[m.name] = (rng.integers(-2000 * acc[:, None] if m.buckets else -2000 * acc,
                                        2000 * acc[:, None] + 1 if m.buckets else 2000 * acc + 1,
                                        shape) if m.KIND == "value"
                           else rng.integers(0, acc[:, None] * 3 + 1 if m.buckets
                                             else acc * 3 + 1, shape))
    totals = CellTotals(cells=np.arange(n, dtype=np.int64), accounts=acc, events=acc * 3,
                        columns=MappingProxyType(columns))
    rel = release_window(totals, policy, window_start_ms=120_000,
                         cell_labels=lambda c: dict(zip(policy.dimensions, cells[c],
                                                        strict=True)),
                         noise=window_noise(seed))
    records = rel.records
    assert len(rel) == len(records)
    assert rel.encoded() == [("|".join(r.cell.values()).encode(), r.to_json())
                             for r in records]
    if rule == "public":
        assert [tuple(r.cell.values()) for r in records] == [
            c for c in cells if c in set(policy.released_cells)]


def test_encoded_records_stay_the_records_when_the_cell_cache_is_full(monkeypatch):
    """The per-label cache of keys and cell JSON (privacy/release.py) is cleared whole
    when full: cold, warm and cleared-midway encodings are all the records' to_json."""
    from privmon.privacy import release

    names = ["fra-01", "fra-02", "ams-\u00e9", 'q"uote', "back\\slash", "lon-01"]
    cells = sorted((name, "eu") for name in names)
    policy = make_policy(delta=0, k=20, public_cells=tuple(cells),
                         dimensions=("server", "region"))
    n = len(cells)
    acc = np.arange(1, n + 1, dtype=np.int64)
    columns = {m.name: (np.zeros((n, *m.buckets), np.int64)) for m in policy.metrics}
    totals = CellTotals(cells=np.arange(n, dtype=np.int64), accounts=acc, events=acc * 3,
                        columns=MappingProxyType(columns))
    rel = release_window(totals, policy, window_start_ms=120_000,
                         cell_labels=lambda c: dict(zip(policy.dimensions, cells[c],
                                                        strict=True)),
                         noise=window_noise(1))
    expected = [("|".join(r.cell.values()).encode(), r.to_json()) for r in rel.records]
    monkeypatch.setattr(release, "_CELL_PARTS", {})
    monkeypatch.setattr(release, "CELL_PARTS_MAX", n + 2)
    assert rel.encoded() == expected  # cold
    assert rel.encoded() == expected  # warm
    release._CELL_PARTS[("other",)] = {("x",): (b"x", '"other":"x"'),
                                       ("y",): (b"y", '"other":"y"'),
                                       ("z",): (b"z", '"other":"z"')}
    release._CELL_PARTS[policy.dimensions].pop(cells[0])  # one miss: over the cap, cleared
    assert rel.encoded() == expected
    assert ("other",) not in release._CELL_PARTS
