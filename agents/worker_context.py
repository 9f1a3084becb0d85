"""What both stages of one worker share: settings, the topics' partition counts,
the counters, and the guards that remember bad messages across rebuilds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer

from privmon.agents.crashguard import CrashGuard
from privmon.agents.isolation import Quarantine
from privmon.agents.kafka_stage import Stage
from privmon.agents.ratelimit import RateLimitedLog
from privmon.agents.stats import WorkerStats
from privmon.privacy.accountant import LedgerEntry
from privmon.privacy.noise_keys import NoiseKeys
from privmon.streams.config import PipelineConfig
from privmon.streams.kafka_client import KafkaOptions
from privmon.streams.pseudonym import Pseudonymizer

log = logging.getLogger("privmon.worker")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(kw_only=True)
class WorkerContext:
    """One worker's settings and shared state (the runners hold a reference)."""

    config: PipelineConfig
    bootstrap: str
    worker_id: str
    pseudonymizer: Pseudonymizer
    noise_keys: NoiseKeys
    topic_partitions: Mapping[str, int]  # as ensure_topics found them
    idle_lag_ms: int = 5000
    close_interval_s: float = 0.1
    clock: Callable[[], int] = now_ms
    kafka_options: KafkaOptions = field(default_factory=dict)  # SASL/TLS settings, if any
    stats: WorkerStats = field(default_factory=WorkerStats)
    quarantine: Quarantine = field(default_factory=Quarantine)  # agents/isolation.py
    crash_guard: CrashGuard = field(default_factory=lambda: CrashGuard(None))
    dlq_log: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(log, every_s=10.0))
    # every ledger entry read back at a rebuild or written by a release (agents/metrics.py)
    on_ledger: Callable[[list[LedgerEntry]], None] | None = None

    def group(self, stage: str) -> str:
        return f"{self.config.app_id}-{'stage1' if stage == 's1' else 'stage2'}"

    def stage(self, name: str) -> Stage:
        """The transactional producer of stage ``name`` ("s1" or "s2")."""
        return Stage(name, bootstrap=self.bootstrap,
                     transactional_id=f"{self.config.app_id}-{name}-{self.worker_id}",
                     kafka_options=self.kafka_options)

    def consumer(self, name: str, **settings: object) -> AIOKafkaConsumer:
        """The group consumer of stage ``name``. Static group membership (KIP-345): a
        worker restarted under the same --worker-id takes its partitions back at once,
        instead of waiting for the coordinator to time out its killed predecessor
        (session.timeout.ms); the cost: a worker that stops for good keeps its
        partitions until that timeout."""
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group(name),
            enable_auto_commit=False, auto_offset_reset="earliest",
            client_id=f"{self.config.app_id}-{name}-{self.worker_id}",
            group_instance_id=f"{self.config.app_id}-{name}-{self.worker_id}",
            **settings, **self.kafka_options,
        )
