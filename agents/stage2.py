"""Stage 2, keyed by cell: combine partials, then threshold, noise and release.

One ``Stage2Partition`` per assigned partition of the partials topic. No
Kafka here either.

  # Partials (stage-1 partition, stream, window, cells by column) -> merged exact totals
  # Mark (stage-1 partition, stream, t) -> that partition is done with windows <= t
  # all stage-1 partitions done -> CellTotals -> release_window -> ReleaseRecords

A window is released once every stage-1 partition has marked it; because a
stage-1 partition writes its partials and its mark in one transaction, the
partials it had for the window are all in by then. Windows in ``released``
(loaded from the ledger) are never released again; their partials, if read
again after a restart, are ignored.

Every window is released, with or without partials here: from LOOKBACK_WINDOWS
windows before the first mark this partition saw (or from the end of the last
window in its ledger) every window of every stream gets a ledger entry, in
the same steps, so which entries exist and in what order says how far time
has gone, not whether the data had a cell in this partition (an existence
channel otherwise: tests/privacy/test_exact_channels.py). An empty window
draws no noise and publishes nothing; its entry charges the window's cost all
the same (an upper bound). A stream with public cells releases each listed cell
in the partition its partials key falls in (``partition`` of ``partitions``),
with zero totals where it had no partials: every listed cell gets a record every
window. Their cells being known before the data, the noise of a public stream's
next window is drawn ahead, after each release (``prepare_next``): the release
then only adds it.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from types import MappingProxyType

import numpy as np

from privmon.privacy.accountant import LedgerEntry
from privmon.privacy.accumulators import CellTotals
from privmon.privacy.noise_keys import NoiseKeys, WindowNoise
from privmon.privacy.params import StreamPolicy
from privmon.privacy.records import WindowComplete
from privmon.privacy.release import WindowRelease, noise_plan, release_window
from privmon.streams.listed import Listed, ListedCells
from privmon.streams.partials import Mark, Partials


def ledger_entry(policy: StreamPolicy, start: int, partials_partition: int,
                 rel: WindowRelease) -> LedgerEntry:
    """The ledger's record of a release: what was spent and what was published,
    nothing the data held (tests/privacy/test_exact_channels.py)."""
    return LedgerEntry.for_release(policy, window_start_ms=start,
                                   cells_released=len(rel),
                                   partials_partition=partials_partition)


def completion_record(policy: StreamPolicy, start: int, partials_partition: int,
                      partials_partitions: int) -> WindowComplete:
    """What stage 2 publishes after its part of every window, released or not: a
    function of public facts only (tests/privacy/test_exact_channels.py)."""
    return WindowComplete(stream=policy.name, window_start_ms=start,
                          window_end_ms=start + policy.window_ms,
                          partials_partition=partials_partition,
                          partials_partitions=partials_partitions)


# Most windows a partition releases per stream and step (after a long stop, or a jump of
# event time, the rest follow in the next steps).
MAX_WINDOWS_PER_STEP = 1_000
# How far back the every-window rule reaches (about a week of 1-minute windows).
MAX_CATCHUP_WINDOWS = 10_000
# Windows before a partition's first mark that get entries all the same. On live input
# stage 1's first close covers one to three windows; a first start on a backlog of older
# input can hold more, and windows older than this then get entries only if they had
# cells (the one data-dependent boundary, at first deployment; SECURITY.md says so).
LOOKBACK_WINDOWS = 16


class WindowFailed(Exception):
    """A window some stage-1 partition could not close: released by no one."""


class _Pending:
    """A window's partials as they arrive (blocks of columns), merged once, at release."""

    def __init__(self, first_offset: int) -> None:
        self.first_offset = first_offset
        self.blocks: list[Partials] = []

    def add(self, p: Partials) -> None:
        self.blocks.append(p)

    def totals(self, policy: StreamPolicy, listed: Listed | None = None
               ) -> tuple[CellTotals, list[tuple[str, ...]]]:
        """The exact sums per cell (int64, by numpy), cells sorted, with zero rows for
        the ``listed`` cells without partials (a public stream's, here)."""
        rows = [c for b in self.blocks for c in b.cells]  # one per (block, cell)
        at_rows = list(map(listed.index.get, rows)) if listed is not None else [None]
        if None not in at_rows:  # (every row a listed cell here: sorted ahead, prepare_next)
            labels = listed.labels  # type: ignore[union-attr]
        else:
            labels = sorted(set(rows).union(listed.labels if listed is not None else ()))
            index = {c: i for i, c in enumerate(labels)}
            at_rows = list(map(index.__getitem__, rows))
        at = np.array(at_rows, np.int64)
        n = len(labels)

        def summed(column: Callable[[Partials], list], width: tuple[int, ...]) -> np.ndarray:
            out = np.zeros((n, *width), np.int64)
            if rows:  # each block's column converted at once, not value by value
                np.add.at(out, at, np.concatenate([
                    np.asarray(column(b), np.int64).reshape(len(b.cells), *width)
                    for b in self.blocks]))
            return out

        columns = {m.name: summed(lambda b, name=m.name: b.columns[name], m.buckets)
                   for m in policy.metrics}
        totals = CellTotals(
            cells=np.arange(n, dtype=np.int64),
            accounts=summed(attrgetter("accounts"), ()),
            events=summed(attrgetter("events"), ()),
            columns=MappingProxyType(columns),
        )
        return totals, labels


