"""Stage 2 against Kafka: the partials consumer (read_committed), one Stage2Partition
per assigned partials partition, and the release transaction.

  # partials and marks -> Stage2Partition.on_record -> windows every source marked
  #   -> Stage2Release: records, ledger entries, partials offsets, one transaction
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing

from aiokafka import TopicPartition

from privmon.agents.kafka_io import read_compacted, send_many
from privmon.agents.kafka_stage import bounded, computed_ahead, drive
from privmon.agents.stage2 import (
    Stage2Partition,
    WindowFailed,
    completion_record,
    ledger_entry,
)
from privmon.agents.worker_context import WorkerContext
from privmon.privacy.accountant import LedgerEntry
from privmon.privacy.params import StreamPolicy
from privmon.privacy.release import WindowRelease
from privmon.streams.listed import ListedCells
from privmon.streams.partials import decode as decode_partial

log = logging.getLogger("privmon.worker")

Released = tuple[WindowRelease, list[tuple[bytes, bytes, None]]]


def compute_releases(part: Stage2Partition, ready: list[tuple[str, int]]
                     ) -> list[tuple[str, int, Released | Exception]]:
    """Each ready window's release and encoded records, or what it raised: one call
    in a worker thread per step (most windows have no cells here)."""
    out: list[tuple[str, int, Released | Exception]] = []
    for stream, start in ready:
        try:
            rel = part.release(stream, start)
            records = [(key, value, None) for key, value in rel.encoded()]
            out.append((stream, start, (rel, records)))
        except Exception as exc:  # this window only: quarantined by the caller
            out.append((stream, start, exc))
    return out


def prepare_next(parts: list[Stage2Partition]) -> None:
    """Each partition's next public windows' noise, drawn ahead; a failure only means
    the release draws it itself (Stage2Partition.prepare_next)."""
    for part in parts:
        try:
            part.prepare_next()
        except Exception as exc:  # an optimisation: never a reason to stop releasing
            log.warning("stage 2: drawing the next window's noise ahead failed (%s); the "
                        "release draws it", type(exc).__name__)


class Stage2Runner:
    """Owns stage 2's consumer, partitions and transactional producer."""

    def __init__(self, ctx: WorkerContext, *, sources: int) -> None:
        self.ctx = ctx
        self.sources = sources  # raw partitions: each must mark a window before release
        self.stage = ctx.stage("s2")
        # A window's partials from all raw partitions in one fetch a partials partition
        # (aiokafka's default, 1 MiB, took 2-3 round trips at 100k cells a window: the
        # partitions' windows then came complete in different steps, released apart)
        self.consumer = ctx.consumer("s2", isolation_level="read_committed",
                                     max_partition_fetch_bytes=8 << 20,
                                     fetch_max_bytes=64 << 20)
        self.parts: dict[int, Stage2Partition] = {}
        self.next_offsets: dict[int, int] = {}
        self.done: dict[TopicPartition, int] = {}  # committed: released or ignored below
        self.unprepared: set[int] = set()  # partitions that released since drawing ahead

    async def run(self, stop: asyncio.Event) -> None:
        await drive(self.stage, self.consumer, self.ctx.config.topics.partials, stop,
                    self.rebuild, self.step)

    async def step(self, batch: dict) -> None:
        for tp, records in batch.items():
            part = self.parts.get(tp.partition)
            if part is None:
                continue
            for r in records:
                try:
                    part.on_record(r.offset, decode_partial(r.value))
                except Exception as exc:  # an unreadable internal record: skip it, say so
                    self.ctx.stats.partials_undecodable += 1
                    self.ctx.dlq_log.warning("partials", "stage 2: partials partition %d "
                                             "offset %d unreadable (%s); skipped",
                                             tp.partition, r.offset, type(exc).__name__)
            self.next_offsets[tp.partition] = records[-1].offset + 1
        if not self.stage.rebuild:
            await Stage2Release(self).run()

    async def rebuild(self) -> None:
        """Drop the partitions' state; reload which windows each partials partition
        released from the ledger, and seek to the committed partials offsets."""
        ctx = self.ctx
        await self.stage.abort()
        self.stage.rebuild = False
        # The assignment this rebuild is for (as in stage 1's rebuild): none yet, nothing
        # to read (but the ledger, for /metrics); one that arrives meanwhile sets the flag
        # again.
        owned = set(self.consumer.assignment())
        self.parts, self.next_offsets = {}, {}
        if not owned and ctx.on_ledger is None:
            return
        topic = ctx.config.topics.ledger
        ledger = await read_compacted(ctx.bootstrap, topic, ctx.topic_partitions[topic],
                                      ctx.kafka_options)
        released: dict[int, set[tuple[str, int]]] = {}
        entries = [LedgerEntry.from_json(value) for value in ledger.values()]
        for entry in entries:
            released.setdefault(entry.partials_partition, set()).add(entry.key)
        if ctx.on_ledger is not None:
            ctx.on_ledger(entries)
        listed = ListedCells()  # one for all the partitions here
        for tp in owned & self.consumer.assignment():  # (what went meanwhile: rebuilt again)
            committed = await self.consumer.committed(tp)
            start = committed if committed is not None else 0
            self.consumer.seek(tp, start)
            self.next_offsets[tp.partition] = start
            self.parts[tp.partition] = Stage2Partition(
                policies=ctx.config.policies, sources=self.sources, noise_keys=ctx.noise_keys,
                released=released.get(tp.partition, set()),
                partition=tp.partition,
                partitions=ctx.topic_partitions[ctx.config.topics.partials],
                listed=listed,
            )
        log.info("stage 2 assigned partials partitions %s", sorted(self.parts))


