"""Pure per-cell accumulators: initialize / add / merge / result.

Every privmon aggregate is a sum over bounded (account, cell) rows, so each
accumulator's state is an int64 column (or matrix) indexed by cell, ``add``
is a vectorized ``bincount`` and ``merge`` is addition. No function mutates
its inputs. ``result`` gives the *true* aggregate: it is what noise is added
to in privacy/release.py and what tests compare against; it is never
published as is.

  # rows (account, cell) -> CellTotals: cell -> accounts, events, per metric
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from privmon.privacy.bounding import BoundedRows
from privmon.privacy.params import StreamPolicy


@dataclass(frozen=True)
class CellTotals:
    """True per-cell totals for one (stream, window); cells sorted and unique."""

    cells: np.ndarray  # int64[n] cell ids
    accounts: np.ndarray  # int64[n] distinct accounts (rows are unique (account, cell))
    events: np.ndarray  # int64[n]
    columns: Mapping[str, np.ndarray]  # metric -> int64[n] or int64[n, buckets]

    def __len__(self) -> int:
        return int(self.cells.size)


def initialize(policy: StreamPolicy) -> CellTotals:
    """Empty totals with one column per metric of the policy."""
    cols = {m.name: np.zeros((0, *m.buckets), np.int64) for m in policy.metrics}
    empty = np.zeros(0, np.int64)
    return CellTotals(empty, empty, empty, MappingProxyType(cols))


def add(totals: CellTotals, rows: BoundedRows) -> CellTotals:
    """totals plus the bounded rows, as a new CellTotals."""
    cells, inverse = np.unique(rows.cell, return_inverse=True)
    n = cells.size

    def column_sum(values: np.ndarray) -> np.ndarray:
        if values.ndim == 2:
            out = np.zeros((n, values.shape[1]), np.int64)
            np.add.at(out, inverse, values)
            return out
        return np.bincount(inverse, weights=values, minlength=n).round().astype(np.int64)

    batch = CellTotals(
        cells=cells,
        accounts=np.bincount(inverse, minlength=n).astype(np.int64),
        events=column_sum(rows.events),
        columns=MappingProxyType({k: column_sum(v) for k, v in rows.columns.items()}),
    )
    return merge(totals, batch)


def merge(a: CellTotals, b: CellTotals) -> CellTotals:
    """Cell-wise sum of two totals (e.g. partials of two stage-1 partitions).

    Exact for distinct accounts because an account lives in one partition.
    """
    if set(a.columns) != set(b.columns):
        raise ValueError(
            f"merge: metric columns differ: {sorted(a.columns)} vs {sorted(b.columns)}"
        )
    cells = np.union1d(a.cells, b.cells)
    ia = np.searchsorted(cells, a.cells)
    ib = np.searchsorted(cells, b.cells)

    def combine(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.zeros((cells.size, *x.shape[1:]), np.int64)
        out[ia] += x
        out[ib] += y
        return out

    return CellTotals(
        cells=cells,
        accounts=combine(a.accounts, b.accounts),
        events=combine(a.events, b.events),
        columns=MappingProxyType({k: combine(a.columns[k], b.columns[k]) for k in a.columns}),
    )


def result(totals: CellTotals, policy: StreamPolicy) -> dict[str, np.ndarray]:
    """True aggregates per cell (never published): counts, sums, means, rates, quantiles."""
    out: dict[str, np.ndarray] = {
        "accounts": totals.accounts.astype(np.float64),
        "events": totals.events.astype(np.float64),
    }
    for m in policy.metrics:
        out.update(m.true_result(totals.columns[m.name], totals.events))
    return out
