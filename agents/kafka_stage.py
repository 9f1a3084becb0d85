"""Kafka plumbing shared by both stages: the transactional producer of a stage, its
drive loop, rebalance handling, which errors are survivable, and computing a step's
next part while this one is sent (reading and sending: agents/kafka_io.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from privmon.agents.kafka_io import start_or_close
from privmon.streams.kafka_client import KafkaOptions
from privmon.streams.kafka_errors import refused
from privmon.streams.participation_state import MAX_RECORD_BYTES

log = logging.getLogger("privmon.worker")

# The stages' producers compress their batches (aiokafka's zstd, level 3, via cramjam).
# A 100k-cell window's release records are ~96 MB of JSON repeating the same keys and
# privacy block: ~14x smaller compressed (7 MB), ~0.15 s to compress against ~0.4 s to
# send it raw, and the broker (on the same 2 cores here) writes a fourteenth. On the
# 100k-cell latency load stage 2's release step went from 1.25 to 0.89 s p50 (1.87 to
# 1.07 s p99; bench/RESULTS.md). Every Kafka client reads zstd (Kafka >= 2.1); privmon's
# kafka-python readers need the zstandard package, its aiokafka ones cramjam (both
# declared in pyproject.toml).
COMPRESSION = "zstd"


# A healthy partition's fetches are answered at least every fetch_max_wait_ms (500 ms,
# aiokafka's default) even when it is empty; older than this, its highwater is stale.
FETCH_FRESH_MS = 2_000


def caught_up_now(*, position: int, highwater: int | None, last_fetch_ms: int | None,
                  now_ms: int) -> bool:
    """Whether a raw partition has read all its input, on fresh evidence only: a fetch
    answered without error within FETCH_FRESH_MS (``last_fetch_ms``, aiokafka's
    ``last_poll_timestamp``). While its leader is gone or its fetches fail, the last
    highwater is stale and events acknowledged before the failure may still be unread,
    so the partition's watermark must not advance by the wall clock (streams/windows.py):
    a failover is not idleness."""
    fresh = last_fetch_ms is not None and now_ms - last_fetch_ms <= FETCH_FRESH_MS
    return fresh and highwater is not None and position >= highwater


# aiokafka retries a transactional offset commit for as long as the group coordinator
# answers "not available" / "loading" / "unknown partition"; after a whole-cluster
# restart that was seen to last until the broker's transaction timeout (60 s) fenced the
# producer, again and again. A step that takes this long is given up like a lost broker:
# new producer, rebuild from committed state.
TXN_STEP_TIMEOUT_S = 20.0


T = TypeVar("T")
R = TypeVar("R")


async def computed_ahead(items: Sequence[T], compute: Callable[[T], R]
                         ) -> AsyncIterator[tuple[T, R, float, float]]:
    """Each item with ``compute(item)``, computed in a thread (never on the event
    loop), the next item's while the caller sends this one's: (item, result, seconds
    computing it, seconds waited for it). Iterate it under ``contextlib.aclosing``: a
    caller that raises then waits for the thread in flight (its result unread), so no
    computing outlives the step that started it."""
    def timed(item: T) -> tuple[R, float]:
        t = time.perf_counter()
        return compute(item), time.perf_counter() - t

    pending: asyncio.Task | None = None
    try:
        for i, item in enumerate(items):
            tw = time.perf_counter()
            if pending is None:
                pending = asyncio.create_task(asyncio.to_thread(timed, item))
            result, seconds = await pending
            waited = time.perf_counter() - tw
            pending = None
            if i + 1 < len(items):
                pending = asyncio.create_task(asyncio.to_thread(timed, items[i + 1]))
            yield item, result, seconds, waited
    finally:
        if pending is not None:
            await asyncio.gather(pending, return_exceptions=True)


async def bounded(step: Awaitable[None], what: str) -> None:
    """``step`` within TXN_STEP_TIMEOUT_S, else TimeoutError (which ``recoverable``)."""
    try:
        await asyncio.wait_for(step, timeout=TXN_STEP_TIMEOUT_S)
    except TimeoutError as exc:
        raise TimeoutError(f"{what} took over {TXN_STEP_TIMEOUT_S:g} s") from exc


def recoverable(exc: BaseException) -> bool:
    """Errors a stage survives by dropping its state and replaying from committed
    offsets: Kafka being away or moving leaders/coordinators, and being fenced (a
    coordinator failover or a transaction timeout bumps the producer's epoch; Kafka
    Streams, too, recreates its producer then). Not: refused access (a configuration
    problem). Fencing by another live process is told apart by ``FenceGuard``."""
    if refused(exc):
        return False
    return isinstance(exc, KafkaError | asyncio.TimeoutError | ConnectionError)


class FencedRepeatedly(RuntimeError):
    """Another process keeps taking this stage's transactional id."""


