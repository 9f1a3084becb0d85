"""Released values by column: one metric of every released cell of a window.

  # noisy column (int64[n]) -> a kind's derived values (float64[n]) -> MetricColumn
  #   -> MetricValue per cell (readers, tests) | JSON per cell (the release records)

A window of 10k public cells releases ~60k values; making each a MetricValue and
encoding it with ``json`` cost most of a release's time. ``MetricColumn`` holds
them as arrays, clips intervals for all cells at once, and writes each cell's
JSON from the arrays: the very bytes ``json.dumps(MetricValue.to_dict())`` gives
(``tests/privacy/test_columns.py`` checks both against ``MetricValue``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from privmon.privacy.records import MetricValue
from privmon.privacy.rowjson import RowWriter, float_json


def _column(x: float | np.ndarray, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(x, np.float64), (n,))


@dataclass(frozen=True, eq=False)
class MetricColumn:
    """n released values with their noise std and 95% interval, as MetricValue holds
    one: ``half[i]`` is the unclipped half-width where ``clipped[i]`` (else unset)."""

    value: np.ndarray  # float64[n]
    noise_std: np.ndarray  # float64[n]
    low: np.ndarray
    high: np.ndarray
    half: np.ndarray
    clipped: np.ndarray  # bool[n]

    @classmethod
    def around(cls, values: np.ndarray | Sequence[float], std: float | np.ndarray,
               half: float | np.ndarray, lo: float = -math.inf,
               hi: float = math.inf) -> MetricColumn:
        """``MetricValue.around`` for every value at once (the same floats)."""
        v = np.asarray(values).astype(np.float64)
        n = v.shape[0]
        h = _column(half, n)
        with np.errstate(over="ignore", invalid="ignore"):  # to inf, as Python's floats
            raw_low, raw_high = v - h, v + h
            # Python's max(lo, x) is x only where x > lo (NaN: lo), min(hi, x) likewise
            low = np.where(raw_low > lo, raw_low, lo)
            high = np.where(raw_high < hi, raw_high, hi)
            clipped = (low != raw_low) | (high != raw_high)
        return cls(value=v, noise_std=_column(std, n), low=low, high=high, half=h,
                   clipped=clipped)

    @classmethod
    def of(cls, values: np.ndarray, std: np.ndarray, low: np.ndarray,
           high: np.ndarray) -> MetricColumn:
        """Values with intervals of their own (never clipped: no ``ci95_half``)."""
        v = np.asarray(values, np.float64)
        n = v.shape[0]
        return cls(value=v, noise_std=_column(std, n), low=_column(low, n),
                   high=_column(high, n), half=np.zeros(n), clipped=np.zeros(n, bool))

    def __len__(self) -> int:
        return int(self.value.shape[0])

    def at(self, i: int) -> MetricValue:
        return MetricValue(value=float(self.value[i]), noise_std=float(self.noise_std[i]),
                           ci95_low=float(self.low[i]), ci95_high=float(self.high[i]),
                           ci95_half=float(self.half[i]) if self.clipped[i] else None)

    def values(self) -> list[MetricValue]:
        return [self.at(i) for i in range(len(self))]

    def take(self, rows: np.ndarray) -> MetricColumn:
        return MetricColumn(value=self.value[rows], noise_std=self.noise_std[rows],
                            low=self.low[rows], high=self.high[rows], half=self.half[rows],
                            clipped=self.clipped[rows])

    def json_parts(self, prefix: str = "") -> list[str]:
        """Each value's compact JSON, as ``json.dumps(at(i).to_dict())`` writes it,
        after ``prefix`` (a record's ``"name":``)."""
        out = RowWriter(len(self))
        self.write(out, prefix)
        return [row.decode() for row in out.rows()]

    def write(self, out: RowWriter, prefix: str = "") -> None:
        """Each value's JSON (``json_parts``) into its row of ``out``."""
        n = len(self)
        out.text(prefix + '{"value":')
        out.floats(self.value)
        out.text(',"noise_std":')
        bits = self.noise_std.view(np.uint64)  # (most stds are one per window; by bits,
        if n and (bits == bits[0]).all():  # so 0.0 and -0.0 stay apart)
            out.text(float_json(self.noise_std[:1])[0])
        else:
            out.floats(self.noise_std)
        out.text(',"ci95_low":')
        out.floats(self.low)
        out.text(',"ci95_high":')
        out.floats(self.high)
        clipped = np.flatnonzero(self.clipped)
        if clipped.size == 0:
            out.text("}")
            return
        half_bits = self.half[clipped].view(np.uint64)
        one = (half_bits == half_bits[0]).all()  # one half-width where clipped (most columns)
        halves = [f',"ci95_half":{h}}}'.encode()
                  for h in float_json(self.half[clipped[:1] if one else clipped])]
        if one and clipped.size == n:
            out.text(halves[0])
            return
        if one:
            tails = list(map((b"}", halves[0]).__getitem__, self.clipped.tolist()))
        else:
            tails = [b"}"] * n
            for i, tail in zip(clipped.tolist(), halves, strict=True):
                tails[i] = tail
        out.each(tails)
