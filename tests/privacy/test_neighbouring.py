"""Empirical privacy on neighbouring inputs (with and without one account).

For datasets D and D' differing in one account, the release is run many times
on each and its outcomes recorded (absent, or the released event count).
For every outcome S the check is P[D in S] <= e^eps P[D' in S] + delta (and the
reverse), with one-sided Clopper-Pearson bounds at level FALSE_FAILURE split
over all outcomes and both directions (Bonferroni), so a truly private release fails the check
with probability <= FALSE_FAILURE. The same check must flag the deliberately
non-private variants: exact counts (no noise) and no partition selection.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from privmon.privacy import accumulators as acc
from privmon.privacy import release as release_mod
from privmon.privacy.bounding import ContributionTable
from privmon.privacy.mechanisms import IntegerNoise
from tests.privacy.keyed import window_noise
from tests.privacy.policies import make_policy

FALSE_FAILURE = 1e-4
TRIALS = 20_000
EPSILON, DELTA = 1.0, 1e-3


def _totals(policy, n_accounts):
    """n_accounts in one cell; every account maxes out Linf events, latency and errors."""
    linf = policy.bounds.max_events_per_cell
    table = ContributionTable(policy)
    accounts = np.repeat(np.arange(n_accounts), linf)
    table.add(accounts, np.zeros(accounts.size, np.int64),
              {"latency_ms": np.full(accounts.size, 1000.0), "error": np.ones(accounts.size)})
    return acc.add(acc.initialize(policy), table.bounded_rows(np.random.default_rng(0)))


def _outcomes(policy, totals, seed):
    out = Counter()
    for trial in range(TRIALS):
        rel = release_mod.release_window(
            totals, policy, window_start_ms=0, cell_labels=lambda c: {"server": "s"},
            noise=window_noise((seed, trial)),
        )
        if not rel.records:
            out["absent"] += 1
        else:
            out[int(rel.records[0].metrics["events"].value)] += 1
    return out


def _violations(p: Counter, q: Counter, epsilon: float, delta: float) -> list:
    bins = set(p) | set(q)
    alpha = FALSE_FAILURE / (2 * len(bins))
    found = []
    for a, b in ((p, q), (q, p)):
        for s in bins:
            lo = stats.beta.ppf(alpha, a[s], TRIALS - a[s] + 1) if a[s] else 0.0
            hi = stats.beta.ppf(1 - alpha, b[s] + 1, TRIALS - b[s]) if b[s] < TRIALS else 1.0
            if lo > math.exp(epsilon) * hi + delta:
                found.append((s, a[s], b[s]))
    return found


def _check(n_accounts: int) -> list:
    policy = make_policy(epsilon=EPSILON, delta=DELTA, k=5, max_cells=1,
                         max_events_per_cell=3, histogram=False)
    with_one = _outcomes(policy, _totals(policy, n_accounts), 1)
    without = _outcomes(policy, _totals(policy, n_accounts - 1), 2)
    return _violations(with_one, without, EPSILON, DELTA)


@pytest.fixture
def exact_counts(monkeypatch):
    monkeypatch.setattr(IntegerNoise, "draws",  # (add and every release draw through it)
                        lambda self, streams, width=1: np.zeros(len(streams) * width, np.int64))


@pytest.fixture
def no_partition_selection(monkeypatch):
    def select(self, accounts, stream_of):
        accounts = np.asarray(accounts)
        return accounts >= self.k, accounts.copy(), self.noise()

    monkeypatch.setattr(release_mod.PartitionSelection, "select", select)


@pytest.mark.slow
def test_release_is_private_for_a_large_cell():
    assert _check(200) == []


@pytest.mark.slow
def test_release_is_private_at_the_k_floor():
    # n = k with the account, k - 1 without: only selection's delta may separate them.
    assert _check(5) == []


@pytest.mark.slow
def test_exact_counts_variant_is_caught(exact_counts):
    assert _check(200) != []


@pytest.mark.slow
def test_no_partition_selection_variant_is_caught(no_partition_selection):
    assert _check(5) != []
