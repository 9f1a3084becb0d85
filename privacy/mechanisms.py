"""Integer-valued noise from vetted samplers (diffprivlib), with known spread.

Only two samplers are used, both from diffprivlib and both integer-valued
(floating-point noise is attackable):

- ``Geometric`` (two-sided geometric = discrete Laplace), P(z) ∝ α^|z| with
  α = exp(-ε/Δ1): pure ε-DP for L1 sensitivity Δ1.
- ``GaussianDiscrete``'s sampler (Canonne, Kamath, Steinke 2020), here with
  σ = Δ2 / sqrt(2ρ), which is ρ-zCDP for L2 sensitivity Δ2.

Randomness is diffprivlib's secure default (``secrets.SystemRandom``) unless a
``random_state`` is passed, which only tests do. Noise draws are returned added
to their value and never kept: only the spread (std, 95% half-width) is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from diffprivlib.mechanisms import GaussianDiscrete, Geometric

CONFIDENCE = 0.95


class _ZCDPGaussianDiscrete(GaussianDiscrete):
    """diffprivlib's discrete Gaussian sampler with σ set directly (zCDP calibration).

    diffprivlib calibrates σ from (ε, δ); zCDP needs σ = Δ2/sqrt(2ρ) instead.
    Only ``_find_scale`` changes; the sampler in ``randomise`` is diffprivlib's.
    The nominal epsilon/delta/sensitivity passed to the base class are unused
    by ``randomise`` and only satisfy its argument checks.
    """

    def __init__(self, *, sigma: float, random_state: Any = None) -> None:
        self._sigma = float(sigma)
        super().__init__(epsilon=1.0, delta=0.5, sensitivity=1, random_state=random_state)

    def _find_scale(self) -> float:
        return self._sigma


@dataclass(frozen=True)
class NoiseSpread:
    """What is published about a noise distribution: its std and 95% half-width."""

    std: float
    ci95_half_width: float


class IntegerNoise:
    """Adds integer noise to integer values; knows the noise's std and 95% interval."""

    def __init__(
        self, mechanism: Any, spread: NoiseSpread, *, kind: str, param: float, description: str
    ) -> None:
        self._mechanism = mechanism
        self.spread = spread
        self.kind = kind  # "geometric" (param = alpha) or "discrete_gaussian" (param = sigma)
        self.param = param
        self.description = description

    @classmethod
    def geometric(
        cls, *, epsilon: float, sensitivity: int, random_state: Any = None
    ) -> IntegerNoise:
        """Pure ε-DP noise for a query of integer L1 sensitivity ``sensitivity``."""
        if not isinstance(sensitivity, int) or sensitivity < 1:
            raise ValueError(f"sensitivity: expected an integer >= 1, got {sensitivity!r}")
        if not epsilon > 0:
            raise ValueError(f"epsilon: expected > 0, got {epsilon!r}")
        alpha = math.exp(-epsilon / sensitivity)
        std = math.sqrt(2 * alpha) / (1 - alpha)
        # P(|Z| > m) = 2 α^(m+1) / (1 + α); smallest m with that <= 5%.
        m = max(0, math.ceil(math.log((1 - CONFIDENCE) * (1 + alpha) / 2) / math.log(alpha) - 1))
        mech = Geometric(epsilon=epsilon, sensitivity=sensitivity, random_state=random_state)
        return cls(
            mech, NoiseSpread(std, float(m)), kind="geometric", param=alpha,
            description=f"geometric(eps={epsilon:g}, L1={sensitivity})",
        )

    @classmethod
    def discrete_gaussian(
        cls, *, rho: float, l2_sensitivity: float, random_state: Any = None
    ) -> IntegerNoise:
        """ρ-zCDP noise for a query of L2 sensitivity ``l2_sensitivity``."""
        if not rho > 0:
            raise ValueError(f"rho: expected > 0, got {rho!r}")
        if not l2_sensitivity > 0:
            raise ValueError(f"l2_sensitivity: expected > 0, got {l2_sensitivity!r}")
        sigma = l2_sensitivity / math.sqrt(2 * rho)
        std, half = _discrete_gaussian_spread(sigma)
        mech = _ZCDPGaussianDiscrete(sigma=sigma, random_state=random_state)
        return cls(
            mech, NoiseSpread(std, half), kind="discrete_gaussian", param=sigma,
            description=f"discrete_gaussian(rho={rho:g}, L2={l2_sensitivity:g})",
        )

    def add(self, values: np.ndarray) -> np.ndarray:
        """values + independent noise, element-wise (int64 in, int64 out)."""
        flat = np.asarray(values, dtype=np.int64).ravel()
        randomise = self._mechanism.randomise
        noisy = np.fromiter((randomise(int(v)) for v in flat), dtype=np.int64, count=flat.size)
        return noisy.reshape(np.shape(values))


def _discrete_gaussian_spread(sigma: float) -> tuple[float, float]:
    """Exact std and 95% half-width of the discrete Gaussian N_Z(0, σ²)."""
    span = int(math.ceil(12 * sigma)) + 2
    z = np.arange(-span, span + 1, dtype=np.float64)
    pmf = np.exp(-(z**2) / (2 * sigma**2))
    pmf /= pmf.sum()
    std = float(math.sqrt((pmf * z**2).sum()))
    inside = np.cumsum(pmf[span:] * np.where(z[span:] == 0, 1, 2))  # P(|Z| <= m)
    half = float(np.searchsorted(inside, CONFIDENCE - 1e-12))
    return std, half
