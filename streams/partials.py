"""Internal records between the two stages (topic ``privmon.partials``).

Unnoised and account-free, but as restricted as the raw topic: a partial
holds one stage-1 partition's exact, bounded totals of its cells.

    partials: {"k": "partials", "p": 3, "s": "monitoring", "w": 1764000000000,
               "cells": [["fra-01", "eu-central"], ...], "a": [41, ...], "e": [97, ...],
               "m": {"latency": [1234, ...], "errors": [2, ...],
                     "latency_hist": [[0, 3, ...], ...]}, "v": 1}
      one stage-1 partition's totals of many cells of one window, column by
      column (row i of every column is cells[i]); sent to the stage-2 partition
      that Kafka's partitioner gives each cell's ``partial_key``, so one cell's
      partials from every stage-1 partition meet in one stage-2 partition
      (``route``: a window's cells grouped by that partition, in records under
      the broker's size limit). One record per few thousand cells, not per cell:
      a window of 10k cells costs stage 1 and stage 2 a few records, not 10k.
    partial: {"k": "partial", "p": 3, "s": "monitoring", "w": ..., "cell": [...],
              "a": 41, "e": 97, "m": {...}}
      the per-cell record of earlier versions: still read (as a block of one
      cell), never written, so partials in flight across an upgrade count.
    mark:    {"k": "mark", "p": 3, "s": "monitoring", "t": 1764000060000}
      "stage-1 partition 3 has emitted everything of stream monitoring for the
      windows ending at or before t"; sent to every stage-2 partition. With
      "f": {"1764000000000": "ValueError"}, closing those windows raised in
      that partition: stage 2 quarantines them (nothing published, failed in
      the ledger) rather than release them without that partition's part.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from privmon.privacy.accumulators import CellTotals
from privmon.streams.partitioner import partitions_for_keys

SEP = "|"
VERSION = 1  # of the partial and mark records; another is refused (WireError)


class WireError(ValueError):
    """An internal record privmon cannot read: not JSON, not a known kind, a missing or
    mistyped field, or a version this code does not know."""


# the wire names of both kinds of partials record
_PARTIAL_NAMES = {"partition": "p", "stream": "s", "window_start_ms": "w",
                  "accounts": "a", "events": "e", "columns": "m"}


class Partials(msgspec.Struct, frozen=True, tag_field="k", tag="partials",
               rename=_PARTIAL_NAMES):
    """One stage-1 partition's totals of ``cells`` in one window, by column."""

    partition: int
    stream: str
    window_start_ms: int
    cells: list[tuple[str, ...]]
    accounts: list[int]
    events: list[int]
    columns: dict[str, list[int | list[int]]]  # one value (or bucket row) per cell
    v: int = VERSION

    def encode(self) -> bytes:
        return _ENCODER.encode(self)

    def keys(self) -> list[bytes]:
        """Each cell's partials key (where Kafka's partitioner sends it)."""
        return partial_keys(self.stream, self.window_start_ms, self.cells)

    def check(self) -> Partials:
        """Self, if every column has one row per cell (else WireError): the decoder
        checks types, this the shape, so stage 2 never merges ragged columns."""
        n = len(self.cells)
        if len(self.accounts) != n or len(self.events) != n:
            raise WireError(f"partials record: {n} cells, {len(self.accounts)} account "
                            f"and {len(self.events)} event counts; expected one per cell")
        for name, col in self.columns.items():
            if len(col) != n:
                raise WireError(f"partials record: column {name!r} has {len(col)} rows "
                                f"for {n} cells; expected one per cell")
            shapes = {len(r) if isinstance(r, list) else None for r in col}
            if len(shapes) > 1:
                raise WireError(f"partials record: column {name!r} mixes rows of shapes "
                                f"{sorted(shapes, key=str)} (None: a number); expected one")
        return self

    def per_cell(self) -> list[Partial]:
        """Each cell's row as a per-cell record (for readers of the topic and tests)."""
        return [Partial(partition=self.partition, stream=self.stream,
                        window_start_ms=self.window_start_ms, cell=c, accounts=a, events=e,
                        columns={k: v[i] for k, v in self.columns.items()})
                for i, (c, a, e) in enumerate(zip(self.cells, self.accounts, self.events,
                                                  strict=True))]

    def take(self, rows: Sequence[int]) -> Partials:
        """The same record with only ``rows`` (in that order)."""
        return Partials(partition=self.partition, stream=self.stream,
                        window_start_ms=self.window_start_ms,
                        cells=[self.cells[i] for i in rows],
                        accounts=[self.accounts[i] for i in rows],
                        events=[self.events[i] for i in rows],
                        columns={k: [v[i] for i in rows] for k, v in self.columns.items()})


class Partial(msgspec.Struct, frozen=True, tag_field="k", tag="partial",
              rename=_PARTIAL_NAMES):
    """The per-cell record of earlier versions (read, never written)."""

    partition: int
    stream: str
    window_start_ms: int
    cell: tuple[str, ...]
    accounts: int
    events: int
    columns: dict[str, int | list[int]]
    v: int = VERSION

    def block(self) -> Partials:
        return Partials(partition=self.partition, stream=self.stream,
                        window_start_ms=self.window_start_ms, cells=[self.cell],
                        accounts=[self.accounts], events=[self.events],
                        columns={k: [v] for k, v in self.columns.items()})


