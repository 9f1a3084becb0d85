"""The privmon worker: both stages against Kafka, each cell released exactly once.

Mechanism (why a (stream, window, cell) is published at most once, and why
nothing accepted is lost, even after SIGKILL at any instant):

- Stage 1 (group ``privmon-stage1`` on the raw topic) keeps open windows in
  memory and never commits a raw offset past the first message of a window
  it has not closed. Closing windows is one Kafka transaction: the partials,
  the marks, the partition's progress record (which windows are closed), its
  changed participation-cap state (which windows each account was admitted
  to, so the per-day cap survives restarts) and the raw offsets, together.
  A crash before the commit aborts all of it and the raw topic is re-read
  from the committed offset, rebuilding the open windows; a crash after it
  finds the progress record, which makes replayed events of closed windows
  be skipped, and the cap state, which keeps each account's admitted windows.
  So partials of each (stream, window, stage-1 partition) become visible
  exactly once, with every accepted event of that partition in them or
  counted late.
- Stage 2 (group ``privmon-stage2`` on partials, read_committed) releases a
  window once every stage-1 partition marked it, in one transaction: the
  release records, a ledger record per (stream, window, partials partition)
  (every window, with cells there or not), and the partials offsets. A crash
  before the commit aborts the records (read_committed readers never see them)
  and the window is recomputed from the same partials, with the same keyed
  noise (privacy/noise_keys.py): a read_uncommitted reader who sees the
  aborted copy sees the same bytes. After the commit the ledger, reloaded at
  start, keeps re-read partials of released windows from counting again.
  Noise is drawn in a thread (``_compute_releases``), never on the event loop.
- Transactional ids are per worker and stage (``privmon-s1-<worker id>``), so
  a restarted worker fences its killed predecessor's open transaction.
Readers of aggregate topics should use isolation_level=read_committed.

Why aiokafka, not Faust agents (the design card asked for Faust): a window close
must be one Kafka transaction of partials, marks, progress, cap state and raw
offsets deliberately held back to the first message of the oldest open window.
Faust decides commit and transaction boundaries itself and hands an agent one
message at a time; its windowed tables expire by wall clock, and restored windows
never close (faust-streaming issues 193, 385, 250; exactly-once issues 517 and 177
are open). Measured here (bench/RESULTS.md, 2026-11-24, one run, 2 cores): a naive
Faust windowed-Table pipeline 2,718 events/s on single events and 5,609 in
envelopes; this worker 29,044 and 163,356; aiokafka + decode alone 241,415 and
676,923. Faust keeps its place downstream: analysts' Faust apps on aggregate topics
(the ``faust`` extra) and the benchmark's baselines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.crashguard import CrashGuard
from agents.isolation import IsolationNeeded, Quarantine
from agents.kafka_stage import (
    Stage,
    caught_up_now,
    read_compacted,
    read_latest,
    recoverable,
    send_many,
    watch_rebalances,
)
from agents.partials_cleanup import delete_released_partials
from agents.ratelimit import RateLimitedLog
from agents.stage1 import Stage1Partition
from agents.stage2 import Stage2Partition, WindowFailed, ledger_entry
from agents.stats import WorkerStats
from privacy.accountant import LedgerEntry
from privacy.noise_keys import NoiseKeys
from privacy.params import StreamPolicy
from privacy.release import WindowRelease
from streams.config import PipelineConfig
from streams.partials import decode as decode_partial
from streams.participation_state import StateChunk
from streams.pseudonym import Pseudonymizer
from streams.topics import ensure_topics

log = logging.getLogger("privmon.worker")


def now_ms() -> int:
    return int(time.time() * 1000)


Released = tuple[WindowRelease, list[tuple[bytes, bytes, None]]]


def _compute_releases(part: Stage2Partition, ready: list[tuple[str, int]]
                      ) -> list[tuple[str, int, Released | Exception]]:
    """Each ready window's release and encoded records, or what it raised: one call
    in a worker thread per step (most windows have no cells here)."""
    out: list[tuple[str, int, Released | Exception]] = []
    for stream, start in ready:
        policy = part.policies[stream]
        try:
            rel = part.release(stream, start,
                               lambda c, p=policy: dict(zip(p.dimensions, c, strict=True)))
            records = [("|".join(r.cell.values()).encode(), r.to_json(), None)
                       for r in rel.records]
            out.append((stream, start, (rel, records)))
        except Exception as exc:  # this window only: quarantined by the caller
            out.append((stream, start, exc))
    return out


class Worker:
    def __init__(
        self,
        *,
        config: PipelineConfig,
        bootstrap: str,
        worker_id: str,
        pseudonymizer: Pseudonymizer,
        noise_keys: NoiseKeys,
        partitions: int = 4,
        idle_lag_ms: int = 5000,
        close_interval_s: float = 0.1,
        clock: Callable[[], int] = now_ms,
        kafka_options: dict[str, str] | None = None,
        crash_file: Path | None = None,
    ) -> None:
        """``crash_file``: where the crash guard notes the messages in flight
        (agents/crashguard.py); None: no guard."""
        self.config = config
        self.bootstrap = bootstrap
        self.worker_id = worker_id
        self.pseudonymizer = pseudonymizer
        self.noise_keys = noise_keys
        self.partitions = partitions
        self.idle_lag_ms = idle_lag_ms
        self.close_interval_s = close_interval_s
        self.clock = clock
        self.kafka_options = dict(kafka_options or {})  # SASL settings, if any
        self.stats = WorkerStats()
        self.s1_parts: dict[int, Stage1Partition] = {}
        self.s2_parts: dict[int, Stage2Partition] = {}
        self.topic_partitions: dict[str, int] = {}
        self.lag: dict[int, int] = {}
        self._retired: dict[str, int] = {}  # stage-1 counts of dropped partition states
        self._retired_reasons: dict[str, int] = {}  # and their dead letters by reason
        self._counted: dict[int, int] = {}  # raw partition -> offsets counted up to
        self._partials_done: dict[TopicPartition, int] = {}  # committed by stage 2
        self.quarantine = Quarantine()  # messages that broke a batch (agents/isolation.py)
        self.crash_guard = CrashGuard(crash_file)  # ... or killed the process
        self._dlq_log = RateLimitedLog(log, every_s=10.0)
        self.on_release: Callable[[str, float], None] | None = None  # (stream, epsilon)
        self.stage1_group = f"{config.app_id}-stage1"
        self.stage2_group = f"{config.app_id}-stage2"

    def _instance(self, stage: str) -> str:
        """Static group membership (KIP-345): a worker restarted under the same
        --worker-id takes its partitions back at once, instead of waiting for the
        coordinator to time out its killed predecessor (session.timeout.ms). The
        cost: a worker that stops for good keeps its partitions until that timeout."""
        return f"{self.config.app_id}-{stage}-{self.worker_id}"

    def _stage(self, name: str) -> Stage:
        return Stage(name, bootstrap=self.bootstrap,
                     transactional_id=f"{self.config.app_id}-{name}-{self.worker_id}",
                     kafka_options=self.kafka_options)

    async def run(self, stop: asyncio.Event) -> None:
        self.crash_guard.load(self.quarantine)
        self.topic_partitions = await asyncio.to_thread(
            ensure_topics, self.bootstrap, self.config, partitions=self.partitions,
            options=self.kafka_options,
        )
        sources = self.topic_partitions[self.config.topics.raw]
        tasks = [self._stage1(stop), self._stage2(stop, sources)]
        keep = self.config.retention
        if keep.delete_released_partials:
            tasks.append(delete_released_partials(self.bootstrap, self.kafka_options,
                                                  self._partials_done, stop,
                                                  every_s=keep.delete_every_s))
        await asyncio.gather(*tasks)

    # ------------------------------------------------------------ both stages
    async def _drive(
        self, stage: Stage, consumer: AIOKafkaConsumer, topic: str, stop: asyncio.Event,
        rebuild: Callable[[], Awaitable[None]], step: Callable[[dict], Awaitable[None]],
    ) -> None:
        """Run one stage until ``stop``: rebuild after (re)assignment, then one
        ``step`` per fetched batch; Kafka errors it can survive send it through
        ``Stage.fail`` and a rebuild from committed state."""
        await stage.producer.start()
        await consumer.start()
        consumer.subscribe([topic], listener=watch_rebalances(stage))
        try:
            while not stop.is_set():
                try:
                    if stage.broken:
                        await stage.heal()
                    if stage.rebuild:
                        await rebuild()
                    await step(await consumer.getmany(timeout_ms=200))
                except Exception as exc:
                    if not recoverable(exc):
                        raise
                    await stage.fail(exc)
                    await asyncio.sleep(1.0)
        finally:
            await stage.abort()
            await consumer.stop()
            await stage.producer.stop()

    # ------------------------------------------------------------ stage 1
    async def _stage1(self, stop: asyncio.Event) -> None:
        topics = self.config.topics
        stage = self._stage("s1")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.stage1_group, enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=5000,
            client_id=f"{self.config.app_id}-s1-{self.worker_id}",
            group_instance_id=self._instance("s1"), **self.kafka_options,
        )
        last_close = 0.0

        async def step(batch: dict) -> None:
            nonlocal last_close
            now = self.clock()
            for tp, records in batch.items():
                part = self.s1_parts.get(tp.partition)
                if part is None:
                    continue
                try:
                    dead = part.ingest([(r.offset, r.key, r.value) for r in records],
                                       now_ms=now)
                except IsolationNeeded as failure:
                    self._isolate(stage, failure)
                    return
                if dead:
                    await stage.begin()
                    await self._send_dead_letters(stage, tp, dead)
            if time.monotonic() - last_close >= self.close_interval_s and not stage.rebuild:
                await self._close_stage1(consumer, stage, now)
                last_close = time.monotonic()

        await self._drive(stage, consumer, topics.raw, stop,
                          lambda: self._rebuild_stage1(consumer, stage), step)

    def _isolate(self, stage: Stage, failure: IsolationNeeded) -> None:
        """A batch raised past stage 1's per-message guards: note which messages to
        retry alone or set aside, and rebuild from committed state (agents/isolation.py)."""
        self.quarantine.note(failure)
        self.stats.batches_isolated += 1
        what = "retrying them one by one" if failure.last > failure.first else (
            "dead-lettering it as internal_error")
        log.error("stage 1: processing %s raised %s; rebuilding from committed state and %s",
                  f"raw partition {failure.partition} offsets {failure.first}..{failure.last}",
                  failure.cause_type, what)
        stage.rebuild = True

    async def _send_dead_letters(self, stage: Stage, tp: TopicPartition, dead: list) -> None:
        topics = self.config.topics
        for offset, letter in dead:
            value = letter.to_dict(topic=tp.topic, partition=tp.partition, offset=offset)
            await stage.producer.send(topics.dlq, value=json.dumps(value).encode(),
                                      partition=tp.partition)
            # DEBUG only (off by default): that a message was bad, and where, is a fact
            # about the raw data; the DLQ (trusted zone) has it. Never the payload.
            self._dlq_log.log(logging.DEBUG, letter.reason, "dead letter: reason %s, raw "
                              "partition %d, offset %d, index %d", letter.reason, tp.partition,
                              offset, letter.index)

    async def _rebuild_stage1(self, consumer: AIOKafkaConsumer, stage: Stage) -> None:
        await stage.abort()
        stage.rebuild = False
        topic = self.config.topics.progress
        progress = await read_compacted(self.bootstrap, topic, self.topic_partitions[topic],
                                        self.kafka_options)
        assigned = sorted(tp.partition for tp in consumer.assignment())
        state = await read_latest(self.bootstrap, self.config.topics.participation, assigned,
                                  self.kafka_options)
        self._retire_stage1_counts()
        self.s1_parts = {}
        self.lag = {}
        for tp in consumer.assignment():
            committed = await consumer.committed(tp)
            start = committed if committed is not None else 0
            consumer.seek(tp, start)
            self.quarantine.forget_below(tp.partition, start)
            self.crash_guard.forget_below(tp.partition, start)
            raw = progress.get(str(tp.partition).encode())
            self.s1_parts[tp.partition] = Stage1Partition(
                partition=tp.partition, policies=self.config.policies,
                pseudonymizer=self.pseudonymizer, idle_lag_ms=self.idle_lag_ms,
                progress=json.loads(raw) if raw else None, start_offset=start,
                participation=[StateChunk.decode(v) for v in state[tp.partition].values()],
                count_from=self._counted.get(tp.partition, 0), quarantine=self.quarantine,
                inflight=self.crash_guard,
            )
        log.info("stage 1 assigned raw partitions %s", sorted(self.s1_parts))

    async def _close_stage1(self, consumer: AIOKafkaConsumer, stage: Stage, now: int) -> None:
        topics = self.config.topics
        if not self.s1_parts:
            return
        # Only when a window can close: no transaction (and no marks) otherwise.
        caught_up = {}
        wall_ms = int(time.time() * 1000)  # aiokafka's fetch timestamps are wall-clock ms
        for p in self.s1_parts:
            tp = TopicPartition(topics.raw, p)
            high = consumer.highwater(tp)
            position = await consumer.position(tp)
            caught_up[p] = caught_up_now(position=position, highwater=high,
                                         last_fetch_ms=consumer.last_poll_timestamp(tp),
                                         now_ms=wall_ms)
            self.lag[p] = max(0, (high or 0) - position)
        if not any(part.due(now_ms=now, caught_up=caught_up[p])
                   for p, part in self.s1_parts.items()):
            self._refresh_stage1_stats()
            return
        await stage.begin()
        # Marks go to every partials partition; the count is what ensure_topics found
        # (the stage-1 consumer is not subscribed to partials, so its metadata lacks it).
        partials_partitions = range(self.topic_partitions[topics.partials])
        offsets = {}
        t0 = time.perf_counter()
        out: list[tuple[bytes | None, bytes, int | None]] = []
        state: list[tuple[bytes, bytes | None, int]] = []  # raw partition p -> state's p
        n_partials = 0
        for p, part in self.s1_parts.items():
            partials, marks = part.close(now_ms=now, caught_up=caught_up[p])
            for mark in marks:
                for window_start, cause in mark.failed:
                    self.stats.closes_failed += 1
                    log.error("stage 1: closing %s window %d of raw partition %d raised %s; "
                              "stage 2 quarantines the window", mark.stream, window_start, p,
                              cause)
            state += [(k, v, p) for k, v in part.take_state()]
            n_partials += len(partials)
            out += [(partial.key(), partial.encode(), None) for partial in partials]
            out += [(None, mark.encode(), q) for mark in marks for q in partials_partitions]
            await stage.producer.send(topics.progress, key=str(p).encode(),
                                      value=json.dumps(part.progress()).encode())
            offsets[TopicPartition(topics.raw, p)] = part.commit_offset()
        await asyncio.gather(
            send_many(stage.producer, topics.partials, out, len(partials_partitions)),
            send_many(stage.producer, topics.participation, state, 0))
        t1 = time.perf_counter()
        await stage.producer.send_offsets_to_transaction(offsets, self.stage1_group)
        await stage.commit()
        if n_partials:  # (no counts: how many cells a window had is exact data)
            log.debug("stage 1 closed windows: %.3f s to compute and send, %.3f s to commit",
                      t1 - t0, time.perf_counter() - t1)
        self._refresh_stage1_stats()

    def _stage1_counts(self) -> dict[str, int]:
        parts = self.s1_parts.values()
        return {
            "messages": sum(p.counts["messages"] for p in parts),
            "accepted": sum(p.counts["accepted"] for p in parts),
            "dead_lettered": sum(p.counts["dead_lettered"] for p in parts),
            "late": sum(c["late"] for p in parts for c in p.stream_counts.values()),
            "over_cap": sum(c["over_cap"] for p in parts for c in p.stream_counts.values()),
        }

    def _stage1_reasons(self) -> dict[str, int]:
        out = dict(self._retired_reasons)
        for part in self.s1_parts.values():
            for reason, n in part.reasons.items():
                out[reason] = out.get(reason, 0) + n
        return out

    def _retire_stage1_counts(self) -> None:
        """Keep the counts of partition states about to be dropped (rebalance, recovery):
        the stats are per process run, each raw message counted once."""
        self._retired_reasons = self._stage1_reasons()
        for k, v in self._stage1_counts().items():
            self._retired[k] = self._retired.get(k, 0) + v
        for p, part in self.s1_parts.items():
            self._counted[p] = max(self._counted.get(p, 0), part.next_offset)

    def _refresh_stage1_stats(self) -> None:
        s = self.stats
        for k, v in self._stage1_counts().items():
            setattr(s, k, self._retired.get(k, 0) + v)
        s.dead_letter_reasons = self._stage1_reasons()
        s.windows_open = sum(len(p.open) for p in self.s1_parts.values())

    # ------------------------------------------------------------ stage 2
    async def _stage2(self, stop: asyncio.Event, sources: int) -> None:
        topics = self.config.topics
        stage = self._stage("s2")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.stage2_group, enable_auto_commit=False,
            auto_offset_reset="earliest", isolation_level="read_committed",
            client_id=f"{self.config.app_id}-s2-{self.worker_id}",
            group_instance_id=self._instance("s2"), **self.kafka_options,
        )
        next_offsets: dict[int, int] = {}

        async def rebuild() -> None:
            nonlocal next_offsets
            next_offsets = await self._rebuild_stage2(consumer, stage, sources)

        async def step(batch: dict) -> None:
            for tp, records in batch.items():
                part = self.s2_parts.get(tp.partition)
                if part is None:
                    continue
                for r in records:
                    try:
                        part.on_record(r.offset, decode_partial(r.value))
                    except Exception as exc:  # an unreadable internal record: skip it, say so
                        self.stats.partials_undecodable += 1
                        self._dlq_log.warning("partials", "stage 2: partials partition %d "
                                              "offset %d unreadable (%s); skipped",
                                              tp.partition, r.offset, type(exc).__name__)
                next_offsets[tp.partition] = records[-1].offset + 1
            if not stage.rebuild:
                await self._release(stage, next_offsets)

        await self._drive(stage, consumer, topics.partials, stop, rebuild, step)

    async def _rebuild_stage2(
        self, consumer: AIOKafkaConsumer, stage: Stage, sources: int
    ) -> dict[int, int]:
        await stage.abort()
        stage.rebuild = False
        topic = self.config.topics.ledger
        ledger = await read_compacted(self.bootstrap, topic, self.topic_partitions[topic],
                                        self.kafka_options)
        released: dict[int, set[tuple[str, int]]] = {}
        for value in ledger.values():
            entry = LedgerEntry.from_json(value)
            released.setdefault(entry.partials_partition, set()).add(entry.key)
        self.s2_parts, next_offsets = {}, {}
        for tp in consumer.assignment():
            committed = await consumer.committed(tp)
            start = committed if committed is not None else 0
            consumer.seek(tp, start)
            next_offsets[tp.partition] = start
            self.s2_parts[tp.partition] = Stage2Partition(
                policies=self.config.policies, sources=sources, noise_keys=self.noise_keys,
                released=released.get(tp.partition, set()),
            )
        log.info("stage 2 assigned partials partitions %s", sorted(self.s2_parts))
        return next_offsets

    async def _quarantine_window(self, stage: Stage, policy: StreamPolicy, start: int, q: int,
                                 exc: Exception) -> None:
        """A window whose release raised: nothing of it is published; its ledger entry
        says it failed (and charges its cost, an upper bound), so it is never retried
        and later windows go on."""
        self.stats.windows_failed += 1
        cause = str(exc) if isinstance(exc, WindowFailed) else type(exc).__name__
        log.error("stage 2: releasing %s window %d (partials partition %d) failed (%s); "
                  "quarantined: nothing published, marked failed in the ledger",
                  policy.name, start, q, cause)
        entry = LedgerEntry.for_release(policy, window_start_ms=start, cells_released=0,
                                        partials_partition=q, failed=cause)
        await stage.producer.send(self.config.topics.ledger,
                                  key=f"{policy.name}|{start}|{q}".encode(),
                                  value=entry.to_json())

    async def _release(self, stage: Stage, next_offsets: dict[int, int]) -> None:
        topics = self.config.topics
        offsets = {}
        t0 = time.perf_counter()
        windows = 0
        for q, part in self.s2_parts.items():
            ready = part.releasable()
            if not ready:
                continue
            await stage.begin()
            # noise and encoding in a thread: never on the event loop
            for stream, start, outcome in await asyncio.to_thread(_compute_releases, part, ready):
                windows += 1
                policy = part.policies[stream]
                topic = topics.aggregate(stream)
                if isinstance(outcome, Exception):  # this window only: never retried
                    await self._quarantine_window(stage, policy, start, q, outcome)
                    continue
                rel, records = outcome
                await send_many(stage.producer, topic, records, self.topic_partitions[topic])
                entry = ledger_entry(policy, start, q, rel)
                await stage.producer.send(topics.ledger, key=f"{stream}|{start}|{q}".encode(),
                                          value=entry.to_json())
                # Once per window: every partials partition writes an entry for every
                # window, so partition 0's entries count each window exactly once.
                if self.on_release is not None and q == 0:
                    self.on_release(stream, entry.epsilon)
                self.stats.count_release(rel)
            tp = TopicPartition(topics.partials, q)
            offsets[tp] = part.commit_offset(next_offsets.get(q, 0))
        if offsets:
            t1 = time.perf_counter()
            await stage.producer.send_offsets_to_transaction(offsets, self.stage2_group)
            await stage.commit()
            self._partials_done.update(offsets)  # below these: released or ignored
            if windows:  # (debug: timings follow the data's size)
                log.debug("stage 2 released windows: %.3f s to compute and send, %.3f s to "
                          "commit", t1 - t0, time.perf_counter() - t1)
