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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from privmon.privacy.mechanisms import IntegerNoise
from privmon.privacy.samplers import KeyedStream


@dataclass(frozen=True, kw_only=True)
class PartitionSelection:
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
