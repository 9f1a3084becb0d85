"""Rényi-DP curves of privmon's mechanisms, their composition and conversion to (ε, δ).

  # per-window parts (what one account can change, privacy/window_parts.py)
  #   -> RDP curve at ORDERS (sum of the parts' exact curves)
  #   -> over n windows and all streams: n · curve, summed; δ of the approximate parts added
  #   -> (ε, δ): the tightest order (Canonne, Kamath, Steinke 2020, Prop. 12)

Why RDP, and not a PLD: every curve here is exact or a proven upper bound for the
noise privmon actually draws — the discrete Laplace (closed form below), any pure
ε-DP part (binary randomized response is the worst ε-DP pair, so its curve bounds
them all) and the discrete Gaussian (ρ-zCDP, CKS 2020 Thm. 14: RDP ρ·α). A PLD
accountant would model the discrete Gaussian as a continuous one, which is not an
upper bound at small σ (tests/privacy/test_rdp.py shows where it is not).

A part is what one account can do to one noisy quantity of one window:
- ``laplace(a, s)``: a discrete Laplace P(z) ∝ exp(-a|z|) on a value it shifts by at
  most s (a log-concave location family: a smaller shift is dominated by s);
- ``pure(ε)``: any ε-DP output (a histogram row, a selection decision);
- ``zcdp(ρ)``: ρ-zCDP (discrete Gaussian noise, all its coordinates together).
A window's approximate-DP parts (partition selection) add their δ on top.

Checked against Google's dp-accounting (tests/privacy/test_rdp.py): Laplace as
a → 0, randomized response, zCDP, the conversion. Not imported here: it takes
~1.2 s to import (scipy), and every privmon command loads the accountant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# dp-accounting's DEFAULT_RDP_ORDERS: fine below 11, integers to 63, then powers of two.
ORDERS = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64))
                  + [128, 256, 512, 1024], dtype=float)


@dataclass(frozen=True, kw_only=True)
class Part:
    """One mechanism of a window, ``times`` times (e.g. once per cell of an account).

    kind "laplace": noise parameter ``a`` (1/scale), shift at most ``shift``;
    kind "pure": ``epsilon``-DP; kind "zcdp": ``rho``-zCDP.
    """

    kind: str
    times: int = 1
    a: float = 0.0
    shift: int = 0
    epsilon: float = 0.0
    rho: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("laplace", "pure", "zcdp"):
            raise ValueError(f"Part.kind: expected laplace, pure or zcdp, got {self.kind!r}")
        if self.times < 1:
            raise ValueError(f"Part.times: expected >= 1, got {self.times}")

    def curve(self) -> np.ndarray:
        """RDP ε(α) at ORDERS of all ``times`` copies together."""
        return self.times * _one_curve(self.kind, self.a, self.shift, self.epsilon, self.rho)

    def to_json(self) -> list:
        """Compact, exact: what a ledger entry keeps of the mechanism."""
        if self.kind == "laplace":
            return ["laplace", self.times, self.a, self.shift]
        return [self.kind, self.times, self.epsilon if self.kind == "pure" else self.rho]

    @classmethod
    def from_json(cls, raw: list) -> Part:
        kind, times = raw[0], int(raw[1])
        if kind == "laplace":
            return cls(kind=kind, times=times, a=float(raw[2]), shift=int(raw[3]))
        if kind == "pure":
            return cls(kind=kind, times=times, epsilon=float(raw[2]))
        return cls(kind=kind, times=times, rho=float(raw[2]))


@lru_cache(maxsize=1024)
def _one_curve(kind: str, a: float, shift: int, epsilon: float, rho: float) -> np.ndarray:
    if kind == "laplace":
        out = np.array([discrete_laplace_rdp(a, shift, alpha) for alpha in ORDERS])
    elif kind == "pure":
        out = np.array([pure_rdp(epsilon, alpha) for alpha in ORDERS])
    else:
        out = rho * ORDERS
    out.setflags(write=False)
    return out


def _logsumexp(xs: Iterable[float]) -> float:
    xs = list(xs)
    m = max(xs)
    return m + math.log(math.fsum(math.exp(x - m) for x in xs))


def discrete_laplace_rdp(a: float, shift: int, alpha: float) -> float:
    """D_α(P || Q) for P(z) ∝ exp(-a|z|) on Z and Q = P shifted by ``shift`` (exact).

    Σ_z P(z)^α Q(z)^(1-α) in closed form: with c = (1-q)/(1+q), q = e^-a, the
    terms z <= 0, z >= s and 0 < z < s are three geometric series."""
    if a <= 0 or shift < 0 or alpha <= 1:
        raise ValueError(f"discrete_laplace_rdp: expected a > 0, shift >= 0, alpha > 1; "
                         f"got {a}, {shift}, {alpha}")
    if shift == 0:
        return 0.0
    s = shift
    log_c = math.log1p(-math.exp(-a)) - math.log1p(math.exp(-a))
    log_1mq = math.log1p(-math.exp(-a))
    terms = [log_c + a * (alpha - 1) * s - log_1mq,  # z <= 0
             log_c - a * alpha * s - log_1mq]  # z >= s
    if s > 1:  # 0 < z < s: e^{a(α-1)s} Σ_{z=1}^{s-1} e^{-b z}, b = a(2α-1) > 0
        b = a * (2 * alpha - 1)
        log_mid = -b + math.log(-math.expm1(-b * (s - 1))) - math.log(-math.expm1(-b))
        terms.append(log_c + a * (alpha - 1) * s + log_mid)
    return max(0.0, _logsumexp(terms) / (alpha - 1))


def pure_rdp(epsilon: float, alpha: float) -> float:
    """The largest D_α over ε-DP pairs: binary randomized response with e^ε odds
    (every ε-DP pair is a post-processing of it)."""
    if epsilon < 0 or alpha <= 1:
        raise ValueError(f"pure_rdp: expected epsilon >= 0, alpha > 1; got {epsilon}, {alpha}")
    if epsilon == 0:
        return 0.0
    log_sum = _logsumexp([alpha * epsilon, (1 - alpha) * epsilon])
    return max(0.0, (log_sum - math.log1p(math.exp(epsilon))) / (alpha - 1))


def epsilon_for_delta(curve: np.ndarray, delta: float) -> float:
    """The smallest ε with (ε, δ)-DP implied by an RDP curve at ORDERS
    (CKS 2020 Prop. 12, as dp-accounting's ``compute_epsilon``)."""
    if not 0 < delta < 1:
        return math.inf if delta <= 0 and np.any(curve > 0) else 0.0
    best = math.inf
    for alpha, r in zip(ORDERS, curve, strict=True):
        if delta * delta + math.expm1(-r) > 0:  # KL bound already gives δ
            return 0.0
        if alpha > 1.01:
            best = min(best, r + math.log1p(-1 / alpha) - math.log(delta * alpha) / (alpha - 1))
    return float(max(0.0, best))


def curve_of(parts: Iterable[tuple[Part, int]]) -> np.ndarray:
    """Σ n · curve(part): parts composed, each n times (e.g. n windows)."""
    total = np.zeros_like(ORDERS)
    for part, n in parts:
        total = total + n * part.curve()
    return total
