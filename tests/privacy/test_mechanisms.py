"""Distribution tests of every noise path, each with a stated false-failure rate.

Seeds are fixed so CI is reproducible; the thresholds are chosen so that with a
random seed each assertion would fail with probability <= FALSE_FAILURE.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from privacy.mechanisms import IntegerNoise

FALSE_FAILURE = 1e-4
DRAWS = 40_000


def _chi2_against_pmf(samples: np.ndarray, pmf) -> float:
    """Chi-square p-value of integer samples against pmf(z), tails pooled."""
    values, counts = np.unique(samples, return_counts=True)
    expected = np.array([pmf(int(v)) for v in values]) * samples.size
    keep = expected >= 5
    obs = np.r_[counts[keep], counts[~keep].sum()]
    exp = np.r_[expected[keep], samples.size - expected[keep].sum()]
    return stats.chisquare(obs, exp).pvalue


@pytest.mark.parametrize(("epsilon", "sensitivity"), [(1.0, 1), (0.5, 3), (0.1, 2)])
def test_geometric_matches_its_pmf_and_stated_spread(epsilon, sensitivity):
    noise = IntegerNoise.geometric(
        epsilon=epsilon, sensitivity=sensitivity, random_state=np.random.RandomState(7)
    )
    z = noise.add(np.zeros(DRAWS, np.int64))
    alpha = math.exp(-epsilon / sensitivity)
    assert noise.param == pytest.approx(alpha)

    def pmf(v: int) -> float:
        return (1 - alpha) / (1 + alpha) * alpha ** abs(v)

    assert _chi2_against_pmf(z, pmf) >= FALSE_FAILURE
    # Stated std vs sample std: relative SE of a std from n draws of this
    # (finite-kurtosis) law is < 1.6/sqrt(n); 5 SE bounds the false failures.
    assert abs(z.std() / noise.spread.std - 1) < 5 * 1.6 / math.sqrt(DRAWS)
    # The stated 95% half-width is exact: P(|Z| <= m) >= 0.95 > P(|Z| <= m - 1).
    m = noise.spread.ci95_half_width
    inside = sum(pmf(v) for v in range(-int(m), int(m) + 1))
    assert inside >= 0.95 > inside - pmf(int(m)) - pmf(-int(m))


@pytest.mark.parametrize(("rho", "l2"), [(0.5, 1.0), (0.125, 3.0), (2.0, math.sqrt(2))])
def test_discrete_gaussian_matches_its_pmf_and_stated_spread(rho, l2):
    noise = IntegerNoise.discrete_gaussian(
        rho=rho, l2_sensitivity=l2, random_state=np.random.RandomState(11)
    )
    sigma = l2 / math.sqrt(2 * rho)
    assert noise.param == pytest.approx(sigma)
    z = noise.add(np.zeros(DRAWS // 2, np.int64))
    span = np.arange(-int(20 * sigma) - 5, int(20 * sigma) + 6)
    norm = np.exp(-(span**2) / (2 * sigma**2)).sum()

    def pmf(v: int) -> float:
        return math.exp(-(v**2) / (2 * sigma**2)) / norm

    assert _chi2_against_pmf(z, pmf) >= FALSE_FAILURE
    assert abs(z.std() / noise.spread.std - 1) < 5 * 1.0 / math.sqrt(z.size)
    coverage = np.mean(np.abs(z) <= noise.spread.ci95_half_width)
    assert coverage >= 0.95 - 4 * math.sqrt(0.05 * 0.95 / z.size)


def test_secure_randomness_is_the_default():
    import secrets

    noise = IntegerNoise.geometric(epsilon=1.0, sensitivity=1)
    assert isinstance(noise._mechanism._rng, secrets.SystemRandom)


def test_bad_arguments():
    with pytest.raises(ValueError, match="sensitivity: expected an integer >= 1, got 0"):
        IntegerNoise.geometric(epsilon=1.0, sensitivity=0)
    with pytest.raises(ValueError, match="rho: expected > 0"):
        IntegerNoise.discrete_gaussian(rho=0.0, l2_sensitivity=1.0)