class Stage2Release:
    """One release transaction of stage 2, in numbered steps:

    1. per partials partition with ready windows: begin the transaction;
    2. compute the windows' releases in a thread (noise never runs on the event loop),
       the next partition's while this one's records are sent and acked;
    3. per window: its records, its completion record on every aggregate partition
       (privacy/records.py) and its ledger entry; if it raised, a failed ledger
       entry and the completion records only (quarantined, never retried); each
       window's records acked before the next are sent (a refusal raises at once:
       queued past a fencing, the next send found no transaction and was fatal);
    4. add the partials offsets of every partition stepped;
    5. commit. A crash before 5 aborts it; the recomputation draws the same noise.
    """

    def __init__(self, runner: Stage2Runner) -> None:
        self.runner = runner

    async def run(self) -> None:
        r, ctx = self.runner, self.runner.ctx
        topics, producer = ctx.config.topics, r.stage.producer
        offsets = {}
        t0 = time.perf_counter()
        windows, computing, waited = 0, 0.0, 0.0
        ledger: list[tuple[bytes | None, bytes, int | None]] = []  # entries, sent last
        steps = [(q, part, ready) for q, part in r.parts.items() if (ready := part.releasable())]
        releasing = computed_ahead(steps, lambda step: compute_releases(step[1], step[2]))
        async with aclosing(releasing):
            async for (q, part, _), computed, seconds, wait in releasing:  # 2
                await r.stage.begin()  # 1
                computing, waited = computing + seconds, waited + wait
                windows += await self._publish(q, part, computed, ledger)  # 3
                tp = TopicPartition(topics.partials, q)
                offsets[tp] = part.commit_offset(r.next_offsets.get(q, 0))  # 4
        if ledger:  # (acked, like every send before: see _publish)
            await send_many(producer, topics.ledger, ledger,
                            ctx.topic_partitions[topics.ledger])
        if offsets:
            t1 = time.perf_counter()
            await bounded(producer.send_offsets_to_transaction(offsets, ctx.group("s2")),
                          "sending the offsets to the transaction")
            await bounded(r.stage.commit(), "committing the transaction")  # 5
            r.done.update(offsets)  # below these: released or ignored
            if windows:  # (debug: timings follow the data's size)
                log.debug("stage 2 released windows: %.3f s to compute and send, %.3f s to "
                          "commit (%.3f s computing, %.3f s waited for)", t1 - t0,
                          time.perf_counter() - t1, computing, waited)
        # The next windows' noise, off the path of any release: in a step that released
        # nothing. (After a step that released some partitions' window, the others' part
        # of it is often in the next fetch; drawing first delayed it by ~0.3 s at 100k
        # cells.)
        if windows:
            r.unprepared.update(q for q in r.parts
                                if TopicPartition(topics.partials, q) in offsets)
        elif r.unprepared:
            parts = [r.parts[q] for q in sorted(r.unprepared) if q in r.parts]
            r.unprepared.clear()
            await asyncio.to_thread(prepare_next, parts)

    async def _publish(self, q: int, part: Stage2Partition,
                       computed: list[tuple[str, int, Released | Exception]],
                       ledger: list[tuple[bytes | None, bytes, int | None]]) -> int:
        """Step 3 for partials partition q: each window's records and completion
        records, acked before anything else is sent (past a fencing, a send finds no
        transaction: IllegalOperation, not the recoverable ProducerFenced); its ledger
        entry (a failed one: quarantined) added to ``ledger``. Returns the windows."""
        ctx = self.runner.ctx
        topics, producer = ctx.config.topics, self.runner.stage.producer
        windows = 0
        for stream, start, outcome in computed:
            windows += 1
            policy = part.policies[stream]
            topic = topics.aggregate(stream)
            done = self._completion(policy, start, q, ctx.topic_partitions[topic])
            if isinstance(outcome, Exception):  # this window only, never retried
                ledger.append(self._quarantine(policy, start, q, outcome))
                await send_many(producer, topic, done, ctx.topic_partitions[topic])
                continue
            rel, records = outcome
            # the records, then on every partition the completion record after them
            await send_many(producer, topic, records + done, ctx.topic_partitions[topic])
            entry = ledger_entry(policy, start, q, rel)
            ledger.append((f"{stream}|{start}|{q}".encode(), entry.to_json(), None))
            if ctx.on_ledger is not None:
                ctx.on_ledger([entry])
            ctx.stats.count_release(rel)
        return windows

    def _completion(self, policy: StreamPolicy, start: int, q: int, aggregate_partitions: int
                    ) -> list[tuple[bytes | None, bytes, int | None]]:
        """Partials partition q's completion record of a window, for every partition."""
        ctx = self.runner.ctx
        value = completion_record(policy, start, q,
                                  ctx.topic_partitions[ctx.config.topics.partials]).to_json()
        return [(None, value, a) for a in range(aggregate_partitions)]

    def _quarantine(self, policy: StreamPolicy, start: int, q: int,
                    exc: Exception) -> tuple[bytes, bytes, None]:
        """A window whose release raised: nothing of it is published; its ledger entry
        (returned, to send) says it failed (and charges its cost, an upper bound), so it
        is never retried and later windows go on."""
        ctx = self.runner.ctx
        ctx.stats.windows_failed += 1
        cause = str(exc) if isinstance(exc, WindowFailed) else type(exc).__name__
        log.error("stage 2: releasing %s window %d (partials partition %d) failed (%s); "
                  "quarantined: nothing published, marked failed in the ledger",
                  policy.name, start, q, cause)
        entry = LedgerEntry.for_release(policy, window_start_ms=start, cells_released=0,
                                        partials_partition=q, failed=cause)
        return f"{policy.name}|{start}|{q}".encode(), entry.to_json(), None
