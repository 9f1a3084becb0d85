"""Stage 1, keyed by account: validate, pseudonymize, window, bound, emit partials.

One ``Stage1Partition`` per assigned partition of the raw topic. Plain Python
and numpy, no Kafka: the worker feeds it records and ships what it returns.

  # raw message -> decode: TelemetryEvent | DeadLetter
  # -> (pseudonym, event) -> per stream: (stream, window) <- or late
  # -> participation cap -> ContributionTable: (pseudonym, cell) rows (Linf)
  # -> at close: L0 -> CellTotals -> Partial per cell, then a Mark per stream

Recovery contract (see agents/worker.py): the worker commits, in one Kafka
transaction, the partials and marks of ``close`` together with
``progress()`` and the raw offset ``commit_offset()``. After a crash the
partition restarts from that offset with that progress: windows it had
closed are skipped on replay, windows it had open are rebuilt from the raw
topic itself (their first message is at or after the committed offset).
"""

from __future__ import annotations

import numpy as np

from privacy import accumulators as acc
from privacy.bounding import ContributionTable
from privacy.params import StreamPolicy
from privacy.participation import ParticipationLimiter
from streams.partials import Mark, Partial, partials_of
from streams.pseudonym import Pseudonymizer
from streams.schema import DeadLetter, InputLimits, decode_message, key_mismatch
from streams.windows import Watermark, WindowSpec


class _OpenWindow:
    def __init__(self, policy: StreamPolicy, first_offset: int) -> None:
        self.table = ContributionTable(policy)
        self.accounts: dict[bytes, int] = {}
        self.cells: dict[tuple[str, ...], int] = {}
        self.labels: list[tuple[str, ...]] = []
        self.first_offset = first_offset


