"""The listed cells of public streams, in the order both stages write cells in, and
where each goes per window: worked out once per worker, not per partition.

  # policy.released_cells -> sorted by label (the order of partials and releases)
  #   -> rank of each label (dict) ; per window: the stage-2 partition of each rank
  #   (Kafka's partitioner on the cell's partials key, hashed once per window)

Stage 1 numbers a public window's cells by rank, so that they are in label order
without a sort of label tuples, and routes them by the rank's partition (an index,
not a hash per cell and raw partition); stage 2 takes the listed cells its
partition releases. Both give what sorting the labels and hashing each key gives,
byte for byte (tests/streams/test_listed.py): ranks follow label order, and the
partitions are those keys' partitions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from privmon.privacy.params import UNLISTED, StreamPolicy
from privmon.streams.partials import partial_keys
from privmon.streams.partitioner import partitions_for_keys


class Listed(NamedTuple):
    """The listed cells of a public stream that one partition releases in a window."""

    labels: list[tuple[str, ...]]  # sorted
    index: dict[tuple[str, ...], int]  # label -> its position in labels


class CellOrder(NamedTuple):
    """A public stream's released cells in label order: stage 1 numbers a public
    window's cells by this rank, so its cell ids are in label order already."""

    labels: list[tuple[str, ...]]  # policy.released_cells, sorted
    rank: dict[tuple[str, ...], int]  # label -> its position in labels
    unlisted: int  # the rank of the UNLISTED cell, where unlisted cells count


class ListedCells:
    """Per public stream: its released cells in label order, and the stage-2 partition
    of each in a window (where Kafka's partitioner puts its partials key), kept for a
    few windows. Shared by the partitions of a worker's stage (one per stage)."""

    def __init__(self, keep: int = 8) -> None:
        self._keep = keep
        self._order: dict[str, tuple[StreamPolicy, CellOrder]] = {}
        self._where: dict[tuple[str, int, int], tuple[StreamPolicy, np.ndarray]] = {}
        self._here: dict[tuple[str, int, int, int], tuple[StreamPolicy, Listed]] = {}

    def order(self, policy: StreamPolicy) -> CellOrder | None:
        """A public stream's cell order (made once per policy); None for a private one."""
        if not policy.public_cells:
            return None
        hit = self._order.get(policy.name)
        if hit is not None and hit[0] is policy:
            return hit[1]
        labels = sorted(policy.released_cells)
        rank = {c: i for i, c in enumerate(labels)}
        order = CellOrder(labels, rank, rank[(UNLISTED,) * len(policy.dimensions)])
        self._order[policy.name] = (policy, order)
        return order

    def _sorted(self, policy: StreamPolicy) -> CellOrder:
        order = self.order(policy)
        if order is None:
            raise ValueError(f"stream {policy.name!r}: expected a stream with public cells")
        return order

    def partitions(self, policy: StreamPolicy, start: int, partitions: int) -> np.ndarray:
        """int64[len(policy.released_cells)]: by rank, each released cell's stage-2
        partition in window ``start``."""
        key = (policy.name, start, partitions)
        hit = self._where.get(key)
        if hit is not None and hit[0] is policy:
            return hit[1]
        where = partitions_for_keys(
            partial_keys(policy.name, start, self._sorted(policy).labels), partitions)
        self._where[key] = (policy, where)
        while len(self._where) > self._keep:
            del self._where[next(iter(self._where))]
        return where

    def here(self, policy: StreamPolicy, start: int, partitions: int, partition: int
             ) -> Listed:
        """The listed cells whose partials key falls in ``partition``, sorted (as a
        release orders its cells), kept for a few windows like their partitions."""
        key = (policy.name, start, partitions, partition)
        hit = self._here.get(key)
        if hit is not None and hit[0] is policy:
            return hit[1]
        where = self.partitions(policy, start, partitions)
        ordered = self._sorted(policy).labels
        labels = list(map(ordered.__getitem__, np.flatnonzero(where == partition).tolist()))
        listed = Listed(labels, {c: i for i, c in enumerate(labels)})
        self._here[key] = (policy, listed)
        while len(self._here) > self._keep * max(1, partitions):
            del self._here[next(iter(self._here))]
        return listed
