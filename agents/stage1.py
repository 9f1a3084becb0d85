"""Stage 1, keyed by account: validate, pseudonymize, window, bound, emit partials.

One ``Stage1Partition`` per assigned partition of the raw topic. Plain Python
and numpy, no Kafka: the worker feeds it records and ships what it returns.

  # raw message -> decode: TelemetryEvent | DeadLetter (agents/stage1_messages.py)
  # -> (pseudonym, event) -> per stream: (stream, window) <- or late
  # -> participation cap -> ContributionTable: (pseudonym, cell) rows (Linf)
  # -> at close: L0 -> CellTotals -> Partials (by column) per window, then a Mark per stream

Recovery contract (see agents/worker.py): the worker commits, in one Kafka
transaction, the partials and marks of ``close`` together with
``progress()``, the changed participation-cap state ``take_state()`` and the
raw offset ``commit_offset()``. After a crash the partition restarts from
that offset with that progress and state: windows it had closed are skipped
on replay, windows it had open are rebuilt from the raw topic itself (their
first message is at or after the committed offset), and the cap remembers
the windows each account was admitted to, so a restart never resets it.
A stream's changed state is saved at the closes that close one of its
windows, and kept back at the others: what it admitted since is all in
windows still open, whose events the restart replays (the committed offset
is held back to the oldest open window's first message), and replaying
admissions in their order from the older state decides every pair as the
run without a restart did (tests/streams/test_participation_restart.py, with
restarts after random closes). So a close of 1-minute windows does not save
again the hourly and daily streams' accounts. The saved state may include
open windows' admissions; their replayed events find their window in the
account's recent windows and are not counted twice (if it fell out of that
short list they are counted again, which only drops more).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from privmon.agents.account_ids import AccountIds, RawIds
from privmon.agents.isolation import BatchFailed, MessageFailed, Quarantine
from privmon.agents.stage1_columns import (
    Batch,
    DimCodes,
    OpenWindow,
    dense_codes,
    event_times,
)
from privmon.agents.stage1_messages import MessageReader
from privmon.privacy import accumulators as acc
from privmon.privacy.params import StreamPolicy
from privmon.privacy.participation import DenseParticipationLimiter, open_recent
from privmon.streams.listed import ListedCells
from privmon.streams.partials import Mark, Partials, mark, partials_of
from privmon.streams.participation_state import (
    BUCKETS,
    StateChunk,
    state_key,
)
from privmon.streams.progress import Progress
from privmon.streams.pseudonym import Pseudonymizer
from privmon.streams.schema import (
    DeadLetter,
    InputLimits,
    TelemetryEvent,
    dead_letter,
)
from privmon.streams.windows import Watermark, WindowSpec


class Inflight(Protocol):
    """Told which raw messages are being processed (agents/crashguard.py)."""

    def begin(self, partition: int, first: int, last: int) -> None: ...
    def end(self) -> None: ...


class Stage1Partition:
    def __init__(
        self,
        *,
        partition: int,
        policies: tuple[StreamPolicy, ...],
        pseudonymizer: Pseudonymizer,
        idle_lag_ms: int,
        limits: InputLimits = InputLimits(),
        progress: Progress | None = None,
        participation: Sequence[StateChunk] = (),
        start_offset: int = 0,
        count_from: int = 0,
        quarantine: Quarantine | None = None,
        inflight: Inflight | None = None,
        listed: ListedCells | None = None,
    ) -> None:
        """``progress`` and ``participation``: what an earlier incarnation committed
        (``progress()`` and the latest ``take_state()`` chunks), if anything.
        ``listed``: public streams' cell order, shared by a worker's partitions."""
        self.partition = partition
        self.listed = listed if listed is not None else ListedCells()
        # Per partials block of the last close: a public stream's cell ranks (its cell
        # ids, streams/listed.py), by which the runner routes it without hashing a key
        # per cell; None for a private stream's.
        self.closed_ranks: list[np.ndarray | None] = []
        self.policies = policies
        self.specs = {p.name: WindowSpec(window_ms=p.window_ms, grace_ms=p.grace_ms)
                      for p in policies}
        self.limits = limits
        self.quarantine = quarantine if quarantine is not None else Quarantine()
        self.inflight = inflight  # told what is being processed (agents/crashguard.py)
        self.watermark = Watermark(idle_lag_ms=idle_lag_ms)
        self.limiters = {p.name: DenseParticipationLimiter(p.participation) for p in policies}
        self.open: dict[tuple[str, int], OpenWindow] = {}
        progress = progress or Progress()
        self.closed: dict[str, int] = {p.name: progress.closed.get(p.name, 0)
                                       for p in policies}
        # Each stream's closed position when its cap state was last saved (take_state).
        self._saved_closed = dict(self.closed)
        # Offsets below this were processed by an earlier incarnation: their
        # events in closed windows were already counted (released or late).
        self.replay_until = progress.next_offset
        # Counters count each message once per process: offsets below this were
        # counted by an earlier state of this partition in this process (or replayed).
        self.count_from = max(self.replay_until, count_from)
        # The watermark is NOT restored from progress: it would let this partition
        # close still-open windows before it has re-read their events. It grows
        # again from the replayed events (and from the wall clock once caught up).
        self.next_offset = start_offset
        # Pseudonym -> dense id (bounding and the cap work on ints); pruned with the
        # participation state at period boundaries (see close).
        self.accounts = AccountIds()
        # (key period, raw account id) -> dense id: bounded, never saved.
        self.raw_ids = RawIds(self.accounts, pseudonymizer)
        # Decode, key check and account ids of the raw messages (agents/stage1_messages.py).
        self.reader = MessageReader(pseudonymizer, self.raw_ids, limits)
        # Per dimension, a code per value seen (bounded, never saved): cells by dict probe.
        self.dim_codes = DimCodes()
        self._dirty_buckets: dict[str, set[int]] = {p.name: set() for p in policies}
        self._restore(participation)
        self.rng = np.random.default_rng()
        self.counts = {"messages": 0, "accepted": 0, "dead_lettered": 0, "replayed": 0}
        self.reasons: dict[str, int] = {}  # dead letters by reason (counted like counts)
        self.stream_counts = {p.name: {"included": 0, "late": 0, "over_cap": 0}
                              for p in policies}

    # ------------------------------------------------------------ ingest
    def ingest(
        self, records: list[tuple[int, bytes | None, bytes | None]], *, now_ms: int
    ) -> list[tuple[int, DeadLetter]]:
        """Take raw (offset, key, value) records; return the dead letters to publish.

        Every event's account_id must equal its message key: that is what puts
        all of an account's events in one partition, so that bounding per
        account (and distinct-account counts) hold across partitions. An event
        under another key is dead-lettered as ``key_mismatch``.

        Per message: decode and pseudonymize (one HMAC per message and key
        period); a failure there dead-letters the message (``internal_error``).
        Then per batch, as numpy columns: windows, lateness, the participation
        cap per (account, window), cells, and bounding. A failure in the batch
        work raises ``IsolationNeeded`` (agents/isolation.py) with the counters
        and offsets untouched; the worker then rebuilds and, through the
        quarantine, retries the batch message by message and sets aside the
        message that fails alone.
        """
        q, p = self.quarantine, self.partition
        if not q.active(p):
            return self._guarded(records, now_ms, alone=False)
        dead: list[tuple[int, DeadLetter]] = []
        run: list[tuple[int, bytes | None, bytes | None]] = []
        for record in records:
            poison = q.poison_type(p, record[0])
            if poison is None and not q.is_suspect(p, record[0]):
                run.append(record)
                continue
            if run:
                dead += self._guarded(run, now_ms, alone=False)
                run = []
            if poison is None:
                dead += self._guarded([record], now_ms, alone=True)
            else:
                dead += self._set_aside(record, poison)
        if run:
            dead += self._guarded(run, now_ms, alone=False)
        return dead

    def _guarded(self, records: list[tuple[int, bytes | None, bytes | None]], now_ms: int, *,
                 alone: bool) -> list[tuple[int, DeadLetter]]:
        if self.inflight is None or not records:
            return self._ingest(records, now_ms, alone=alone)
        self.inflight.begin(self.partition, records[0][0], records[-1][0])
        dead = self._ingest(records, now_ms, alone=alone)  # (a raise is not a death)
        self.inflight.end()
        return dead

    def _set_aside(self, record: tuple[int, bytes | None, bytes | None],
                   cause_type: str) -> list[tuple[int, DeadLetter]]:
        offset, _, value = record
        raw = value or b""
        letter = dead_letter("internal_error", cause_type, raw, -1, None, self.limits)
        self.next_offset = max(self.next_offset, offset + 1)
        if offset >= self.count_from:
            self._count(messages=1, accepted=0, reasons=["internal_error"])
        return [] if offset < self.replay_until else [(offset, letter)]

    def _ingest(self, records: list[tuple[int, bytes | None, bytes | None]], now_ms: int, *,
                alone: bool) -> list[tuple[int, DeadLetter]]:
        dead: list[tuple[int, DeadLetter]] = []
        singles, single_ids = self.reader.singles(records, now_ms)
        count_from = self.count_from
        reasons: list[str] = []
        if records and None not in singles:  # every message one event under its own key
            events: list[TelemetryEvent] = singles  # type: ignore[assignment]
            offsets = [r[0] for r in records]
            ids: list[int] | np.ndarray = single_ids
            messages = accepted = len(offsets) if min(offsets) >= count_from else sum(
                1 for o in offsets if o >= count_from)
            next_offset = max(self.next_offset, max(offsets) + 1)
            owners: list[bytes] = []
            sizes: list[int] = []
        else:
            # Per message with accepted events: its offset, its event count, its
            # account's id (-1: found after the loop, for all such messages at once) and
            # its UTF-8 account id (every accepted event carries the message key).
            events, offsets, sizes, ids, owners = [], [], [], [], []
            messages = accepted = 0
            next_offset = self.next_offset
            for (offset, key, value), single, single_id in zip(records, singles, single_ids,
                                                               strict=True):
                next_offset = max(next_offset, offset + 1)
                if single is not None:  # one accepted event under its own key
                    if offset >= count_from:
                        messages += 1
                        accepted += 1
                    events.append(single)
                    offsets.append(offset)
                    sizes.append(1)
                    ids.append(single_id)
                    owners.append(b"")
                    continue
                raw = value or b""
                try:
                    evs, owner, letters = self.reader.message(key, raw, now_ms)
                except Exception as exc:  # this message only
                    evs, owner = [], b""
                    letters = [dead_letter("internal_error", type(exc).__name__, raw, -1,
                                           None, self.limits)]
                if offset >= self.replay_until:  # (dead letters of an aborted txn: again)
                    dead.extend((offset, d) for d in letters)
                if offset >= count_from:
                    messages += 1
                    reasons += [d.reason for d in letters]
                    accepted += len(evs)
                if evs:
                    events += evs
                    offsets.append(offset)
                    sizes.append(len(evs))
                    ids.append(-1)
                    owners.append(owner)
        if events:
            try:  # (a failure in finding ids is isolated like one in the batch work)
                time = event_times(events)
                if sizes:  # per message -> per event
                    ids = self.reader.ids(np.array(ids, np.int64),
                                          np.array(sizes, np.int64), owners, time)
                    offsets = np.repeat(np.array(offsets, np.int64), sizes)  # type: ignore[assignment]
                stream_counts = self._ingest_batch(
                    Batch(events, ids, offsets, self.dim_codes, time=time))
            except Exception as exc:  # isolated by the worker, see ingest
                first, last = records[0][0], records[-1][0]
                failed = MessageFailed if alone or len(records) == 1 else BatchFailed
                raise failed(self.partition, first, last, exc) from exc
            self.counts["replayed"] += stream_counts.pop("")["replayed"]
            for name, counts in stream_counts.items():
                for k, v in counts.items():
                    self.stream_counts[name][k] += v
        self.next_offset = next_offset
        self._count(messages=messages, accepted=accepted, reasons=reasons)
        return dead

    def _count(self, *, messages: int, accepted: int, reasons: list[str]) -> None:
        """Add what a run of messages came to (once it went through)."""
        self.counts["messages"] += messages
        self.counts["accepted"] += accepted
        self.counts["dead_lettered"] += len(reasons)
        for reason in reasons:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def _ingest_batch(self, batch: Batch) -> dict[str, dict[str, int]]:
        """Window, cap and bound a batch of accepted events; return its per-stream
        counts (the caller adds them once the whole batch went through; "replayed"
        under the stream name "")."""
        self.watermark.observe(int(batch.time.max()))
        replay = batch.offset < self.replay_until
        counted = batch.offset >= self.count_from
        out = {p.name: {"included": 0, "late": 0, "over_cap": 0} for p in self.policies}
        replayed = 0
        for policy in self.policies:
            name = policy.name
            start = batch.time - batch.time % policy.window_ms
            late = start + policy.window_ms <= self.closed[name]
            replayed += int((late & replay).sum())
            out[name]["late"] += int((late & counted).sum())
            live = np.flatnonzero(~late)
            if live.size == 0:
                continue
            # The windows-per-period cap (decided once per (account, window) pair).
            keep = self.limiters[name].admit(batch.account[live], start[live])
            out[name]["over_cap"] += int((~keep & counted[live]).sum())
            live = live[keep]
            if live.size == 0:
                continue
            codes, labels = batch.cell_codes(policy.dimensions)
            fields = {m.field for m in policy.metrics}
            starts = start[live]
            if starts.min() == starts.max():  # (mostly: one window a batch)
                windows = [(int(starts[0]), live)]
            else:
                number, firsts = dense_codes(starts)
                windows = [(int(starts[f]), live[number == k])
                           for k, f in enumerate(firsts.tolist())]
            for window_start, idx in windows:
                self._add(policy, window_start, idx, batch, codes, labels, fields)
                out[name]["included"] += int(idx.size)
        out[""] = {"replayed": replayed}
        return out

    def _add(self, policy: StreamPolicy, start: int, idx: np.ndarray, batch: Batch,
             codes: np.ndarray, labels: list[tuple[str, ...]], fields: set[str]) -> None:
        first = int(batch.offset[idx].min())
        window = self.open.get((policy.name, start))
        if window is None:
            window = self.open[(policy.name, start)] = OpenWindow(
                policy, first, self.listed.order(policy))
        window.first_offset = min(window.first_offset, first)
        mine = codes[idx]
        local, firsts = dense_codes(mine)
        # public cells: an unlisted one counts in the stream's UNLISTED cell, never its own
        cells = window.cell_ids(list(map(labels.__getitem__, mine[firsts].tolist())))[local]
        window.table.add(batch.account[idx], cells,
                         {f: batch.column(f)[idx] for f in fields})

    # ------------------------------------------------------------- close
    def due(self, *, now_ms: int, caught_up: bool = True, ahead_ms: int = 0) -> bool:
        """Whether ``close`` would close a window now (else it would change nothing);
        with ``ahead_ms``, whether it would once the watermark is that much further."""
        wm = self.watermark.value(now_ms, caught_up=caught_up) + ahead_ms
        return any(self.specs[p.name].closed_up_to(wm) > self.closed[p.name]
                   for p in self.policies)

    def close(self, *, now_ms: int, caught_up: bool = True
              ) -> tuple[list[Partials], list[Mark]]:
        """Close every window the watermark has passed: its partials, then fresh marks.

        ``caught_up``: whether the partition has read all its input (see Watermark).
        """
        wm = self.watermark.value(now_ms, caught_up=caught_up)
        partials: list[Partials] = []  # one per closed window with cells
        ranks: list[np.ndarray | None] = []  # its cells' ranks (a public stream's)
        failed: dict[str, list[tuple[int, str]]] = {p.name: [] for p in self.policies}
        for policy in self.policies:
            upto = self.specs[policy.name].closed_up_to(wm)
            if upto <= self.closed[policy.name]:
                continue
            for key in sorted(k for k in self.open if k[0] == policy.name):
                if key[1] + policy.window_ms > upto:
                    continue
                window = self.open.pop(key)
                try:
                    totals = acc.add(acc.initialize(policy),
                                     window.table.bounded_rows(self.rng))
                    if len(totals):
                        partials.append(partials_of(
                            totals, window.labels, partition=self.partition,
                            stream=policy.name, window_start_ms=key[1],
                            ids_in_label_order=window.order is not None))
                        ranks.append(totals.cells if window.order is not None else None)
                except Exception as exc:  # this window only: stage 2 quarantines it
                    failed[policy.name].append((key[1], type(exc).__name__))
            self.closed[policy.name] = upto
            if upto // policy.participation.period_ms > 0:
                self.limiters[policy.name].forget_before(upto // policy.participation.period_ms - 1)
        for name, limiter in self.limiters.items():  # before pruning: ids still mean the same
            dirty = self.accounts.buckets(limiter.take_dirty())
            self._dirty_buckets[name].update(np.unique(dirty).tolist())
        self._prune_account_ids()
        marks = [mark(self.partition, p.name, self.closed[p.name], failed[p.name])
                 for p in self.policies]
        self.closed_ranks = ranks
        return partials, marks

    def _prune_account_ids(self) -> None:
        """Forget ids no limiter remembers (every open window's accounts are in a
        limiter's state: admission put them there, for the window's period)."""
        live = np.zeros(self.accounts.size, bool)
        for limiter in self.limiters.values():
            live |= limiter.has_state(self.accounts.size)
        if self.accounts.prune(live):
            self.raw_ids.forget(live)

    # ------------------------------------------------- participation state
    def take_state(self) -> list[tuple[bytes, bytes | None]]:
        """(key, value) records of the cap state changed up to the last ``close``,
        of the streams it closed a window of (the others' changes wait for a close of
        theirs): one per changed (stream, bucket), None for a bucket now empty. To
        commit with that close (see the recovery contract above)."""
        out: list[tuple[bytes, bytes | None]] = []
        due = [name for name in self._dirty_buckets  # (closed a window since)
               if self.closed[name] != self._saved_closed[name]]
        self._saved_closed.update((name, self.closed[name]) for name in due)
        if not any(self._dirty_buckets[name] for name in due):
            return out
        # The ids of each bucket, found once for every stream: ids[start[b]:start[b + 1]].
        by_bucket, start = self.accounts.by_bucket()
        for name in due:
            buckets = self._dirty_buckets[name]
            limiter = self.limiters[name]
            # Windows that end at or before `closed` are closed: their events never
            # reach the limiter again, so their recent entries need not be saved.
            open_after = self.closed[name] - self.specs[name].window_ms
            for b in sorted(buckets):
                ids = by_bucket[start[b]:start[b + 1]]
                period, count, recent = limiter.rows(ids)
                has = period >= 0
                ids = ids[has]
                if ids.size == 0:
                    out.append((state_key(name, b), None))
                    continue
                chunk = StateChunk(stream=name, bucket=b,
                                   pseudonyms=self.accounts.pseudonyms(ids),
                                   period=period[has], count=count[has],
                                   recent=open_recent(recent[has], open_after))
                out.append((state_key(name, b), chunk.encode()))
            buckets.clear()
        return out

    def _restore(self, chunks: Sequence[StateChunk]) -> None:
        for chunk in chunks:
            limiter = self.limiters.get(chunk.stream)
            if limiter is None or not 0 <= chunk.bucket < BUCKETS:
                continue  # a stream no longer configured
            ids = np.array(self.accounts.ids_of(chunk.pseudonym_list()), np.int64)
            limiter.restore(ids, chunk.period, chunk.count, chunk.recent)

    def commit_offset(self) -> int:
        """Raw offset to commit: the first message of the oldest open window, if any."""
        firsts = [w.first_offset for w in self.open.values()]
        return min([*firsts, self.next_offset])

    def progress(self) -> Progress:
        """What to commit with a close. ``next_offset`` never goes back: a close
        during a replay (before it reaches what an earlier incarnation had read)
        must not forget that those messages' dead letters were already sent."""
        return Progress(closed=dict(self.closed),
                        next_offset=max(self.next_offset, self.replay_until))
