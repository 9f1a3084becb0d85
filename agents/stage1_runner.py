"""Stage 1 against Kafka: the raw-topic consumer, one Stage1Partition per assigned
raw partition, and the close transaction.

  # raw messages -> Stage1Partition.ingest (per partition) -> open windows
  #   -> Stage1Close: partials, marks, progress, cap state, raw offsets, one transaction
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from operator import attrgetter

from aiokafka import AIOKafkaProducer, TopicPartition

from privmon.agents.isolation import IsolationNeeded
from privmon.agents.kafka_io import all_sent, read_compacted, read_latest, send_topics
from privmon.agents.kafka_stage import bounded, caught_up_now, computed_ahead, drive
from privmon.agents.stage1 import Stage1Partition
from privmon.agents.worker_context import WorkerContext
from privmon.streams.listed import ListedCells
from privmon.streams.partials import Mark, route
from privmon.streams.participation_state import StateChunk
from privmon.streams.progress import Progress

log = logging.getLogger("privmon.worker")
_RECORD = attrgetter("offset", "key", "value")  # ConsumerRecord -> what ingest takes
# A close of some partitions waits for the others whose watermarks are this close to
# closing too (event time), for this long at most (wall clock): see _wait_for_others.
CLOSE_TOGETHER_MS = 500
CLOSE_WAIT_S = 0.3


@dataclass
class Stage1Counts:
    """Input-side counts (trusted zone only: exact functions of the raw data)."""

    messages: int = 0
    accepted: int = 0
    dead_lettered: int = 0
    late: int = 0
    over_cap: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # dead letters by reason

    @classmethod
    def of(cls, part: Stage1Partition) -> Stage1Counts:
        streams = part.stream_counts.values()
        return cls(messages=part.counts["messages"], accepted=part.counts["accepted"],
                   dead_lettered=part.counts["dead_lettered"],
                   late=sum(c["late"] for c in streams),
                   over_cap=sum(c["over_cap"] for c in streams), reasons=dict(part.reasons))

    def __add__(self, other: Stage1Counts) -> Stage1Counts:
        reasons = dict(self.reasons)
        for reason, n in other.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
        return Stage1Counts(self.messages + other.messages, self.accepted + other.accepted,
                            self.dead_lettered + other.dead_lettered, self.late + other.late,
                            self.over_cap + other.over_cap, reasons)


async def send_dead_letters(ctx: WorkerContext, producer: AIOKafkaProducer, tp: TopicPartition,
                            dead: list) -> None:
    """Each (offset, DeadLetter) of raw partition ``tp`` to the DLQ, same partition."""
    for offset, letter in dead:
        value = letter.to_dict(topic=tp.topic, partition=tp.partition, offset=offset)
        await producer.send(ctx.config.topics.dlq, value=json.dumps(value).encode(),
                            partition=tp.partition)
        # DEBUG only (off by default): that a message was bad, and where, is a fact
        # about the raw data; the DLQ (trusted zone) has it. Never the payload.
        ctx.dlq_log.log(logging.DEBUG, letter.reason, "dead letter: reason %s, raw partition "
                        "%d, offset %d, index %d", letter.reason, tp.partition, offset,
                        letter.index)


class Stage1Runner:
    """Owns stage 1's consumer, partitions, counters and transactional producer."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.stage = ctx.stage("s1")
        # Fetches as large as the bench's "limit" consumer takes (aiokafka's defaults, 1 MiB
        # a partition, leave the worker waiting on fetches between batches: ~4,000 single
        # events a partition per round trip); up to 8 MiB buffered per raw partition.
        self.consumer = ctx.consumer("s1", max_poll_records=5000,
                                     max_partition_fetch_bytes=8 << 20,
                                     fetch_max_bytes=64 << 20)
        self.parts: dict[int, Stage1Partition] = {}
        self.listed = ListedCells()  # public streams' cell order, for every partition here
        self.lag: dict[int, int] = {}  # raw partition -> messages not yet read
        self._retired = Stage1Counts()  # counts of dropped partition states
        self._counted: dict[int, int] = {}  # raw partition -> offsets counted up to
        self._last_close = 0.0
        self._waiting_since: float | None = None  # holding a close since (_wait_for_others)

    async def run(self, stop: asyncio.Event) -> None:
        await drive(self.stage, self.consumer, self.ctx.config.topics.raw, stop,
                    self.rebuild, self.step)

    async def step(self, batch: dict) -> None:
        now = self.ctx.clock()
        stats = self.ctx.stats
        for tp, records in batch.items():
            part = self.parts.get(tp.partition)
            if part is None:
                continue
            if not stats.first_read_s:
                stats.first_read_s = time.time()
            try:
                dead = part.ingest(list(map(_RECORD, records)), now_ms=now)
            except IsolationNeeded as failure:
                self._isolate(failure)
                return
            stats.last_ingest_s = time.time()
            if dead:
                await self.stage.begin()
                await send_dead_letters(self.ctx, self.stage.producer, tp, dead)
        if time.monotonic() - self._last_close >= self.ctx.close_interval_s and \
                not self.stage.rebuild:
            await self.close(now)
            self._last_close = time.monotonic()

    def _isolate(self, failure: IsolationNeeded) -> None:
        """A batch raised past stage 1's per-message guards: note which messages to
        retry alone or set aside, and rebuild from committed state (agents/isolation.py)."""
        self.ctx.quarantine.note(failure)
        self.ctx.stats.batches_isolated += 1
        what = "retrying them one by one" if failure.last > failure.first else (
            "dead-lettering it as internal_error")
        log.error("stage 1: processing %s raised %s; rebuilding from committed state and %s",
                  f"raw partition {failure.partition} offsets {failure.first}..{failure.last}",
                  failure.cause_type, what)
        self.stage.rebuild = True

    async def rebuild(self) -> None:
        """Drop the partitions' state and rebuild it from committed state: progress,
        participation-cap state and the committed raw offsets."""
        ctx, consumer = self.ctx, self.consumer
        await self.stage.abort()
        self.stage.rebuild = False
        # The assignment this rebuild is for, taken when the flag is cleared: one that
        # arrives during the reads below sets the flag again, and the rebuild after this
        # one is for it. None yet (a worker's first rebuild, before it joined the
        # group): nothing to read, and the assignment's own rebuild is the only one.
        owned = set(consumer.assignment())
        self._retire_counts()
        self.parts, self.lag = {}, {}
        if not owned:
            return
        topics = ctx.config.topics
        progress = await read_compacted(ctx.bootstrap, topics.progress,
                                        ctx.topic_partitions[topics.progress], ctx.kafka_options)
        assigned = sorted(tp.partition for tp in owned)
        state = await read_latest(ctx.bootstrap, topics.participation, assigned,
                                  ctx.kafka_options)
        for tp in owned & consumer.assignment():  # (what went meanwhile: rebuilt again)
            committed = await consumer.committed(tp)
            start = committed if committed is not None else 0
            consumer.seek(tp, start)
            ctx.quarantine.forget_below(tp.partition, start)
            ctx.crash_guard.forget_below(tp.partition, start)
            raw = progress.get(str(tp.partition).encode())
            self.parts[tp.partition] = Stage1Partition(
                partition=tp.partition, policies=ctx.config.policies,
                pseudonymizer=ctx.pseudonymizer, idle_lag_ms=ctx.idle_lag_ms,
                progress=Progress.decode(raw) if raw else None, start_offset=start,
                participation=[StateChunk.decode(v) for v in state[tp.partition].values()],
                count_from=self._counted.get(tp.partition, 0), quarantine=ctx.quarantine,
                inflight=ctx.crash_guard, listed=self.listed,
            )
        log.info("stage 1 assigned raw partitions %s", sorted(self.parts))

    async def _caught_up(self) -> dict[int, bool]:
        """Per raw partition: has it read all its input, on fresh evidence?"""
        out = {}
        wall_ms = int(time.time() * 1000)  # aiokafka's fetch timestamps are wall-clock ms
        for p in self.parts:
            tp = TopicPartition(self.ctx.config.topics.raw, p)
            high = self.consumer.highwater(tp)
            position = await self.consumer.position(tp)
            out[p] = caught_up_now(position=position, highwater=high,
                                   last_fetch_ms=self.consumer.last_poll_timestamp(tp),
                                   now_ms=wall_ms)
            self.lag[p] = max(0, (high or 0) - position)
        return out

    async def close(self, now: int) -> None:
        """Close every window that can close, in one transaction (only when one can:
        no transaction, and no marks, otherwise), after the partitions about to
        close the same windows, if they come soon (``_wait_for_others``)."""
        if not self.parts:
            return
        caught_up = await self._caught_up()
        due = {p for p, part in self.parts.items()
               if part.due(now_ms=now, caught_up=caught_up[p])}
        if due and not self._wait_for_others(due, now, caught_up):
            await Stage1Close(self, now, caught_up).run()
            self._waiting_since = None
        self.refresh_stats()

    def _wait_for_others(self, due: set[int], now: int, caught_up: dict[int, bool]) -> bool:
        """Whether to hold the close of the ``due`` partitions for others whose
        watermarks are within CLOSE_TOGETHER_MS of closing too, or that have not read
        their first input yet, for CLOSE_WAIT_S at most.

        Stage 2 releases a window once every partition closed it, so closing the first
        ones early gains nothing, and two closes back to back cost the second one's
        wait for the first's whole transaction (at 100k cells a window, ~0.6 s)."""
        soon = [p for p, part in self.parts.items() if p not in due and (part.due(
            now_ms=now, caught_up=caught_up[p], ahead_ms=CLOSE_TOGETHER_MS) or (
                # not read yet, with input waiting: its first batch moves its watermark
                # from nothing to its events' times (at start-up, the consumer hands
                # over one partition's records after another's, ~0.3 s apart)
                not caught_up[p] and part.watermark.max_event_ms == 0))]
        if not soon:
            return False
        t = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = t
        return t - self._waiting_since < CLOSE_WAIT_S

    def counts(self) -> Stage1Counts:
        total = Stage1Counts()
        for part in self.parts.values():
            total = total + Stage1Counts.of(part)
        return total

    def _retire_counts(self) -> None:
        """Keep the counts of partition states about to be dropped (rebalance, recovery):
        the stats are per process run, each raw message counted once."""
        self._retired = self._retired + self.counts()
        for p, part in self.parts.items():
            self._counted[p] = max(self._counted.get(p, 0), part.next_offset)

    def refresh_stats(self) -> None:
        c = self._retired + self.counts()
        s = self.ctx.stats
        s.messages, s.accepted, s.dead_lettered = c.messages, c.accepted, c.dead_lettered
        s.late, s.over_cap, s.dead_letter_reasons = c.late, c.over_cap, c.reasons
        s.windows_open = sum(len(p.open) for p in self.parts.values())


