"""Stage 1's columnar working state: a batch of accepted events as numpy columns,
and an open window's contribution table with its dense cell ids."""

from __future__ import annotations

from itertools import repeat
from typing import get_args

import msgspec
import numpy as np

from privmon.agents import _columns
from privmon.privacy.bounding import ContributionTable
from privmon.privacy.params import StreamPolicy
from privmon.streams.listed import CellOrder
from privmon.streams.schema import TelemetryEvent

# The numpy type of each numeric field of TelemetryEvent (metrics' fields, but hour_utc).
_NUMPY = {bool: np.bool_, int: np.int64, float: np.float64}
_DTYPES = {f.name: _NUMPY[base] for f in msgspec.structs.fields(TelemetryEvent)
           if (base := get_args(f.type)[0] if get_args(f.type) else f.type) in _NUMPY}
# Each field's attribute descriptor, read per event by agents/_columns.c.
_FIELDS = {name: TelemetryEvent.__dict__[name] for name in TelemetryEvent.__struct_fields__}


def event_times(events: list[TelemetryEvent]) -> np.ndarray:
    """Each event's event_time_ms (int64)."""
    out = np.empty(len(events), np.int64)
    _columns.fill(events, _FIELDS["event_time_ms"], out)
    return out


def dense_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each value's number among the distinct values, numbered in order of first sight
    (int64), and each number's first index: one hash pass (agents/_columns.c) instead
    of np.unique's sort."""
    values = np.ascontiguousarray(values, np.int64)
    codes, firsts = np.empty(values.size, np.int64), np.empty(values.size, np.int64)
    return codes, firsts[:_columns.dense(values, codes, firsts)]


class OpenWindow:
    def __init__(self, policy: StreamPolicy, first_offset: int,
                 order: CellOrder | None = None) -> None:
        """``order``: a public stream's cell order (streams/listed.py): cell ids are then
        ranks in it, so that the window's cells come out in label order, unsorted."""
        self.policy = policy
        self.table = ContributionTable(policy)
        self.order = order
        self.cells: dict[tuple[str, ...], int] = {}
        self.labels: list[tuple[str, ...]] = order.labels if order is not None else []
        self.first_offset = first_offset

    def cell_ids(self, labels: list[tuple[str, ...]]) -> np.ndarray:
        """Ids of the cells the events of these labels count in (a public stream's:
        the label's rank, or the UNLISTED cell's; else dense ids in this window, new
        labels getting the next ids in order of first sight)."""
        if self.order is not None:
            return np.fromiter(map(self.order.rank.get, labels, repeat(self.order.unlisted)),
                               np.int64, len(labels))
        labels = self.policy.cell_labels(labels)
        got = list(map(self.cells.get, labels))
        if None in got:
            for i, label in enumerate(labels):
                if got[i] is None:
                    cell = self.cells.get(label)  # (a new label twice in ``labels``)
                    if cell is None:
                        cell = self.cells[label] = len(self.labels)
                        self.labels.append(label)
                    got[i] = cell
        return np.array(got, np.int64)


# Per dimension, at most this many values keep their codes from one batch to the next
# (a dimension holding more at a batch's start starts afresh: hostile input with
# ever new values costs memory up to this, and one batch's own values).
DIM_CODES_MAX = 1 << 16
# Combined cell codes are re-numbered densely before their product could pass this.
_COMBINED_MAX = 1 << 62


class _Codes(dict[str, int]):
    """Value -> code, in order of first sight, and each code's value as a cell label
    (``labels[code]``, the value's str): agents/_columns.c's ``codes`` gives a new
    value the next code and appends its label."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[str] = []


class DimCodes:
    """A code per value of each dimension, kept across batches, so that coding a
    batch's column is one dict probe per event (no factorize of a fresh array of
    strings). Trusted-zone working state of one stage-1 partition, never saved."""

    def __init__(self, limit: int = DIM_CODES_MAX) -> None:
        self.limit = limit
        self._codes: dict[str, _Codes] = {}

    def table(self, dim: str) -> _Codes:
        """The codes of ``dim`` (afresh if it outgrew the limit: call once per batch)."""
        codes = self._codes.get(dim)
        if codes is None or len(codes) > self.limit:
            codes = self._codes[dim] = _Codes()
        return codes


class Batch:
    """The accepted events of one ``ingest`` call, as columns (built lazily)."""

    def __init__(self, events: list[TelemetryEvent], accounts: list[int] | np.ndarray,
                 offsets: list[int] | np.ndarray, dim_codes: DimCodes | None = None, *,
                 time: np.ndarray | None = None) -> None:
        """``time``: the events' event_time_ms, if the caller has it already."""
        self.events = events
        self.n = len(events)
        self.account = np.asarray(accounts, np.int64)
        self.offset = np.asarray(offsets, np.int64)
        self.time = time if time is not None else event_times(events)
        self.dim_codes = dim_codes if dim_codes is not None else DimCodes()
        self._columns: dict[str, np.ndarray] = {}
        self._dims: dict[str, tuple[np.ndarray, _Codes]] = {}
        self._codes: dict[tuple[str, ...], tuple[np.ndarray, list[tuple[str, ...]]]] = {}

    def column(self, field: str) -> np.ndarray:
        col = self._columns.get(field)
        if col is None:
            if field == "hour_utc":
                col = (self.time // 3_600_000) % 24
            else:
                col = np.empty(self.n, _DTYPES[field])
                _columns.fill(self.events, _FIELDS[field], col)
            self._columns[field] = col
        return col

    def _dim(self, dim: str) -> tuple[np.ndarray, _Codes]:
        """Per event the code of its value of ``dim``, and the codes (as of this batch)."""
        got = self._dims.get(dim)
        if got is None:
            table = self.dim_codes.table(dim)
            codes = np.empty(self.n, np.int64)
            _columns.codes(self.events, _FIELDS[dim], table, table.labels, codes)
            got = (codes, table)
            self._dims[dim] = got
        return got

    def cell_codes(self, dims: tuple[str, ...]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        """Per event a batch-local code of its cell, and the label of each code."""
        got = self._codes.get(dims)
        if got is None:
            combined = np.zeros(self.n, np.int64)
            size = 1
            for d in dims:
                codes, table = self._dim(d)
                count = len(table)
                if size * count >= _COMBINED_MAX:  # (dense again: at most n codes)
                    combined, firsts = dense_codes(combined)
                    size = firsts.size
                combined = combined * count + codes
                size *= count
            codes, first = dense_codes(combined)
            # each cell's label from its events' codes, dimension by dimension
            by_dim = [list(map(table.labels.__getitem__, dim_codes[first].tolist()))
                      for dim_codes, table in map(self._dim, dims)]
            labels = list(zip(*by_dim, strict=True)) if dims else [()] * len(first)
            got = self._codes[dims] = (codes, labels)
        return got
