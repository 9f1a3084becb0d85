"""The alert agent: released aggregates in, noise-aware alerts out.

  # aggregates.<stream> (read_committed) -> records grouped per (stream, window)
  #   -> window whole (its completion records are in) -> Evaluator (rules.py)
  #   -> alerts topic (privmon.alert/1, key rule|window|cell; privmon.alert-resolved/1
  #      once a firing rule stops holding)
  #      + optional webhook and Alertmanager (v2 API)
  # and on the side: the latest value per cell as Prometheus gauges

A window's records come from one transaction per partials partition; each ends
with a completion record on every partition of the topic (privacy/records.py),
and the agent evaluates a window once it has all of them: nothing is guessed
from a quiet period.

Start-up: the agent re-reads the aggregate topics from ``history_ms`` back
(enough for drop rules' baselines) and only remembers windows that were
released before ``start - backlog_ms``, by the records' Kafka
timestamps; windows released later are evaluated. Delivery is at
least once: after a restart, windows in the backlog may fire again with the
same key (Alertmanager de-duplicates by labels; topic readers by key).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from privmon.agents.alerts.exporter import AlertMetrics, LatestReleases
from privmon.agents.alerts.records import Alert, Resolution
from privmon.agents.alerts.rules import AlertConfig, Evaluator
from privmon.agents.alerts.sinks import HttpSink
from privmon.agents.releases import WindowAssembler, topic_partitions
from privmon.privacy.records import ReleaseRecord, decode_aggregate
from privmon.streams.config import PipelineConfig
from privmon.streams.topics import create_missing

log = logging.getLogger("privmon.alerts")


def now_ms() -> int:
    return int(time.time() * 1000)


class AlertAgent:
    def __init__(self, *, pipeline: PipelineConfig, alerts: AlertConfig, bootstrap: str,
                 sinks: Sequence[HttpSink] = (), export_streams: Sequence[str] = (),
                 kafka_options: dict[str, Any] | None = None,
                 backlog_ms: int = 0, partitions: int = 1,
                 clock: Callable[[], int] = now_ms) -> None:
        self.pipeline = pipeline
        self.alerts = alerts
        self.bootstrap = bootstrap
        self.sinks = list(sinks)
        self.kafka_options = dict(kafka_options or {})
        self.backlog_ms = backlog_ms
        self.partitions = partitions
        self.clock = clock
        self.evaluator = Evaluator(alerts, pipeline.policies)
        self.streams = list(dict.fromkeys([*alerts.streams, *export_streams]))
        self.latest = LatestReleases(pipeline.policies, self.streams)
        self.metrics = AlertMetrics(self.latest)
        self.fired: list[Alert] = []  # this run's alerts, newest last (for views/tests)
        self.resolutions: list[Resolution] = []  # and the rules that stopped holding
        self.on_alert: Callable[[Alert], None] | None = None
        self.windows_evaluated = 0
        # Set once the agent reads its topics: releases from then on can fire alerts.
        self.ready = asyncio.Event()

    @property
    def history_ms(self) -> int:
        keep = max(self.evaluator.keep_ms.values(), default=0)
        return keep + max(self.pipeline.policy(s).window_ms for s in self.streams)

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(create_missing, self.bootstrap,
                                {self.alerts.topic: (self.partitions, {})},
                                options=self.kafka_options)
        topics = [self.pipeline.topics.aggregate(s) for s in self.streams]
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                    isolation_level="read_committed", enable_auto_commit=False,
                                    metadata_max_age_ms=5000, **self.kafka_options)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True,
                                    acks="all", **self.kafka_options)
        await consumer.start()
        await producer.start()
        try:
            parts = await self._assign(consumer, topics, stop)
            start = self.clock()
            found = await consumer.offsets_for_times(dict.fromkeys(parts, start - self.history_ms))
            ends = await consumer.end_offsets(parts)
            for tp in parts:
                consumer.seek(tp, found[tp].offset if found[tp] is not None else ends[tp])
            self.ready.set()
            await self._loop(consumer, producer, stop, fire_from_ms=start - self.backlog_ms)
        finally:
            await consumer.stop()
            await producer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer, topics: list[str],
                      stop: asyncio.Event) -> list[TopicPartition]:
        """All partitions of the aggregate topics (waits until the worker created them)."""
        while True:
            found = await topic_partitions(self.bootstrap, topics, self.kafka_options)
            if all(found.values()):
                parts = [TopicPartition(t, p) for t, ps in found.items() for p in sorted(ps)]
                consumer.assign(parts)
                return parts
            missing = [t for t, ps in found.items() if not ps]
            log.info("waiting for topics %s (created by the worker)", missing)
            if stop.is_set():
                raise asyncio.CancelledError
            await asyncio.sleep(1)

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
                    stop: asyncio.Event, *, fire_from_ms: int) -> None:
        assembler = WindowAssembler(Counter(tp.topic for tp in consumer.assignment()))
        released_at: dict[tuple[str, int], int] = {}  # newest Kafka timestamp per window
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=300)
            for tp, msgs in batch.items():
                for msg in msgs:
                    try:
                        rec = decode_aggregate(msg.value)
                    except (ValueError, KeyError, TypeError) as exc:
                        log.warning("skipped a non-release record at offset %d: %s",
                                    msg.offset, exc)
                        continue
                    key = (rec.stream, rec.window_start_ms)
                    released_at[key] = max(released_at.get(key, 0), msg.timestamp)
                    if isinstance(rec, ReleaseRecord):
                        self.latest.update(rec)
                    window = assembler.add(tp.topic, tp.partition, rec)
                    if window is not None:
                        fire = released_at.pop(key) >= fire_from_ms
                        await self._window(producer, key, window.records, fire=fire)

    async def _window(self, producer: AIOKafkaProducer, key: tuple[str, int],
                      records: list[ReleaseRecord], *, fire: bool) -> None:
        stream, start = key
        if not fire:
            self.evaluator.remember(stream, start, records)
            return
        alerts = self.evaluator.evaluate(stream, start, records)
        resolved = self.evaluator.resolved
        if alerts or resolved:
            await self._publish(producer, alerts, resolved)
        self.windows_evaluated += 1  # (after delivery: a reader of it sees the sinks' state)

    async def _publish(self, producer: AIOKafkaProducer, alerts: list[Alert],
                       resolved: list[Resolution]) -> None:
        """To the alerts topic, then to every sink."""
        for a in alerts:
            await producer.send(self.alerts.topic, key=a.key.encode(),
                                value=json.dumps(a.to_dict()).encode())
            self.metrics.fired.labels(rule=a.rule).inc()
            self.fired.append(a)
            if self.on_alert is not None:
                self.on_alert(a)
            log.debug("ALERT %s", a.describe())  # (on_alert shows it: once, not twice)
        for r in resolved:
            await producer.send(self.alerts.topic, key=r.key.encode(),
                                value=json.dumps(r.to_dict()).encode())
            self.metrics.resolved.labels(rule=r.alert.rule).inc()
            self.resolutions.append(r)
            log.info("RESOLVED %s on %s from window %s", r.alert.rule,
                     ", ".join(f"{k}={v}" for k, v in r.alert.cell.items()), r.window_start_ms)
        await producer.flush()
        for sink in self.sinks:
            if not await sink.send(alerts, resolved):
                self.metrics.failed.labels(sink=sink.kind).inc(len(alerts) + len(resolved))
