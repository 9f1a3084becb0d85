"""Which cells may appear: a hard k pre-threshold plus DP partition selection.

A cell is released only if (1) it has at least k distinct accounts (exact, a
hard floor) and (2) its shifted account count plus geometric noise reaches a
threshold T chosen so that a cell at the floor is released with probability
at most δ/L0. Whether a cell appears is therefore itself (ε, δ)-DP:

- each account touches <= L0 cells; each cell gets ε' = ε/L0, δ' = δ/L0
  (basic composition over the account's cells);
- noise Z: two-sided geometric, P(z) ∝ α^|z|, α = exp(-ε');
- released iff n >= k and (n - (k - 1)) + Z >= T, with
  T = 1 + ceil(ln(1 / (δ' (1 + α))) / ε'), so P(1 + Z >= T) =
  α^(T-1) / (1 + α) <= δ'. Moving n from k-1 (never released) to k costs
  at most δ'; between counts >= k the ratio is at most e^ε'.
The noisy count n + Z is published as the cell's "accounts" value (the same
output the threshold mechanism already paid for).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Protocol

import numpy as np

from privmon.privacy.mechanisms import IntegerNoise
from privmon.privacy.samplers import KeyedStream


@dataclass(frozen=True)
class Decision:
    """What a selection rule decided for a window's cells (indices into its cells)."""

    shown: np.ndarray  # cells that get a record
    full: np.ndarray  # of those, cells whose record carries every metric
    noisy_accounts: np.ndarray | None  # per cell, where the rule publishes a count
    noise: IntegerNoise | None  # the noise of that count


def geometric_tail(alpha: float, m: int) -> float:
    """P(Z >= m) for the discrete Laplace P(z) ∝ α^|z|."""
    if m > 0:
        return alpha**m / (1 + alpha)
    return 1 - alpha ** (1 - m) / (1 + alpha)


class CellNoise(Protocol):
    """A window's noise by cell position (privacy/noise_keys.py: CellsNoise)."""

    def streams(self, rows: Sequence[int], quantity: str) -> Sequence[KeyedStream]:
        """The keyed streams of one quantity of the cells at ``rows``."""

    def draws(self, noise: IntegerNoise, rows: Sequence[int], quantity: str,
              width: int = 1) -> np.ndarray:
        """``noise.draws`` of those streams (maybe drawn ahead)."""


@dataclass(frozen=True, kw_only=True)
class SelectionParams:
    """k floor, (ε, δ) of selection per window, L0: split evenly over an account's cells."""

    k: int
    epsilon: float
    delta: float
    max_cells: int

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k: expected >= 1, got {self.k}")
        if not self.epsilon > 0:
            raise ValueError(f"epsilon: expected > 0, got {self.epsilon}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta: expected in (0, 1), got {self.delta}")

    @property
    def epsilon_per_cell(self) -> float:
        return self.epsilon / self.max_cells

    @property
    def delta_per_cell(self) -> float:
        return self.delta / self.max_cells


@dataclass(frozen=True, kw_only=True)
class PartitionSelection(SelectionParams):
    """The noisy-threshold rule of the module docstring."""

    name = "noisy_threshold"

    @property
    def threshold(self) -> int:
        """T: the shifted noisy count a cell must reach."""
        eps = self.epsilon_per_cell
        alpha = math.exp(-eps)
        return 1 + math.ceil(math.log(1 / (self.delta_per_cell * (1 + alpha))) / eps)

    @property
    def min_accounts_for_half(self) -> int:
        """Accounts at which a cell is released with probability >= 1/2 (for docs)."""
        return self.k - 1 + self.threshold

    def noise(self) -> IntegerNoise:
        # Sensitivity L0 with epsilon ε is the same distribution as ε' = ε/L0, sensitivity 1.
        return IntegerNoise.geometric(epsilon=self.epsilon, sensitivity=self.max_cells)

    def select(
        self, accounts: np.ndarray, stream_of: Callable[[int], KeyedStream]
    ) -> tuple[np.ndarray, np.ndarray, IntegerNoise]:
        """(released mask, noisy account counts of all cells, the noise used).

        ``stream_of(i)`` is cell i's noise stream. Cells under k draw no noise and are
        never released; their noisy count is reported as -1 and must not be published.
        """
        accounts = np.asarray(accounts, np.int64)
        noise = self.noise()
        eligible = accounts >= self.k
        noisy = np.full(accounts.shape, -1, np.int64)
        idx = np.flatnonzero(eligible)
        noisy[idx] = noise.add(accounts[idx], [stream_of(i) for i in idx.tolist()])
        released = eligible & (noisy - (self.k - 1) >= self.threshold)
        return released, noisy, noise

    def keep_probability(self, accounts: int) -> float:
        if accounts < self.k:
            return 0.0
        return geometric_tail(self.noise().param, self.threshold - (accounts - (self.k - 1)))

    def decide(self, accounts: np.ndarray, cells: CellNoise) -> Decision:
        released, noisy, noise = self.select(
            accounts, lambda i: cells.streams([i], "accounts")[0])
        shown = np.flatnonzero(released)
        return Decision(shown=shown, full=shown, noisy_accounts=noisy, noise=noise)

    @property
    def published_threshold(self) -> int:
        return self.threshold


