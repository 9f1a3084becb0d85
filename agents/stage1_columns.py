"""Stage 1's columnar working state: a batch of accepted events as numpy columns,
and an open window's contribution table with its dense cell ids."""

from __future__ import annotations

from operator import attrgetter

import numpy as np
import pandas as pd

from privmon.privacy.bounding import ContributionTable
from privmon.privacy.params import StreamPolicy
from privmon.streams.schema import TelemetryEvent


class OpenWindow:
    def __init__(self, policy: StreamPolicy, first_offset: int) -> None:
        self.table = ContributionTable(policy)
        self.cells: dict[tuple[str, ...], int] = {}
        self.labels: list[tuple[str, ...]] = []
        self.first_offset = first_offset

    def cell_ids(self, labels: list[tuple[str, ...]]) -> np.ndarray:
        """Dense ids of cell labels in this window (new labels get the next ids)."""
        out = np.empty(len(labels), np.int64)
        for i, label in enumerate(labels):
            cell = self.cells.get(label)
            if cell is None:
                cell = self.cells[label] = len(self.labels)
                self.labels.append(label)
            out[i] = cell
        return out


class Batch:
    """The accepted events of one ``ingest`` call, as columns (built lazily)."""

    def __init__(self, events: list[TelemetryEvent], accounts: list[int],
                 offsets: list[int]) -> None:
        self.events = events
        self.n = len(events)
        self.account = np.asarray(accounts, np.int64)
        self.offset = np.asarray(offsets, np.int64)
        self.time = np.fromiter((e.event_time_ms for e in events), np.int64, self.n)
        self._columns: dict[str, np.ndarray] = {}
        self._dims: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._codes: dict[tuple[str, ...], tuple[np.ndarray, list[tuple[str, ...]]]] = {}

    def column(self, field: str) -> np.ndarray:
        col = self._columns.get(field)
        if col is None:
            if field == "hour_utc":
                col = (self.time // 3_600_000) % 24
            else:
                col = np.array(list(map(attrgetter(field), self.events)))
            self._columns[field] = col
        return col

    def _dim(self, dim: str) -> tuple[np.ndarray, np.ndarray]:
        got = self._dims.get(dim)
        if got is None:
            got = self._dims[dim] = pd.factorize(
                np.fromiter(map(attrgetter(dim), self.events), object, self.n))
        return got

    def cell_codes(self, dims: tuple[str, ...]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        """Per event a batch-local code of its cell, and the label of each code."""
        got = self._codes.get(dims)
        if got is None:
            per_dim = [self._dim(d) for d in dims]
            combined = np.zeros(self.n, np.int64)
            for codes, uniques in per_dim:
                combined = combined * len(uniques) + codes
            cells, first = np.unique(combined, return_index=True)
            codes = np.searchsorted(cells, combined)
            labels = [tuple(str(u[c[i]]) for c, u in per_dim) for i in first.tolist()]
            got = self._codes[dims] = (codes, labels)
        return got