class FenceGuard:
    """Tells a one-off fence (failover, timeout) from two processes that share a
    transactional id: those fence each other on every recovery, so more than
    ``limit`` fences within ``period_s`` stop the worker with a message saying so."""

    def __init__(self, transactional_id: str, *, limit: int = 5, period_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.transactional_id = transactional_id
        self.limit, self.period_s, self.clock = limit, period_s, clock
        self._times: deque[float] = deque()

    def fenced(self) -> None:
        """Note one fence; raise FencedRepeatedly past the limit."""
        now = self.clock()
        self._times.append(now)
        while self._times and now - self._times[0] > self.period_s:
            self._times.popleft()
        if len(self._times) > self.limit:
            raise FencedRepeatedly(
                f"transactional id {self.transactional_id!r} was fenced "
                f"{len(self._times)} times in {self.period_s:.0f} s: another process "
                "uses it. Give every worker its own --worker-id.")


class _Flag(ConsumerRebalanceListener):
    """Marks the stage for a rebuild after any rebalance; aborts its open transaction."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Flag first: a step whose sends fail while this abort is in flight (aiokafka's
        # IllegalOperation, not a KafkaError) must see that a rebalance caused it.
        self.stage.rebuild = True
        await self.stage.abort()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.stage.rebuild = True


class Stage:
    """One stage's transactional producer and its state flags.

    After a Kafka error (a broker or the whole cluster gone, a transaction
    aborted by the coordinator) the stage drops its producer and in-memory
    state: a new producer with the same transactional id fences the old
    epoch, and the rebuild replays from the committed offsets, so recovery
    needs no special case beyond what a restart already does.
    """

    def __init__(self, name: str, *, bootstrap: str, transactional_id: str,
                 kafka_options: KafkaOptions) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.transactional_id = transactional_id  # e.g. "privmon-s1-<worker id>"
        self.kafka_options = dict(kafka_options)
        self.rebuild = True
        self.in_txn = False
        self.broken = False
        self._txn_lock = asyncio.Lock()
        # The end of the last transaction (its answers, offsets and commit), running while
        # the stage reads on: see finish_later.
        self._finishing: asyncio.Task | None = None
        self.fences = FenceGuard(transactional_id)
        self.producer = self._new_producer()

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            transactional_id=self.transactional_id,
            enable_idempotence=True, linger_ms=5, compression_type=COMPRESSION,
            **self.kafka_options,
            # participation-state records can be larger than Kafka's 1 MB default
            max_request_size=MAX_RECORD_BYTES + 64 * 1024,
            # One batch per partition and close, not one per 16 KB: aiokafka sends a
            # partition's batches one after another, each a round trip to the broker.
            max_batch_size=1 << 20,
        )

    def finish_later(self, end: Awaitable[None]) -> None:
        """Run ``end`` (the rest of the transaction: waiting for its answers, committing)
        while the stage goes on reading, instead of idling through the broker's round
        trips. Nothing else joins that transaction: ``begin`` (before any other send)
        and ``abort`` wait for it first, and ``check`` raises what it raised."""
        if self._finishing is not None:  # (a transaction is begun only after it settled)
            if asyncio.iscoroutine(end):
                end.close()  # (never to run)
            raise RuntimeError(f"stage {self.name}: finish_later while the last "
                               "transaction is still ending; begin() first")
        self._finishing = asyncio.ensure_future(end)

    async def settled(self) -> None:
        """Wait for the transaction ``finish_later`` is ending; raise what it raised."""
        task, self._finishing = self._finishing, None
        if task is not None:
            await task

    def check(self) -> None:
        """Raise what an ended ``finish_later`` raised (without waiting for one running)."""
        if self._finishing is not None and self._finishing.done():
            task, self._finishing = self._finishing, None
            task.result()

    async def fail(self, exc: BaseException) -> None:
        """Give up the current transaction and state after a Kafka error."""
        log.warning("stage %s: %s: %s; recovering from committed state", self.name,
                    type(exc).__name__, exc)
        task, self._finishing = self._finishing, None
        if task is not None:  # (its producer is stopped below: whatever it did is lost)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.in_txn = False
        self.broken = True
        self.rebuild = True
        try:
            await asyncio.wait_for(self.producer.stop(), timeout=10)
        except Exception:
            pass

    async def heal(self) -> None:
        """Start a fresh producer after ``fail`` (raises while Kafka is still away)."""
        producer = self._new_producer()
        await producer.start()
        self.producer, self.broken = producer, False

    # begin, commit and abort take a lock: a rebalance listener may abort while the
    # stage is between sends or committing, and two aborts of one transaction (or an
    # abort during a commit) are invalid transitions in aiokafka's transaction manager.
    async def begin(self) -> None:
        await self.settled()
        async with self._txn_lock:
            if not self.in_txn:
                await self.producer.begin_transaction()
                self.in_txn = True

    async def commit(self) -> None:
        async with self._txn_lock:
            if self.in_txn:
                await self.producer.commit_transaction()
                self.in_txn = False

    async def abort(self) -> None:
        # A transaction still ending ends first (a rebalance's abort, a stop: what it
        # commits is committed); what it raised is for the stage's recovery, not here.
        await asyncio.gather(self.settled(), return_exceptions=True)
        async with self._txn_lock:
            if self.in_txn:
                self.in_txn = False
                await self.producer.abort_transaction()


async def drive(stage: Stage, consumer: AIOKafkaConsumer, topic: str, stop: asyncio.Event,
                rebuild: Callable[[], Awaitable[None]],
                step: Callable[[dict], Awaitable[None]]) -> None:
    """Run one stage until ``stop``: rebuild after (re)assignment, then one ``step`` per
    fetched batch; Kafka errors it can survive send it through ``Stage.fail`` and a
    rebuild from committed state."""
    await stage.producer.start()
    await start_or_close(consumer)
    consumer.subscribe([topic], listener=watch_rebalances(stage))
    try:
        while not stop.is_set():
            try:
                if stage.broken:
                    await stage.heal()
                if stage.rebuild:
                    await rebuild()
                stage.check()
                await step(await consumer.getmany(timeout_ms=200))
                # A getmany served from aiokafka's buffer and a step that sent nothing
                # never suspend: yield once, so that its fetcher task can ask the broker
                # for the partitions just drained while this worker computes the next
                # batch, instead of only once every buffer is empty.
                await asyncio.sleep(0)
            except Exception as exc:
                # A rebalance during the step aborted its transaction (the listener set
                # rebuild): whatever the step's sends then raised, replay from committed
                # state like any other recoverable failure.
                if not (recoverable(exc) or stage.rebuild):
                    raise
                if isinstance(exc, ProducerFenced):
                    stage.fences.fenced()
                await stage.fail(exc)
                await asyncio.sleep(1.0)
    finally:
        try:
            await stage.abort()
        except Exception as exc:  # (do not hide what ended the loop)
            log.warning("stage %s: abort at stop failed: %s", stage.name, type(exc).__name__)
        await consumer.stop()
        await stage.producer.stop()


def watch_rebalances(stage: Stage) -> ConsumerRebalanceListener:
    """The listener that makes ``stage`` abort and rebuild after any rebalance."""
    return _Flag(stage)