class Mark(msgspec.Struct, frozen=True, tag_field="k", tag="mark",
           rename={"partition": "p", "stream": "s", "closed_up_to_ms": "t",
                   "failed_by_window": "f"}):
    partition: int
    stream: str
    closed_up_to_ms: int
    # (window start, exception type) of failed closes; on the wire {"<start>": "<type>"}
    failed_by_window: dict[str, str] = {}
    v: int = VERSION

    @property
    def failed(self) -> tuple[tuple[int, str], ...]:
        return tuple((int(w), t) for w, t in self.failed_by_window.items())

    def encode(self) -> bytes:
        return _ENCODER.encode(self)


def partial_key(stream: str, window_start_ms: int, cell: Sequence[str]) -> bytes:
    """The partials topic key of a cell's partials: its partition is the cell's stage-2
    partition for that window (also where a public cell without partials is released)."""
    return SEP.join((stream, str(window_start_ms), *cell)).encode()


def partial_keys(stream: str, window_start_ms: int, cells: Sequence[Sequence[str]]
                 ) -> list[bytes]:
    """``partial_key`` of each cell, by C-level maps over the cells."""
    if not cells or not all(cells):  # (a cell of no dimensions has no separator after w)
        return [partial_key(stream, window_start_ms, c) for c in cells]
    prefix = f"{stream}{SEP}{window_start_ms}{SEP}"
    return list(map(str.encode, map(prefix.__add__, map(SEP.join, cells))))


def mark(partition: int, stream: str, closed_up_to_ms: int,
         failed: Sequence[tuple[int, str]] = ()) -> Mark:
    """A Mark from (window start, exception type) pairs of failed closes."""
    return Mark(partition, stream, closed_up_to_ms, {str(w): t for w, t in failed})


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Partials | Partial | Mark)


def decode(value: bytes) -> Partials | Mark:
    """A partials-topic record, strictly (an old per-cell one as a block of one):
    WireError names what is wrong."""
    record = decode_strict(_DECODER, value, what="partials record", version=VERSION)
    if isinstance(record, Partial):
        return record.block().check()
    if isinstance(record, Partials):
        return record.check()
    return record


def decode_strict(decoder: msgspec.json.Decoder, value: bytes, *, what: str,
                  version: int) -> Any:
    """``value`` by ``decoder``, refusing what does not decode or has another version
    (every internal record carries ``v``), with WireError naming what is wrong."""
    try:
        record = decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise WireError(f"{what}: {exc}") from None
    if record.v != version:
        raise WireError(f"{what}: version {record.v}, this worker reads {version}; "
                        "run workers of one version on a pipeline")
    return record


def partials_of(
    totals: CellTotals, labels: Sequence[tuple[str, ...]], *, partition: int, stream: str,
    window_start_ms: int, ids_in_label_order: bool = False,
) -> Partials:
    """Every cell of ``totals`` in one record (cell ids index ``labels``), cells sorted
    by label: the same totals give the same bytes whatever ids the cells had (a
    replay from another offset numbers them in another order); ``route`` splits it
    by stage-2 partition. ``ids_in_label_order``: the ids are ranks in label order
    (a public stream's, streams/listed.py), so the cells (sorted by id) need no sort."""
    cells = [labels[c] for c in totals.cells.tolist()]  # (CellTotals: sorted by id)
    order: slice | list[int] = slice(None)
    if not ids_in_label_order:
        order = sorted(range(len(cells)), key=cells.__getitem__)
        cells = [cells[i] for i in order]
    return Partials(partition=partition, stream=stream, window_start_ms=window_start_ms,
                    cells=cells, accounts=totals.accounts[order].tolist(),
                    events=totals.events[order].tolist(),
                    columns={k: np.asarray(v)[order].tolist()
                             for k, v in totals.columns.items()})


def cell_rows(value: bytes) -> list[Partial]:
    """The per-cell rows of a partials-topic record (none for a mark)."""
    record = decode(value)
    return record.per_cell() if isinstance(record, Partials) else []


def route(block: Partials, partitions: int, *, max_bytes: int = 900_000,
          where: np.ndarray | None = None) -> list[tuple[bytes, bytes, int]]:
    """(key, encoded record, stage-2 partition) triples holding every cell of
    ``block`` once: each cell where Kafka's partitioner puts its ``partial_key``
    (the key is the window's, "stream|start", for reading the topic), each record
    at most ``max_bytes`` (under the broker's default 1 MB message limit; a record
    over it is halved until it fits, so no window is too large to send).
    ``where``: each cell's partition, if the caller knows it (streams/listed.py)."""
    if not block.cells:
        return []
    if where is None:
        where = partitions_for_keys(block.keys(), partitions)
    elif len(where) != len(block.cells):
        raise ValueError(f"route: where has {len(where)} partitions for "
                         f"{len(block.cells)} cells; expected one per cell")
    key = SEP.join((block.stream, str(block.window_start_ms))).encode()
    out: list[tuple[bytes, bytes, int]] = []
    for q in np.unique(where).tolist():
        _fit(block.take(np.flatnonzero(where == q).tolist()), key, q, max_bytes, out)
    return out


def _fit(block: Partials, key: bytes, q: int, max_bytes: int,
         out: list[tuple[bytes, bytes, int]]) -> None:
    value = block.encode()
    if len(value) <= max_bytes or len(block.cells) == 1:
        out.append((key, value, q))
        return
    half = len(block.cells) // 2
    _fit(block.take(range(half)), key, q, max_bytes, out)
    _fit(block.take(range(half, len(block.cells))), key, q, max_bytes, out)