class Stage2Partition:
    def __init__(
        self,
        *,
        policies: tuple[StreamPolicy, ...],
        sources: int,
        noise_keys: NoiseKeys,
        released: set[tuple[str, int]] | None = None,
        partition: int = 0,
        partitions: int = 1,
        listed: ListedCells | None = None,
    ) -> None:
        """``released``: the (stream, window start) pairs this partition's ledger holds;
        ``partition`` of ``partitions``: which partials partition this is (the public
        cells it releases are those whose partials key Kafka's partitioner puts here);
        ``listed``: shared by the partitions of one worker (else one of its own)."""
        if not 0 <= partition < partitions:
            raise ValueError(f"partition: expected 0..{partitions - 1}, got {partition}")
        self.partition, self.partitions = partition, partitions
        self.listed = listed if listed is not None else ListedCells()
        # (stream, window start) -> its noise, drawn ahead for the listed cells here
        self.prepared: dict[tuple[str, int], WindowNoise] = {}
        self.policies = {p.name: p for p in policies}
        self.sources = sources
        self.released = set(released or ())
        self.noise_keys = noise_keys
        self.pending: dict[tuple[str, int], _Pending] = {}
        # stream -> stage-1 partition -> windows ending <= this are complete
        self.marks: dict[str, dict[int, int]] = {name: {} for name in self.policies}
        self.ignored_partials = 0
        # (stream, window) -> why a stage-1 partition could not close it: quarantined
        self.failed: dict[tuple[str, int], str] = {}
        # stream -> start of the first window not yet released here (None: no mark yet)
        self.next_start: dict[str, int | None] = dict.fromkeys(self.policies)
        for stream, start in self.released:
            if stream in self.policies:
                self._advance(stream, start)

    def on_record(self, offset: int, record: Partials | Mark) -> None:
        if isinstance(record, Mark):
            marks = self.marks.setdefault(record.stream, {})
            marks[record.partition] = max(marks.get(record.partition, 0), record.closed_up_to_ms)
            if (record.stream in self.next_start and self.next_start[record.stream] is None
                    and record.closed_up_to_ms > 0):
                # The first mark is a time (the same marks reach every partials partition);
                # windows before it may have had cells here (a backlog), so every window
                # of the lookback gets an entry, cells or not. A mark at 0 is a stage-1
                # partition that has closed nothing yet (no progress, no watermark): no
                # time, or the every-window rule would start from the epoch (10,000
                # empty windows per partition and stream, seen after a cluster restart).
                window_ms = self.policies[record.stream].window_ms
                self.next_start[record.stream] = (record.closed_up_to_ms
                                                  - LOOKBACK_WINDOWS * window_ms)
            for start, cause in record.failed:
                key = (record.stream, start)
                if key in self.released or record.stream not in self.policies:
                    continue
                self.failed.setdefault(key, f"stage 1: {cause}")
                if key not in self.pending:  # held like a pending window until quarantined
                    self.pending[key] = _Pending(offset)
            return
        key = (record.stream, record.window_start_ms)
        if key in self.released or record.stream not in self.policies:
            self.ignored_partials += 1
            return
        pending = self.pending.get(key)
        if pending is None:
            pending = self.pending[key] = _Pending(offset)
        pending.add(record)

    def _advance(self, stream: str, start: int) -> None:
        """Window ``start`` is released: the next one to release starts after it."""
        end = start + self.policies[stream].window_ms
        self.next_start[stream] = max(self.next_start.get(stream) or end, end)

    def releasable(self, limit: int = MAX_WINDOWS_PER_STEP) -> list[tuple[str, int]]:
        """Windows every stage-1 partition has marked, oldest first: the pending ones
        and every other window since ``next_start`` (at most ``limit`` per stream)."""
        ready = set()
        for stream, policy in self.policies.items():
            marks = self.marks.get(stream, {})
            if not all(p in marks for p in range(self.sources)):
                continue
            complete = min(marks[p] for p in range(self.sources))  # windows ending <= this
            w = policy.window_ms
            last = complete - w  # the newest complete window's start
            start = self.next_start.get(stream)
            if start is not None:
                # no catch-up further back than MAX_CATCHUP_WINDOWS (a first mark from an
                # ancient event time): older windows get entries only if they had cells
                start = max(start - start % w, complete - MAX_CATCHUP_WINDOWS * w)
                last = min(last, start + (limit - 1) * w)  # the same steps, cells or not
                for s in range(start, last + 1, w):
                    if (stream, s) not in self.released:
                        ready.add((stream, s))
            for key in self.pending:
                if key[0] == stream and key[1] <= last:
                    ready.add(key)
        return sorted(ready, key=lambda k: (k[1], k[0]))

    def release(self, stream: str, start: int) -> WindowRelease:
        """Threshold, noise and release one window (the caller commits it)."""
        policy = self.policies[stream]
        pending = self.pending.pop((stream, start), None)
        self.released.add((stream, start))
        self._advance(stream, start)
        cause = self.failed.pop((stream, start), None)
        if cause is not None:
            raise WindowFailed(cause)
        if policy.public_cells:  # every listed cell of this partition, partials or not
            pending = pending or _Pending(0)
        noise = self.prepared.pop((stream, start), None)
        if pending is None:  # no partials here: nothing to publish, an entry all the same
            return WindowRelease.empty()
        listed = (self.listed.here(policy, start, self.partitions, self.partition)
                  if policy.public_cells else None)
        totals, labels = pending.totals(policy, listed)
        return release_window(
            totals, policy, window_start_ms=start,
            cell_keys=labels,
            noise=noise or self.noise_keys.window(stream, policy.policy_version, start),
        )

    def prepare_next(self) -> None:
        """Draw the noise of each public stream's next window ahead, for the listed
        cells released here (a draw depends on its context alone: privacy/noise_keys.py),
        so that its release, once every stage-1 partition marked it, does not wait for
        it. Public facts only: the inventory, the window, the key."""
        for stream, policy in self.policies.items():
            start = self.next_start.get(stream)
            if not policy.public_cells or start is None:
                continue
            w = policy.window_ms
            start -= start % w
            for key in [k for k in self.prepared if k[0] == stream and k[1] < start]:
                del self.prepared[key]  # released (or passed) meanwhile
            if (stream, start) in self.prepared or (stream, start) in self.released:
                continue
            listed = self.listed.here(policy, start, self.partitions, self.partition)
            noise = self.noise_keys.window(stream, policy.policy_version, start)
            noise.prepare(listed.labels, noise_plan(policy))
            self.prepared[(stream, start)] = noise

    def commit_offset(self, next_offset: int) -> int:
        """Partials offset to commit: the first record of the oldest pending window."""
        return min([*(p.first_offset for p in self.pending.values()), next_offset])
