"""Utility at epsilon = 1 per window with cells of 1,000 accounts.

Released values are compared with the true aggregates (accumulators.result):
the error's sample std must match the stated noise_std within a few percent,
and the stated 95% intervals must cover about 95% of the truths. Bounds are
set at >= 4 standard errors (false-failure rate < 1e-4 each).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from privmon.privacy import accumulators as acc
from privmon.privacy.bounding import ContributionTable
from privmon.privacy.release import release_window
from tests.privacy.keyed import window_noise
from tests.privacy.policies import make_policy

CELLS, ACCOUNTS_PER_CELL, REPEATS = 100, 1000, 20


def _world(policy):
    rng = np.random.default_rng(2026)
    n_accounts = CELLS * ACCOUNTS_PER_CELL
    accounts = np.repeat(np.arange(n_accounts), 3)  # 3 events each, one cell each
    cells = accounts // ACCOUNTS_PER_CELL
    table = ContributionTable(policy)
    table.add(accounts, cells, {
        "latency_ms": rng.lognormal(4, 1, accounts.size),
        "error": rng.random(accounts.size) < 0.05,
    })
    totals = acc.add(acc.initialize(policy), table.bounded_rows(rng))
    return totals, acc.result(totals, policy)


@pytest.mark.slow
@pytest.mark.parametrize("mechanism", ["geometric", "gaussian"])
def test_noise_std_and_intervals_match_the_truth(mechanism):
    policy = make_policy(
        mechanism=mechanism, epsilon=1.0, rho=0.5 if mechanism == "gaussian" else None,
        max_cells=1, max_events_per_cell=5, k=20, histogram=False,
    )
    totals, truth = _world(policy)
    errors: dict[str, list[float]] = {}
    stated: dict[str, float] = {}
    covered: dict[str, int] = {}
    for trial in range(REPEATS):
        rel = release_window(totals, policy, window_start_ms=0,
                             cell_labels=lambda c: {"server": str(c)},
                             noise=window_noise((5, trial)))
        assert len(rel.records) == CELLS  # 1,000-account cells always pass selection
        for i, record in enumerate(rel.records):
            for name in ("accounts", "events", "errors.count", "latency.sum", "latency.mean"):
                value = record.metrics[name]
                err = value.value - truth[name][i]
                errors.setdefault(name, []).append(err)
                stated.setdefault(name, value.noise_std)
                covered[name] = covered.get(name, 0) + (value.ci95_low <= truth[name][i]
                                                        <= value.ci95_high)
    n = CELLS * REPEATS
    for name, errs in errors.items():
        errs_a = np.asarray(errs)
        # Unbiased (mean error within 4 SE) and std within a few percent of stated.
        assert abs(errs_a.mean()) < 4 * stated[name] / math.sqrt(n), name
        tolerance = 0.05 if name != "latency.mean" else 0.10  # mean: delta-method std
        assert abs(errs_a.std() / stated[name] - 1) < tolerance, (name, errs_a.std(), stated[name])
        assert covered[name] / n >= 0.95 - 4 * math.sqrt(0.05 * 0.95 / n), name
    # Counts at epsilon=1: errors are small next to 1,000 accounts / 3,000 events.
    assert stated["accounts"] < 0.01 * ACCOUNTS_PER_CELL
