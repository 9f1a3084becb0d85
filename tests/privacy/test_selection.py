"""Partition selection: exact threshold arithmetic and its release probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from privmon.privacy.selection import PartitionSelection, TruncatedGeometricSelection
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


# --- truncated geometric (optimal) selection ------------------------------------


def _allowed(table: tuple[int, ...], eps: float, delta: float) -> bool:
    """Whether keep probabilities satisfy (eps, delta)-DP between neighbouring counts,
    in both directions and for both outputs (checked in exact rationals)."""
    from fractions import Fraction

    up = Fraction(math.exp(eps)) * (1 + Fraction(1, 1 << 50))  # >= e^eps
    d = Fraction(delta)
    p = [Fraction(n, 1 << 64) for n in table]
    for a, b in zip(p, p[1:], strict=False):
        for x, y in ((a, b), (b, a)):
            if x > up * y + d or (1 - x) > up * (1 - y) + d:
                return False
    return True


def test_truncated_geometric_keep_probabilities_are_exactly_dp_and_optimal_like_pipelinedp():
    sel = TruncatedGeometricSelection(k=50, epsilon=0.2, delta=1e-8, max_cells=1)
    table = sel.keep_numerators
    assert table[0] == 0 and table[-1] == 1 << 64 and list(table) == sorted(table)
    assert _allowed(table, 0.2, 1e-8)
    # negative control: the keep probabilities of twice the epsilon break the check
    loose = TruncatedGeometricSelection(k=50, epsilon=0.4, delta=1e-8, max_cells=1)
    assert not _allowed(loose.keep_numerators, 0.2, 1e-8)
    # PipelineDP's recursion in floats (pipeline_dp/partition_selection.py): same to 1e-9
    pi, eps, delta = 0.0, 0.2, 1e-8
    for m in range(1, len(table)):
        pi = min(math.exp(eps) * pi + delta, 1 + math.exp(-eps) * (pi + delta - 1), 1.0)
        assert table[m] / (1 << 64) == pytest.approx(pi, abs=1e-9)
    assert sel.keep_probability(49) == 0 and sel.keep_probability(50) == pytest.approx(1e-8)
    assert sel.keep_probability(130) < 0.5 <= sel.keep_probability(131)


def test_truncated_geometric_per_cell_budget_with_several_cells():
    sel = TruncatedGeometricSelection(k=10, epsilon=1.0, delta=1e-6, max_cells=4)
    assert _allowed(sel.keep_numerators, 0.25, 0.25e-6)


def test_truncated_geometric_keeps_at_its_probability():
    """Empirical keep rate over keyed streams; 4.42 sd: false-failure rate 1e-5."""
    sel = TruncatedGeometricSelection(k=50, epsilon=0.2, delta=1e-8, max_cells=1)
    n, draws = 133, 4000
    rngs = streams(draws, "tg")
    kept = sel.select(np.full(draws, n), lambda i: rngs[i]).sum()
    p = sel.keep_probability(n)
    assert abs(kept / draws - p) <= 4.42 * math.sqrt(p * (1 - p) / draws)
