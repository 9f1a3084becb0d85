"""The samplers of ``privacy/samplers.py`` over many streams at once, draw for draw
the same values.

  # streams (one per draw), a table -> one block per stream (per round)
  #   -> 128-bit comparisons against the table's bounds, all at once in numpy
  #   -> values; a draw with an undecided comparison or a tail is redone by the
  #      scalar code from the very same block, so the result is identical

The scalar code is the definition; this module only computes it faster, and
``tests/privacy/test_samplers.py`` checks that the two agree on every draw. It
keeps the scalar code's cost property: every draw in the batch goes through the
same array operations whatever its value.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from privmon.privacy.samplers import (
    FIRST_BITS,
    GaussianTable,
    KeyedStream,
    LaplaceTable,
    Threshold,
    exp_of_residue,
    gaussian_round,
    laplace_from_block,
    next_blocks,
)

_LIMB = np.uint64
_MASK64 = (1 << 64) - 1


class _Bounds:
    """The lo and hi bounds of some thresholds as (hi limb, lo limb) uint64 arrays."""

    def __init__(self, thresholds: Sequence[Threshold]) -> None:
        if FIRST_BITS != 128 or any(t.hi >> 128 for t in thresholds):
            raise AssertionError("batch samplers compare 128-bit bounds below 2^128")
        self.lo = _limbs([t.lo for t in thresholds])
        self.hi = _limbs([t.hi for t in thresholds])

    def decide(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(u < lo, lo <= u < hi) for u of shape (..., K, 2) limbs: (decision, undecided)."""
        below_lo = _less(u, self.lo)
        below_hi = _less(u, self.hi)
        return below_lo, below_lo != below_hi


def _limbs(values: Sequence[int]) -> np.ndarray:
    return np.array([[v >> 64, v & _MASK64] for v in values], dtype=_LIMB).reshape(-1, 2)


def _less(u: np.ndarray, t: np.ndarray) -> np.ndarray:
    uh, ul, th, tl = u[..., 0], u[..., 1], t[:, 0], t[:, 1]
    return (uh < th) | ((uh == th) & (ul < tl))


def _units(blocks: bytes, n: int, k: int) -> np.ndarray:
    """n blocks of k 128-bit big-endian units -> (n, k, 2) uint64 limbs."""
    return np.frombuffer(blocks, dtype=">u8").reshape(n, k, 2).astype(_LIMB)


class _LaplaceBatch:
    def __init__(self, table: LaplaceTable) -> None:
        self.table = table
        self.bounds = _Bounds([*table.bits, table.tail])
        self.weights = np.left_shift(np.int64(1), np.arange(table.levels, dtype=np.int64))

    def decide(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """u: (n, 2, J + 1, 2) -> (values (n,), redo (n,) bool)."""
        j = self.table.levels
        bits, undecided = self.bounds.decide(u)
        g = (bits[..., :j].astype(np.int64) * self.weights).sum(axis=-1)  # (n, 2)
        redo = undecided.any(axis=(1, 2)) | bits[..., j].any(axis=1)
        return g[:, 0] - g[:, 1], redo


@lru_cache(maxsize=256)  # tables hash by identity, like samplers.laplace_table's cache
def _laplace_batch(table: LaplaceTable) -> _LaplaceBatch:
    return _LaplaceBatch(table)


def discrete_laplace(table: LaplaceTable, streams: Sequence[KeyedStream],
                     per_stream: int = 1) -> np.ndarray:
    """``per_stream`` draws per stream, equal to ``samplers.laplace_row(table, s,
    per_stream)`` for each s, as an array of shape (len(streams) * per_stream,)."""
    n, size = len(streams) * per_stream, table.block_bytes
    if n == 0:
        return np.zeros(0, np.int64)
    raw = next_blocks(streams, size * per_stream)
    units = _units(raw, n, 2 * (table.levels + 1)).reshape(n, 2, table.levels + 1, 2)
    values, redo = _laplace_batch(table).decide(units)
    for i in np.flatnonzero(redo).tolist():  # probability < 2^-80 per draw, in row order
        values[i] = laplace_from_block(table, raw[i * size:(i + 1) * size],
                                       streams[i // per_stream])
    return values


def discrete_gaussian(table: GaussianTable, streams: Sequence[KeyedStream]) -> np.ndarray:
    """One draw per stream, equal to ``samplers.discrete_gaussian(table, s)`` for each s."""
    if table.FRACTION_BITS < 64:
        raise AssertionError("the residue shortcut below needs FRACTION_BITS >= 64")
    out = np.zeros(len(streams), np.int64)
    pending = list(range(len(streams)))
    lap, exp_bounds = _laplace_batch(table.laplace), _exp_bounds(table)
    size, lap_units = table.block_bytes, 2 * (table.laplace.levels + 1)
    residue_den = table.gamma_den << table.FRACTION_BITS
    while pending:  # one round for every draw not yet accepted
        raw = (next_blocks(streams, size) if len(pending) == len(streams)
               else b"".join([streams[i].block(size) for i in pending]))
        units = _units(raw, len(pending), size // 16)
        y, redo = lap.decide(units[:, :lap_units].reshape(-1, 2, table.laplace.levels + 1, 2))
        exp_bits, undecided = exp_bounds.decide(units[:, lap_units:-1])
        redo |= undecided.any(axis=1)
        factors = np.packbits(exp_bits, axis=1, bitorder="little")  # bit e: exp(-2^(e-B)) drawn
        # The residue's first trial passes with probability < 2^-80 < 2^-64: whenever the
        # unit's top 64 bits are not all 0 it fails, i.e. the residue factor is 1.
        residue_certain = units[:, -1, 0] > 0
        still = []
        for k, (i, yk) in enumerate(zip(pending, y.tolist(), strict=True)):
            block = raw[k * size:(k + 1) * size]
            q, r = table.gamma(yk)  # exact integers, ~2·log2(σ) + 80 bits
            if redo[k] or q >> table.exp_levels:  # probability < 2^-80: the scalar round
                accepted, yk = gaussian_round(table, block, streams[i])
            else:
                drawn = int.from_bytes(factors[k].tobytes(), "little")
                accepted = (q & ~drawn) == 0  # every factor q needs was drawn as 1
                if not residue_certain[k]:  # the scalar decision (probability 2^-64)
                    u = int.from_bytes(block[table.residue_at:table.residue_at + 16], "big")
                    accepted &= exp_of_residue(u, r, residue_den, streams[i]) == 1
            if accepted:
                out[i] = yk
            else:
                still.append(i)
        pending = still
    return out


@lru_cache(maxsize=256)
def _exp_bounds(table: GaussianTable) -> _Bounds:
    return _Bounds(table.exp_bits)
