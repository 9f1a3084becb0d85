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
                ("cells_suppressed", "cells held back (under k or by DP selection)"),
            )
        }
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
        self.windows_open.set(stats.windows_open)
        for partition, value in lag.items():
            self.lag.labels(partition=str(partition)).set(value)