class Stage1Partition:
    def __init__(
        self,
        *,
        partition: int,
        policies: tuple[StreamPolicy, ...],
        pseudonymizer: Pseudonymizer,
        idle_lag_ms: int,
        limits: InputLimits = InputLimits(),
        progress: dict | None = None,
        start_offset: int = 0,
    ) -> None:
        self.partition = partition
        self.policies = policies
        self.specs = {p.name: WindowSpec(window_ms=p.window_ms, grace_ms=p.grace_ms)
                      for p in policies}
        self.pseudonymizer = pseudonymizer
        self.limits = limits
        self.watermark = Watermark(idle_lag_ms=idle_lag_ms)
        self.limiters = {p.name: ParticipationLimiter(p.participation) for p in policies}
        self.open: dict[tuple[str, int], _OpenWindow] = {}
        progress = progress or {}
        self.closed: dict[str, int] = {p.name: int(progress.get("closed", {}).get(p.name, 0))
                                       for p in policies}
        # Offsets below this were processed by an earlier incarnation: their
        # events in closed windows were already counted (released or late).
        self.replay_until = int(progress.get("next_offset", 0))
        # The watermark is NOT restored from progress: it would let this partition
        # close still-open windows before it has re-read their events. It grows
        # again from the replayed events (and from the wall clock once caught up).
        self.next_offset = start_offset
        self.rng = np.random.default_rng()
        self.counts = {"messages": 0, "accepted": 0, "dead_lettered": 0, "replayed": 0}
        self.stream_counts = {p.name: {"included": 0, "late": 0, "over_cap": 0}
                              for p in policies}

    # ------------------------------------------------------------ ingest
    def ingest(
        self, records: list[tuple[int, bytes | None, bytes]], *, now_ms: int
    ) -> list[tuple[int, DeadLetter]]:
        """Take raw (offset, key, value) records; return the dead letters to publish.

        Every event's account_id must equal its message key: that is what puts
        all of an account's events in one partition, so that bounding per
        account (and distinct-account counts) hold across partitions. An event
        under another key is dead-lettered as ``key_mismatch``.
        """
        dead: list[tuple[int, DeadLetter]] = []
        # (stream, window) -> rows of (pseudonym, cell tuple, latency.., offset)
        batches: dict[tuple[str, int], list] = {}
        for offset, key, value in records:
            self.next_offset = max(self.next_offset, offset + 1)
            replay = offset < self.replay_until
            self.counts["messages"] += 1
            decoded = decode_message(value or b"", now_ms=now_ms, limits=self.limits)
            mismatched = [e for e in decoded.events if key != e.account_id.encode()]
            if mismatched:
                decoded.events = [e for e in decoded.events if key == e.account_id.encode()]
                decoded.dead += [key_mismatch(e, self.limits) for e in mismatched]
            if not replay:
                dead.extend((offset, d) for d in decoded.dead)
                self.counts["dead_lettered"] += len(decoded.dead)
            for event in decoded.events:
                if not replay:
                    self.counts["accepted"] += 1
                self.watermark.observe(event.event_time_ms)
                pseudonym = self.pseudonymizer.pseudonym(event.account_id, event.event_time_ms)
                for policy in self.policies:
                    spec = self.specs[policy.name]
                    start = spec.start_of(event.event_time_ms)
                    if start + policy.window_ms <= self.closed[policy.name]:
                        if replay:
                            self.counts["replayed"] += 1
                        else:
                            self.stream_counts[policy.name]["late"] += 1
                        continue
                    batches.setdefault((policy.name, start), []).append(
                        (pseudonym, event, offset)
                    )
        for (stream, start), rows in batches.items():
            self._add(stream, start, rows)
        return dead

    def _add(self, stream: str, start: int, rows: list) -> None:
        policy = next(p for p in self.policies if p.name == stream)
        keep = self.limiters[stream].admit([r[0] for r in rows], np.full(len(rows), start))
        counts = self.stream_counts[stream]
        counts["over_cap"] += int((~keep).sum())
        rows = [r for r, k in zip(rows, keep, strict=True) if k]
        if not rows:
            return
        window = self.open.get((stream, start))
        if window is None:
            window = self.open[(stream, start)] = _OpenWindow(policy, rows[0][2])
        window.first_offset = min(window.first_offset, min(r[2] for r in rows))
        accounts = np.empty(len(rows), np.int64)
        cells = np.empty(len(rows), np.int64)
        for i, (pseudonym, event, _) in enumerate(rows):
            accounts[i] = window.accounts.setdefault(pseudonym, len(window.accounts))
            label = tuple(str(getattr(event, d)) for d in policy.dimensions)
            cell = window.cells.get(label)
            if cell is None:
                cell = window.cells[label] = len(window.labels)
                window.labels.append(label)
            cells[i] = cell
        fields = {m.field for m in policy.metrics}
        window.table.add(accounts, cells, {
            f: np.array([getattr(r[1], f) for r in rows]) for f in fields
        })
        counts["included"] += len(rows)

    # ------------------------------------------------------------- close
    def close(self, *, now_ms: int, caught_up: bool = True) -> tuple[list[Partial], list[Mark]]:
        """Close every window the watermark has passed: its partials, then fresh marks.

        ``caught_up``: whether the partition has read all its input (see Watermark).
        """
        wm = self.watermark.value(now_ms, caught_up=caught_up)
        partials: list[Partial] = []
        for policy in self.policies:
            upto = self.specs[policy.name].closed_up_to(wm)
            if upto <= self.closed[policy.name]:
                continue
            for key in sorted(k for k in self.open if k[0] == policy.name):
                if key[1] + policy.window_ms > upto:
                    continue
                window = self.open.pop(key)
                totals = acc.add(acc.initialize(policy), window.table.bounded_rows(self.rng))
                partials += partials_of(totals, window.labels, partition=self.partition,
                                        stream=policy.name, window_start_ms=key[1])
            self.closed[policy.name] = upto
            if upto // policy.participation.period_ms > 0:
                self.limiters[policy.name].forget_before(upto // policy.participation.period_ms - 1)
        marks = [Mark(self.partition, p.name, self.closed[p.name]) for p in self.policies]
        return partials, marks

    def commit_offset(self) -> int:
        """Raw offset to commit: the first message of the oldest open window, if any."""
        firsts = [w.first_offset for w in self.open.values()]
        return min([*firsts, self.next_offset])

    def progress(self) -> dict:
        return {"closed": dict(self.closed), "next_offset": self.next_offset}
