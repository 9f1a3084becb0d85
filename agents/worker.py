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
  Noise is drawn in a thread (``agents/stage2_runner.py``), never on the event loop.
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
from collections.abc import Callable
from pathlib import Path

from privmon.agents.crashguard import CrashGuard
from privmon.agents.partials_cleanup import delete_released_partials
from privmon.agents.stage1_runner import Stage1Runner
from privmon.agents.stage2_runner import Stage2Runner
from privmon.agents.stats import WorkerStats
from privmon.agents.worker_context import WorkerContext, now_ms
from privmon.privacy.accountant import LedgerEntry
from privmon.privacy.noise_keys import NoiseKeys
from privmon.streams.config import PipelineConfig
from privmon.streams.kafka_client import KafkaOptions
from privmon.streams.pseudonym import Pseudonymizer
from privmon.streams.topics import ensure_topics

BOTH_STAGES = frozenset({1, 2})


class Worker:
    """The stages of one worker (agents/stage1_runner.py, agents/stage2_runner.py;
    both, or one of them), and with stage 2 the deletion of released partials;
    ``run`` gathers them and nothing else."""

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
        kafka_options: KafkaOptions | None = None,
        crash_file: Path | None = None,
        stages: frozenset[int] = BOTH_STAGES,
    ) -> None:
        """``crash_file``: where the crash guard notes the messages in flight
        (agents/crashguard.py); None: no guard. ``stages``: which stages this process
        runs ({1, 2}; {1} and {2} in two processes give stage 2's release a core of its
        own, the same worker id in both: each stage has its own group membership and
        transactional id)."""
        if not stages or not stages <= BOTH_STAGES:
            raise ValueError(f"stages: expected a non-empty subset of {{1, 2}}, got "
                             f"{sorted(stages)}")
        self.stages = stages
        self.config = config
        self.partitions = partitions  # of the topics this worker creates
        self.stats = WorkerStats()
        self.on_ledger: Callable[[list[LedgerEntry]], None] | None = None  # (metrics)
        self._ctx = WorkerContext(
            config=config, bootstrap=bootstrap, worker_id=worker_id,
            pseudonymizer=pseudonymizer, noise_keys=noise_keys, topic_partitions={},
            idle_lag_ms=idle_lag_ms, close_interval_s=close_interval_s, clock=clock,
            kafka_options=dict(kafka_options or {}), stats=self.stats,
            crash_guard=CrashGuard(crash_file),
        )
        self._stage1: Stage1Runner | None = None

    @property
    def lag(self) -> dict[int, int]:
        """Raw partition -> messages not yet read (trusted zone: exact data)."""
        return self._stage1.lag if self._stage1 is not None else {}

    async def run(self, stop: asyncio.Event) -> None:
        ctx = self._ctx
        ctx.on_ledger = self.on_ledger
        ctx.crash_guard.load(ctx.quarantine)
        ctx.topic_partitions = await asyncio.to_thread(
            ensure_topics, ctx.bootstrap, self.config, partitions=self.partitions,
            options=ctx.kafka_options,
        )
        tasks = []
        if 1 in self.stages:
            self._stage1 = Stage1Runner(ctx)
            tasks.append(self._stage1.run(stop))
        if 2 in self.stages:
            stage2 = Stage2Runner(ctx, sources=ctx.topic_partitions[self.config.topics.raw])
            tasks.append(stage2.run(stop))
            keep = self.config.retention
            if keep.delete_released_partials:
                tasks.append(delete_released_partials(ctx.bootstrap, ctx.kafka_options,
                                                      stage2.done, stop,
                                                      every_s=keep.delete_every_s))
        await asyncio.gather(*tasks)