@dataclass
class _Closed:
    """One raw partition's part of a close: its records, ready to send."""

    out: list[tuple[bytes | None, bytes, int | None]]  # partials, then marks
    state: list[tuple[bytes, bytes | None, int]]  # cap state -> the state topic's p
    marks: list[Mark]
    windows: int  # closed windows with cells


def _closed(part: Stage1Partition, now: int, caught_up: bool, partitions: int) -> _Closed:
    """Close ``part``'s due windows and encode what the close sends (in a thread)."""
    partials, marks = part.close(now_ms=now, caught_up=caught_up)
    # each window's cells, by column, in one record per stage-2 partition (a public
    # stream's cells by the partition of their rank, worked out once per window and worker)
    policies = {p.name: p for p in part.policies}
    out = []
    for block, ranks in zip(partials, part.closed_ranks, strict=True):
        where = None if ranks is None else part.listed.partitions(
            policies[block.stream], block.window_start_ms, partitions)[ranks]
        out += route(block, partitions, where=where)
    out += [(None, mark.encode(), q) for mark in marks for q in range(partitions)]
    state = [(k, v, part.partition) for k, v in part.take_state()]
    return _Closed(out, state, marks, len(partials))


class Stage1Close:
    """One close transaction of stage 1, in numbered steps:

    1. begin the transaction;
    2. close each partition's due windows, in a thread (the next partition's while
       this one's records are sent): partials (by column, to each cell's stage-2
       partition), marks (to every partials partition), changed participation-cap
       state, the progress record;
    3. send them, each partition's as soon as it is computed, and wait for every
       acknowledgement together (one round trip's wait, not one per partition);
    4. add the raw offsets (held back to each partition's oldest open window);
    5. commit. A crash anywhere before 5 aborts all of it (worker.py's mechanism).

    3-5 run while the worker reads on (``Stage.finish_later``): they only wait for the
    broker. The stage's next transaction (a dead letter, the next close) begins after
    this one ended, and a failure in them recovers the stage like any other.
    """

    def __init__(self, runner: Stage1Runner, now: int, caught_up: dict[int, bool]) -> None:
        self.runner, self.now, self.caught_up = runner, now, caught_up

    async def run(self) -> None:
        r, ctx = self.runner, self.runner.ctx
        topics, producer = ctx.config.topics, r.stage.producer
        await r.stage.begin()  # 1
        # Marks go to every partials partition; the count is what ensure_topics found
        # (the stage-1 consumer is not subscribed to partials, so its metadata lacks it).
        partitions = ctx.topic_partitions[topics.partials]
        offsets = {}
        t0 = time.perf_counter()
        n_partials, computing = 0, 0.0
        closing = computed_ahead(list(r.parts.items()), lambda item: _closed(
            item[1], self.now, self.caught_up[item[0]], partitions))
        sends: list[asyncio.Future] = []
        try:
            async with aclosing(closing):
                async for (p, part), closed, seconds, _ in closing:  # 2
                    for mark in closed.marks:
                        for window_start, cause in mark.failed:
                            ctx.stats.closes_failed += 1
                            log.error("stage 1: closing %s window %d of raw partition %d "
                                      "raised %s; stage 2 quarantines the window",
                                      mark.stream, window_start, p, cause)
                    n_partials += closed.windows
                    computing += seconds
                    # 3: the partition's partials, cap state and progress (by key, as
                    # producer.send), sent while the next partition computes; the
                    # broker's answers are awaited together in _end (all_sent)
                    sends.append(asyncio.ensure_future(send_topics(producer, [
                        (topics.partials, closed.out, partitions),
                        (topics.participation, closed.state, 0),
                        (topics.progress, [(str(p).encode(), part.progress().encode(), None)],
                         ctx.topic_partitions[topics.progress])])))
                    offsets[TopicPartition(topics.raw, p)] = part.commit_offset()
        except BaseException:  # (every send answered before the transaction is aborted)
            await all_sent(sends)
            raise
        # 3-5 end while the next batches are read (Stage.finish_later): every record is
        # computed and handed to the producer, and the stage's next send waits for it.
        r.stage.finish_later(self._end(sends, offsets, t0, n_partials, computing))

    async def _end(self, sends: list[asyncio.Future], offsets: dict[TopicPartition, int],
                   t0: float, n_partials: int, computing: float) -> None:
        r, ctx = self.runner, self.runner.ctx
        await all_sent(sends)  # 3
        t1 = time.perf_counter()
        await bounded(r.stage.producer.send_offsets_to_transaction(offsets, ctx.group("s1")),
                      "sending the offsets to the transaction")  # 4
        await bounded(r.stage.commit(), "committing the transaction")  # 5
        if n_partials:  # (no counts: how many cells a window had is exact data)
            log.debug("stage 1 closed windows: %.3f s to compute and send, %.3f s to commit "
                      "(%.3f s computing)", t1 - t0, time.perf_counter() - t1, computing)
