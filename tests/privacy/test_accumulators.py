"""Accumulators are pure, merge exactly, and give the true aggregates."""

from __future__ import annotations

import numpy as np
import pytest

from privmon.privacy import accumulators as acc
from privmon.privacy.bounding import ContributionTable
from privmon.privacy.kinds.histogram import quantiles_from_histogram
from tests.privacy.policies import make_policy


def _rows(policy, seed, n=2000, accounts=300, cells=12):
    rng = np.random.default_rng(seed)
    table = ContributionTable(policy)
    table.add(
        rng.integers(0, accounts, n), rng.integers(0, cells, n),
        {"latency_ms": rng.uniform(0, 1200, n), "error": rng.random(n) < 0.1},
    )
    return table.bounded_rows(rng)


def test_add_matches_direct_per_cell_sums():
    policy = make_policy(max_cells=100, max_events_per_cell=100)
    rows = _rows(policy, 1)
    totals = acc.add(acc.initialize(policy), rows)
    for i, cell in enumerate(totals.cells.tolist()):
        mask = rows.cell == cell
        assert totals.accounts[i] == np.unique(rows.account[mask]).size
        assert totals.events[i] == rows.events[mask].sum()
        assert totals.columns["latency"][i] == rows.columns["latency"][mask].sum()
        hist = rows.columns["latency_hist"][mask].sum(0)
        assert (totals.columns["latency_hist"][i] == hist).all()


def test_merge_of_partitions_equals_one_pass_and_inputs_are_untouched():
    policy = make_policy()
    a, b = _rows(policy, 2), _rows(policy, 3)
    # Disjoint accounts, as with two stage-1 partitions.
    b = type(b)(b.account + 10_000, b.cell, b.events, b.columns)
    ta = acc.add(acc.initialize(policy), a)
    tb = acc.add(acc.initialize(policy), b)
    snapshot = ta.events.copy()
    merged = acc.merge(ta, tb)
    assert (ta.events == snapshot).all()
    one_pass = acc.add(ta, b)
    assert (merged.cells == one_pass.cells).all()
    for name in ("accounts", "events"):
        assert (getattr(merged, name) == getattr(one_pass, name)).all()
    swapped = acc.merge(tb, ta)
    assert (swapped.columns["latency_hist"] == merged.columns["latency_hist"]).all()


def test_true_results_mean_rate_and_quantiles():
    policy = make_policy(max_cells=1, max_events_per_cell=10)
    table = ContributionTable(policy)
    latencies = np.array([5.0, 15.0, 15.0, 60.0])
    table.add(np.arange(4), np.zeros(4, np.int64),
              {"latency_ms": latencies, "error": np.array([1, 0, 0, 1])})
    totals = acc.add(acc.initialize(policy), table.bounded_rows(np.random.default_rng(0)))
    res = acc.result(totals, policy)
    assert res["latency.sum"][0] == pytest.approx(95.0)
    assert res["latency.mean"][0] == pytest.approx(23.75)
    assert res["errors.rate"][0] == pytest.approx(0.5)
    # buckets (0,10,20,50,100...): counts [1, 2, 0, 1]; median at 2 of 4 -> middle of bucket 10-20
    assert res["latency_hist.p50"][0] == pytest.approx(15.0)


def test_quantiles_from_histogram_exact():
    edges = (0.0, 10.0, 20.0, 30.0)
    q = quantiles_from_histogram(np.array([[10, 0, 10], [0, 0, 0]]), edges, (0.25, 0.5, 0.75))
    assert q[0].tolist() == pytest.approx([5.0, 10.0, 25.0])
    assert np.isnan(q[1]).all()