_ONE = 1 << 64  # keep probabilities are multiples of 2^-64, rounded down


def _exp_lower(x: Fraction) -> Fraction:
    """A rational lower bound of e^x, x >= 0 (Taylor terms are all positive), within
    2^-80 relative of it."""
    term, total, k = Fraction(1), Fraction(1), 1
    while term > total / (1 << 80):
        term = term * x / k
        total += term
        k += 1
    return Fraction(math.floor(total * _ONE), _ONE)


@dataclass(frozen=True, kw_only=True)
class TruncatedGeometricSelection(SelectionParams):
    """Optimal DP partition selection (Desfontaines, Voss, Gipson, Mandayam 2022, as
    PipelineDP's truncated geometric thresholding), behind the same hard k floor.

    A cell of n >= k accounts is kept with probability π(n - (k - 1)), where π(0) = 0
    and π(m) = min(e^ε' π(m-1) + δ', 1 - e^-ε' (1 - π(m-1) - δ'), 1) with ε' = ε/L0,
    δ' = δ/L0: the largest keep probabilities (ε', δ')-DP allows between neighbouring
    counts, so a cell appears at fewer accounts than with a noisy threshold. Exact:
    π is computed in rationals with e^ε' bounded from below and e^-ε' from above
    (each step only tighter than the DP constraints) and rounded down to 2^-64, and
    kept iff 64 random bits of the cell's keyed stream fall below it. It publishes no
    noisy count (that would need budget of its own).
    """

    name = "truncated_geometric"
    published_threshold = 0

    @cached_property
    def keep_numerators(self) -> tuple[int, ...]:
        """2^64 · π(m) for m = 0, 1, ... up to the first m with π(m) = 1."""
        eps = Fraction(self.epsilon) / self.max_cells
        delta = Fraction(self.delta) / self.max_cells
        up = _exp_lower(eps)  # <= e^ε'
        down = 1 / up  # >= e^-ε'
        out, pi = [0], Fraction(0)
        while pi < 1:
            nxt = min(up * pi + delta, 1 - down * (1 - pi - delta), Fraction(1))
            pi = Fraction(math.floor(nxt * _ONE), _ONE)
            out.append(int(pi * _ONE))
            if len(out) > 10_000_000:
                raise ValueError(f"selection: epsilon={self.epsilon}, delta={self.delta} "
                                 "needs more than 1e7 accounts to keep a cell surely")
        return tuple(out)

    def _numerator(self, accounts: int) -> int:
        """2^64 · P(keep) of a cell of ``accounts`` >= k accounts."""
        table = self.keep_numerators
        return table[min(accounts - (self.k - 1), len(table) - 1)]

    def keep_probability(self, accounts: int) -> float:
        return self._numerator(accounts) / _ONE if accounts >= self.k else 0.0

    def select(self, accounts: np.ndarray, stream_of: Callable[[int], KeyedStream]
               ) -> np.ndarray:
        """Released mask; ``stream_of(i)`` is cell i's selection stream (64 bits each)."""
        accounts = np.asarray(accounts, np.int64)
        released = np.zeros(accounts.shape, bool)
        for i in np.flatnonzero(accounts >= self.k).tolist():
            released[i] = stream_of(i).bits(64) < self._numerator(int(accounts[i]))
        return released

    def decide(self, accounts: np.ndarray, cells: CellNoise) -> Decision:
        shown = np.flatnonzero(self.select(accounts,
                                           lambda i: cells.streams([i], "selection")[0]))
        return Decision(shown=shown, full=shown, noisy_accounts=None, noise=None)


@dataclass(frozen=True, kw_only=True)
class PublicCells:
    """No selection: every cell given gets a record; in full where its noisy account
    count (ε over L0 cells) reaches k, else the count alone (post-processing)."""

    k: int
    epsilon: float
    max_cells: int
    name = "public_cells"
    published_threshold = 0

    def noise(self) -> IntegerNoise:
        return IntegerNoise.geometric(epsilon=self.epsilon, sensitivity=self.max_cells)

    def keep_probability(self, accounts: int) -> float:
        """P(a full record): P(accounts + Z >= k)."""
        return geometric_tail(self.noise().param, self.k - accounts)

    def decide(self, accounts: np.ndarray, cells: CellNoise) -> Decision:
        noise = self.noise()
        noisy = (np.asarray(accounts, np.int64)
                 + cells.draws(noise, range(len(accounts)), "accounts"))
        return Decision(shown=np.arange(len(accounts)), full=np.flatnonzero(noisy >= self.k),
                        noisy_accounts=noisy, noise=noise)


SelectionRule = PartitionSelection | TruncatedGeometricSelection | PublicCells
