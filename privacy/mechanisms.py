"""Integer-valued noise from exact samplers over keyed streams, with known spread.

Two distributions, both integer-valued (floating-point noise is attackable) and
both sampled exactly by ``privacy/samplers.py`` (no floating point, a cost that
does not depend on the value drawn, nor grows with the scale), in bulk by
``privacy/batch_samplers.py`` (the same draws, in numpy):

- discrete Laplace (two-sided geometric), P(z) ∝ α^|z| with α = exp(-ε/Δ1),
  scale Δ1/ε: pure ε-DP for L1 sensitivity Δ1;
- discrete Gaussian N_Z(0, σ²) with σ² = Δ2² / (2ρ): ρ-zCDP for L2
  sensitivity Δ2 (Canonne, Kamath, Steinke 2020).

The parameters are exact rationals: the scale Δ1/ε and σ² = Δ2²/(2ρ), from the
configured floats at their exact binary value, rounded UP to ~40 significant
bits (more noise, never less; relative change < 2^-39).
Randomness comes from the caller's ``KeyedStream`` per noisy row, so the same
(noise key, context) always gives the same draws (``privacy/noise_keys.py``).
The spread (std, 95% half-width) is public: a function of the parameters
only, in closed form or by a sum over a bounded range, never sized by σ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from privmon.privacy import batch_samplers, samplers
from privmon.privacy.samplers import KeyedStream

CONFIDENCE = 0.95
Z95 = 1.959963984540054
# Above this σ the discrete Gaussian's std equals σ and its 95% half-width is the
# continuous one to far below float precision (Poisson summation: the relative
# error is ~8π²σ²·exp(-2π²σ²), under 1e-300 here); below it a bounded sum is exact.
_CLOSED_FORM_SIGMA = 30.0


@dataclass(frozen=True)
class NoiseSpread:
    """What is published about a noise distribution: its std and 95% half-width."""

    std: float
    ci95_half_width: float


class IntegerNoise:
    """Adds exact integer noise to integer values; knows the noise's std and 95% interval.

    ``kind`` is "geometric" (``param`` = α) or "discrete_gaussian" (``param`` = σ).
    """

    def __init__(self, *, kind: str, num: int, den: int, spread: NoiseSpread, param: float,
                 description: str) -> None:
        self.kind = kind
        self._num, self._den = num, den  # scale (geometric) or σ² (Gaussian), exactly
        if kind == "geometric":
            self._laplace = samplers.laplace_table(num, den)
        else:
            self._gaussian = samplers.gaussian_table(num, den)
        self.spread = spread
        self.param = param
        self.description = description

    @classmethod
    def geometric(cls, *, epsilon: float, sensitivity: int) -> IntegerNoise:
        """Pure ε-DP noise for a query of integer L1 sensitivity ``sensitivity``."""
        if isinstance(sensitivity, bool) or not isinstance(sensitivity, int) or sensitivity < 1:
            raise ValueError(f"sensitivity: expected an integer >= 1, got {sensitivity!r}")
        if not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"epsilon: expected a finite number > 0, got {epsilon!r}")
        scale = _round_up(sensitivity / Fraction(epsilon))
        alpha = math.exp(-1 / scale)
        std = math.sqrt(2 * alpha) / (1 - alpha)
        # P(|Z| > m) = 2 α^(m+1) / (1 + α); smallest m with that <= 5%.
        m = max(0, math.ceil(math.log((1 - CONFIDENCE) * (1 + alpha) / 2) / math.log(alpha) - 1))
        return cls(kind="geometric", num=scale.numerator, den=scale.denominator,
                   spread=NoiseSpread(std, float(m)), param=alpha,
                   description=f"geometric(eps={epsilon:g}, L1={sensitivity})")

    @classmethod
    def discrete_gaussian(cls, *, rho: float, l2_sensitivity_squared: int) -> IntegerNoise:
        """ρ-zCDP noise for a query whose squared L2 sensitivity is the integer given."""
        if not (isinstance(rho, int | float) and math.isfinite(rho) and rho > 0):
            raise ValueError(f"rho: expected a finite number > 0, got {rho!r}")
        if (isinstance(l2_sensitivity_squared, bool) or not isinstance(l2_sensitivity_squared, int)
                or l2_sensitivity_squared < 1):
            raise ValueError("l2_sensitivity_squared: expected an integer >= 1, got "
                             f"{l2_sensitivity_squared!r}")
        sigma2 = _round_up(l2_sensitivity_squared / (2 * Fraction(rho)))
        sigma = math.sqrt(sigma2)
        std, half = discrete_gaussian_spread(sigma)
        return cls(kind="discrete_gaussian", num=sigma2.numerator, den=sigma2.denominator,
                   spread=NoiseSpread(std, half), param=sigma,
                   description=f"discrete_gaussian(rho={rho:g}, "
                               f"L2={math.sqrt(l2_sensitivity_squared):g})")

    def draw(self, rng: KeyedStream) -> int:
        """One exact draw from ``rng`` (the scalar definition ``add`` computes in bulk)."""
        if self.kind == "geometric":
            return samplers.discrete_laplace(self._laplace, rng)
        return samplers.discrete_gaussian(self._gaussian, rng)

    def add(self, values: np.ndarray, streams: Sequence[KeyedStream]) -> np.ndarray:
        """values + noise, row by row: row i (a scalar or a vector) draws from streams[i].

        A row of several values takes one block of streams[i] for all of them
        (geometric) or one sub-stream per value (Gaussian, whose rounds vary)."""
        vals = np.asarray(values, dtype=np.int64)
        if vals.ndim == 0 or len(streams) != vals.shape[0]:
            raise ValueError(f"add: expected one stream per row, got {len(streams)} streams for "
                             f"values of shape {vals.shape}")
        width = int(np.prod(vals.shape[1:], dtype=np.int64))
        return vals + self.draws(streams, width).reshape(vals.shape)

    def draws(self, streams: Sequence[KeyedStream], width: int = 1) -> np.ndarray:
        """The noise ``add`` adds to rows of ``width`` values, one row per stream
        (int64[len(streams) * width]): a function of the streams alone, never of the
        values, so it can be drawn before the values exist (privacy/noise_keys.py)."""
        if self.kind == "geometric":
            return batch_samplers.discrete_laplace(self._laplace, streams, width)
        per_draw = streams if width == 1 else [s.child(k) for s in streams for k in range(width)]
        return batch_samplers.discrete_gaussian(self._gaussian, per_draw)

    @property
    def identity(self) -> tuple[str, int, int]:
        """What fixes the law of a draw: the kind and its exact parameter."""
        return (self.kind, self._num, self._den)


def _round_up(q: Fraction, bits: int = 40) -> Fraction:
    """q rounded UP to a multiple of 2^-k keeping ~``bits`` significant bits (relative
    change < 2^-39): more noise, never less, and integers small enough that a draw
    stays ~10 µs (exact float values of ε or ρ have 2^50-sized denominators)."""
    k = max(0, bits - int(q).bit_length())
    return Fraction(math.ceil(q * 2**k), 2**k)


def discrete_gaussian_spread(sigma: float) -> tuple[float, float]:
    """Std and 95% half-width of N_Z(0, σ²): closed form above 30, a bounded sum below."""
    if sigma >= _CLOSED_FORM_SIGMA:
        # P(|Z| <= m) = P(|X| <= m + 1/2) for the continuous X to float precision.
        return sigma, float(max(0, math.ceil(Z95 * sigma - 0.5)))
    span = int(math.ceil(40 * sigma)) + 2  # <= 1,202 terms; mass beyond is < exp(-800)
    z = np.arange(-span, span + 1, dtype=np.float64)
    pmf = np.exp(-(z**2) / (2 * sigma**2))
    pmf /= pmf.sum()
    std = float(math.sqrt((pmf * z**2).sum()))
    inside = np.cumsum(pmf[span:] * np.where(z[span:] == 0, 1, 2))  # P(|Z| <= m)
    half = float(np.searchsorted(inside, CONFIDENCE - 1e-12))
    return std, half
