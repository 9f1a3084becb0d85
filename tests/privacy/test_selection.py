"""Partition selection: exact threshold arithmetic and its release probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from privmon.privacy.selection import PartitionSelection
from tests.privacy.keyed import streams

FALSE_FAILURE = 1e-4


def test_threshold_arithmetic_is_exact():
    sel = PartitionSelection(k=10, epsilon=0.5, delta=1e-6, max_cells=2)
    eps, delta = 0.25, 5e-7
    alpha = math.exp(-eps)
    expected = 1 + math.ceil(math.log(1 / (delta * (1 + alpha))) / eps)
    assert sel.threshold == expected == 57
    # A cell at the k floor is released with probability <= delta per cell.
    assert alpha ** (sel.threshold - 1) / (1 + alpha) <= delta
    assert alpha ** (sel.threshold - 2) / (1 + alpha) > delta  # and T is the smallest such


def test_under_k_is_never_released_and_draws_no_noise():
    sel = PartitionSelection(k=5, epsilon=100.0, delta=0.4, max_cells=1)
    released, noisy, _ = sel.select(np.array([0, 1, 4, 5, 1000]), streams(5).__getitem__)
    # At the floor (n = k) the shifted count is 1 < T = 2: held back (w.p. 1 - e^-100).
    assert sel.threshold == 2
    assert released.tolist() == [False, False, False, False, True]
    assert noisy.tolist() == [-1, -1, -1, 5, 1000]


def test_release_probability_matches_theory():
    """P(release | n) = P(Z >= T - (n - k + 1)) for two-sided geometric Z."""
    sel = PartitionSelection(k=5, epsilon=1.0, delta=1e-2, max_cells=1)
    alpha = math.exp(-1.0)

    def p_release(n: int) -> float:
        m = sel.threshold - (n - sel.k + 1)  # need Z >= m
        if m <= 0:
            return 1 - alpha ** (1 - m) / (1 + alpha)
        return alpha**m / (1 + alpha)

    trials = 20_000
    for n in (5, sel.threshold + 3, sel.threshold + 4, sel.threshold + 6):
        released, _, _ = sel.select(np.full(trials, n), streams(trials, f"sel/{n}").__getitem__)
        p = p_release(n)
        got = int(released.sum())
        assert stats.binomtest(got, trials, p).pvalue >= FALSE_FAILURE, (n, got, p)


def test_bad_arguments():
    with pytest.raises(ValueError, match="delta: expected in"):
        PartitionSelection(k=5, epsilon=1.0, delta=0.0, max_cells=1)
