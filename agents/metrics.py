"""The worker's own health as Prometheus metrics (no identifiers, ever).

Served on ``--metrics-port`` at /metrics. Labels are only stream names and
partition numbers; values are counts, so nothing here can name an account.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from agents.worker import WorkerStats


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.totals = {
            name: Gauge(f"privmon_{name}_total", help_, registry=r)
            for name, help_ in (
                ("messages", "raw messages read by stage 1 (this run)"),
                ("accepted", "events accepted by stage 1"),
                ("dead_lettered", "events and messages sent to the dead-letter topic"),
                ("late", "event x stream pairs dropped as late"),
                ("over_cap", "event x stream pairs dropped by the participation cap"),
                ("windows_released", "(stream, window, partials partition) releases"),
                ("cells_released", "cells published"),
            )
        }
        self.faults = {
            name: Gauge(f"privmon_{name}", help_, registry=r)
            for name, help_ in (
                ("batches_isolated", "stage-1 batches that raised and were replayed message "
                 "by message (agents/isolation.py)"),
                ("windows_failed", "stage-2 windows whose release raised: quarantined, marked "
                 "failed in the ledger"),
                ("closes_failed", "stage-1 window closes that raised (stage 2 quarantines "
                 "the window)"),
                ("partials_undecodable", "partials-topic records stage 2 could not read"),
            )
        }
        self.dead_letters = Gauge("privmon_dead_letters", "dead letters by reason (this run)",
                                  ["reason"], registry=r)
        self.windows_open = Gauge("privmon_windows_open", "open (stream, window) states",
                                  registry=r)
        self.lag = Gauge("privmon_raw_lag_messages", "raw messages not yet read", ["partition"],
                         registry=r)
        self.epsilon = Counter("privmon_epsilon_spent", "per-window epsilon of released windows",
                               ["stream"], registry=r)

    def serve(self, port: int) -> None:
        start_http_server(port, addr="127.0.0.1", registry=self.registry)

    def update(self, stats: WorkerStats, lag: dict[int, int]) -> None:
        for name, gauge in self.totals.items():
            gauge.set(getattr(stats, name))
        for name, gauge in self.faults.items():
            gauge.set(getattr(stats, name))
        for reason, n in stats.dead_letter_reasons.items():
            self.dead_letters.labels(reason=reason).set(n)
        self.windows_open.set(stats.windows_open)
        for partition, value in lag.items():
            self.lag.labels(partition=str(partition)).set(value)
