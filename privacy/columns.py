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

import msgspec
import numpy as np

from privmon.privacy.records import MetricValue

_SPECIAL = {math.inf: "Infinity", -math.inf: "-Infinity"}
_ENCODER = msgspec.json.Encoder()


def float_json(values: np.ndarray) -> list[str]:
    """Each float as ``json.dumps`` writes it (repr; NaN, Infinity, -Infinity).

    msgspec's C encoder writes a list of floats ~3x faster than ``repr`` one by one,
    with the same shortest round-trip digits; the two notations differ only where
    repr switches to an exponent (below 1e-4, from 1e16) and for NaN and the
    infinities (msgspec: null), and those values alone take repr's path
    (tests/privacy/test_columns.py compares the two on millions of values)."""
    floats = values.tolist()
    if not floats:
        return []
    texts = _ENCODER.encode(floats).decode()[1:-1].split(",")
    with np.errstate(invalid="ignore"):
        size = np.abs(values)
        plain = ((size >= 1e-4) & (size < 1e16)) | (values == 0)
    for i in np.flatnonzero(~plain).tolist():
        v = floats[i]
        texts[i] = "NaN" if v != v else _SPECIAL.get(v) or repr(v)
    return texts


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
        bits = self.noise_std.view(np.uint64)  # (most stds are one per window; by bits,
        std = (float_json(self.noise_std[:1]) * len(self)  # so 0.0 and -0.0 stay apart)
               if len(self) and (bits == bits[0]).all() else float_json(self.noise_std))
        half_bits = self.half.view(np.uint64)
        if len(self) and (half_bits == half_bits[0]).all():  # one half-width (most columns)
            clipped_tail = f',"ci95_half":{float_json(self.half[:1])[0]}}}'
            tails = list(map(("}", clipped_tail).__getitem__, self.clipped.tolist()))
        else:
            tails = ["}"] * len(self)
            clipped = np.flatnonzero(self.clipped).tolist()
            for i, h in zip(clipped, float_json(self.half[clipped]), strict=True):
                tails[i] = f',"ci95_half":{h}}}'
        head = prefix + '{"value":'
        return [f'{head}{v},"noise_std":{s},"ci95_low":{lo},"ci95_high":{hi}{t}'
                for v, s, lo, hi, t in zip(float_json(self.value), std,
                                           float_json(self.low), float_json(self.high),
                                           tails, strict=True)]
