"""Contribution bounding per account and window, and the sensitivities it buys.

Events arrive in batches (columnar numpy arrays). For one window:

1. ``ContributionTable.add``: each event is quantized (values clamped to the
   metric's range, in integer units) and kept only if its (account, cell) pair
   has fewer than Linf kept events so far (first Linf in arrival order: a
   function of the account's own events only).
   # (account, cell) -> row: n_events, value sums, true counts, bucket counts
2. ``ContributionTable.bounded_rows``: at window close, each account keeps a
   uniformly random subset of at most L0 of its cells; the others are dropped.
   # (account, cell) rows, <= L0 per account

What that guarantees for one account (the privacy unit), which the noise is
calibrated to (``sensitivities``), with Δq = upper_q - lower_q:
- it touches at most L0 cells;
- per cell: events <= Linf, distinct accounts <= 1, true count <= Linf,
  |2·sum_q - (lower_q+upper_q)·events| <= Linf·Δq, histogram mass <= Linf;
- so across cells, L1 sensitivities are L0 times those, L2 sqrt(L0) times.
State is one row per (account, cell) pair that has contributed, never events.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from privmon.privacy import _table
from privmon.privacy.params import StreamPolicy


@dataclass(frozen=True)
class Sensitivity:
    """Per-cell and cross-cell sensitivities of one noisy quantity."""

    per_cell: int  # max change of this quantity in one cell when one account is removed
    l1: int  # summed over the account's <= L0 cells
    l2: float  # Euclidean over cells (and over buckets, for histograms)
    l2_squared: int  # l2², exactly: what the discrete Gaussian is calibrated to


def sensitivities(policy: StreamPolicy) -> dict[str, Sensitivity]:
    """Sensitivity of every noisy quantity of a stream, implied by its bounds.

    Keys: "accounts" (distinct accounts, for partition selection), "events",
    and each metric name (value metrics: the doubled centred sum).
    """
    l0 = policy.bounds.max_cells
    linf = policy.bounds.max_events_per_cell

    def s(per_cell: int) -> Sensitivity:
        return Sensitivity(per_cell, l0 * per_cell, math.sqrt(l0) * per_cell, l0 * per_cell**2)

    out = {"accounts": s(1), "events": s(linf)}
    for m in policy.metrics:
        out[m.name] = s(m.per_cell_sensitivity(linf))
    return out


@dataclass(frozen=True)
class BoundedRows:
    """Per (account, cell) contributions after bounding (the input of accumulators)."""

    account: np.ndarray  # int64[n]
    cell: np.ndarray  # int64[n]
    events: np.ndarray  # int64[n], each <= Linf
    columns: Mapping[str, np.ndarray]  # metric -> int64[n] or int64[n, buckets]


class ContributionTable:
    """One window's per-(account, cell) contributions, bounded as they arrive.

    ``account`` and ``cell`` are dense non-negative integer ids chosen by the
    caller (pseudonyms and cell keys mapped to ints); raw ids never enter. Rows
    are numbered in order of their pair's first event. The per-event work is
    privacy/_table.c (one pass, one hash probe an event); this class owns its
    arrays and grows them before each batch.
    """

    def __init__(self, policy: StreamPolicy, *, capacity: int = 1024) -> None:
        self.policy = policy
        self._linf = policy.bounds.max_events_per_cell
        self._n = 0
        self._cap = capacity
        # (account, cell) -> row: open addressing over row ids, at most half full
        self._slots = np.full(_slot_count(capacity), -1, np.int32)
        # Stored in the smallest integer type their bounds allow (per row: events and
        # counts <= Linf, |centred sum| <= Linf * (upper_q - lower_q)); a row of the
        # monitoring stream is ~40 bytes instead of ~150. Outputs are int64.
        self._account = np.zeros(capacity, np.int32)  # dense ids < 2^31
        self._cell = np.zeros(capacity, np.uint32)
        count_type = np.min_scalar_type(self._linf)
        self._events = np.zeros(capacity, count_type)
        self._cols = {m.name: np.zeros((capacity, *m.buckets), m.column_dtype(self._linf))
                      for m in policy.metrics}
        self.dropped_by_linf = 0

    def __len__(self) -> int:
        return self._n

    def _grow(self, need: int) -> None:
        """Room for ``need`` rows, and slots to index them at most half full."""
        if need > self._cap:
            cap = max(need, 2 * self._cap)

            def grow(a: np.ndarray) -> np.ndarray:
                out = np.zeros((cap, *a.shape[1:]), a.dtype)
                out[: self._n] = a[: self._n]
                return out

            self._account, self._cell, self._events = (
                grow(self._account), grow(self._cell), grow(self._events)
            )
            self._cols = {k: grow(v) for k, v in self._cols.items()}
            self._cap = cap
        if 2 * need > self._slots.size:
            self._slots = np.full(_slot_count(need), -1, np.int32)
            _table.rehash(self._slots, self._account, self._cell, self._n)

    def add(self, account: np.ndarray, cell: np.ndarray, fields: Mapping[str, np.ndarray]) -> int:
        """Add a batch of events; returns how many were kept (the rest exceeded Linf).

        ``fields`` maps each metric's field name to a per-event array.
        """
        account = np.ascontiguousarray(account, np.int64)
        cell = np.ascontiguousarray(cell, np.int64)
        n = account.size
        if cell.size != n:
            raise ValueError(f"cell: expected {n} entries like account, got {cell.size}")
        if n == 0:
            return 0
        self._grow(self._n + n)
        metrics = []
        for m in self.policy.metrics:
            if m.field not in fields:
                raise ValueError(
                    f"fields: metric {m.name!r} needs field {m.field!r}; got {sorted(fields)}"
                )
            contribution = np.ascontiguousarray(m.quantize(fields[m.field]), np.int64)
            metrics.append((self._cols[m.name], contribution, m.buckets[0] if m.buckets else 0))
        # (raises, before writing anything, on ids out of range: account ids in
        # [0, 2^31), cell ids in [0, 2^32))
        self._n, kept = _table.add(self._slots, self._account, self._cell, self._events,
                                   self._n, self._linf, account, cell, tuple(metrics))
        self.dropped_by_linf += n - kept
        return kept

    def bounded_rows(self, rng: np.random.Generator) -> BoundedRows:
        """Apply L0: each account keeps a uniformly random subset of <= L0 cells."""
        n = self._n
        account = self._account[:n].astype(np.int64)
        priority = rng.random(n)
        order = np.lexsort((priority, account))
        sorted_acc = account[order]
        starts = np.flatnonzero(np.r_[True, sorted_acc[1:] != sorted_acc[:-1]])
        rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        keep = np.sort(order[rank < self.policy.bounds.max_cells])
        return BoundedRows(
            account=account[keep],
            cell=self._cell[:n][keep].astype(np.int64),
            events=self._events[:n][keep].astype(np.int64),
            columns={k: v[:n][keep].astype(np.int64) for k, v in self._cols.items()},
        )


def _slot_count(rows: int) -> int:
    """Slots for ``rows`` rows at most half full: a power of two >= 2 * rows."""
    return 1 << max(1, (2 * rows - 1).bit_length())
