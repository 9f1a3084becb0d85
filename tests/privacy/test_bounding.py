"""Contribution bounding: exact sensitivities, invariants (hypothesis), uniform L0."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from privmon.privacy.bounding import ContributionTable, sensitivities
from privmon.privacy.kinds import ValueMetric
from tests.privacy.policies import make_policy

FALSE_FAILURE = 1e-4  # stated per distribution test, if the seed were random


def test_sensitivities_are_exact():
    policy = make_policy(max_cells=3, max_events_per_cell=7)
    s = sensitivities(policy)
    assert (s["accounts"].per_cell, s["accounts"].l1) == (1, 3)
    assert (s["events"].per_cell, s["events"].l1) == (7, 21)
    # latency in [0, 1000] at resolution 1: centred doubled sum moves by <= 7 * 1000 per cell
    assert (s["latency"].per_cell, s["latency"].l1) == (7000, 21000)
    assert math.isclose(s["latency"].l2, math.sqrt(3) * 7000)
    assert (s["errors"].l1, s["latency_hist"].l1) == (21, 21)
    assert math.isclose(s["latency_hist"].l2, math.sqrt(3) * 7)


def test_quantize_clamps_and_centres():
    m = ValueMetric(name="lat", field="l", lower=0, upper=100, resolution=10)
    # q = clip(round(v / 10), 0, 10); contribution 2q - 10
    got = m.quantize(np.array([-5.0, 0, 14, 15.1, 99, 1e9]))
    assert got.tolist() == [-10, -10, -8, -6, 10, 10]


def _reference(events, policy):
    """Straightforward per-event bounding (first Linf per pair), before L0."""
    linf = policy.bounds.max_events_per_cell
    m = policy.metric("latency")
    kept = defaultdict(list)
    for account, cell, latency in events:
        if len(kept[(account, cell)]) < linf:
            kept[(account, cell)].append(latency)
    out = {}
    for key, values in kept.items():
        contrib = m.quantize(np.array(values, dtype=float))
        out[key] = (len(values), int(contrib.sum()))
    return out


event_lists = st.lists(
    st.tuples(
        st.integers(0, 6),
        st.integers(0, 9),
        st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False),
    ),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(events=event_lists, split=st.integers(1, 50), seed=st.integers(0, 2**32 - 1),
       l0=st.integers(1, 4), linf=st.integers(1, 6))
def test_bounding_never_exceeds_l0_linf_or_range(events, split, seed, l0, linf):
    policy = make_policy(max_cells=l0, max_events_per_cell=linf)
    table = ContributionTable(policy, capacity=4)
    for start in range(0, len(events), split):
        chunk = events[start:start + split]
        table.add(
            np.array([e[0] for e in chunk], np.int64),
            np.array([e[1] for e in chunk], np.int64),
            {"latency_ms": np.array([e[2] for e in chunk]),
             "error": np.array([int(e[2]) % 2 for e in chunk])},
        )
    rows = table.bounded_rows(np.random.default_rng(seed))
    reference = _reference(events, policy)
    per_account = defaultdict(int)
    for i in range(rows.account.size):
        key = (int(rows.account[i]), int(rows.cell[i]))
        per_account[key[0]] += 1
        n_events, nsum = reference[key]
        assert rows.events[i] == n_events <= linf
        assert rows.columns["latency"][i] == nsum
        assert abs(nsum) <= linf * 1000  # |2q - 1000| <= 1000 per event
        assert 0 <= rows.columns["errors"][i] <= n_events
        assert rows.columns["latency_hist"][i].sum() == n_events
    for account in {a for a, _ in reference}:
        cells = sum(1 for a, _ in reference if a == account)
        assert per_account[account] == min(cells, l0)
    assert table.dropped_by_linf == len(events) - sum(n for n, _ in reference.values())


def test_l0_subset_is_uniform():
    """One account in 5 cells, L0 = 2: each cell kept with probability 2/5."""
    policy = make_policy(max_cells=2)
    table = ContributionTable(policy)
    table.add(np.zeros(5, np.int64), np.arange(5), {"latency_ms": np.ones(5), "error": np.zeros(5)})
    rng = np.random.default_rng(12345)
    trials = 5000
    counts = np.zeros(5)
    pairs = defaultdict(int)
    for _ in range(trials):
        kept = sorted(table.bounded_rows(rng).cell.tolist())
        assert len(kept) == 2
        counts[kept] += 1
        pairs[tuple(kept)] += 1
    # Each of the 10 pairs is equally likely (uniform 2-subset).
    observed = np.array([pairs[p] for p in sorted(pairs)])
    assert observed.size == 10
    assert stats.chisquare(observed).pvalue >= FALSE_FAILURE
    assert stats.chisquare(counts, np.full(5, trials * 2 / 5)).pvalue >= FALSE_FAILURE


def test_nan_is_rejected_not_bounded():
    policy = make_policy()
    table = ContributionTable(policy)
    try:
        table.add(np.zeros(1, np.int64), np.zeros(1, np.int64),
                  {"latency_ms": np.array([np.nan]), "error": np.zeros(1)})
    except ValueError as exc:
        assert "expected finite numbers" in str(exc)
    else:
        raise AssertionError("NaN was accepted")
