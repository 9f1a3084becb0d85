"""Goodness-of-fit helpers shared by the sampler and mechanism tests."""

from __future__ import annotations

import numpy as np
from scipy import stats


def chi2_against_pmf(samples: np.ndarray, pmf) -> float:
    """Chi-square p-value of integer samples against pmf(z), tails pooled (expected < 5)."""
    values, counts = np.unique(samples, return_counts=True)
    expected = np.array([pmf(int(v)) for v in values]) * samples.size
    keep = expected >= 5
    obs = np.r_[counts[keep], counts[~keep].sum()]
    exp = np.r_[expected[keep], samples.size - expected[keep].sum()]
    return stats.chisquare(obs, exp).pvalue
