"""The worker's own health as Prometheus metrics (no identifiers, nothing exact).

Served on ``--metrics-port`` at /metrics. Only what may leave the trusted zone
(``WorkerStats.public``): released windows and cells, epsilon spent, and fault
counters. Input-side counts (messages, dead letters, lag) are exact functions of
the raw data and stay in the trusted status file (tests/privacy/test_exact_channels.py).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from privmon.agents.stats import WorkerStats


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.totals = {
            name: Gauge(f"privmon_{name}_total", help_, registry=r)
            for name, help_ in (
                ("windows_released", "(stream, window, partials partition) releases, every "
                 "window with or without cells"),
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
        self.epsilon = Counter("privmon_epsilon_spent", "per-window epsilon of the windows this "
                               "process released, once per window (not per partition; summed, "
                               "not composed per account: privmon budget has that)",
                               ["stream"], registry=r)

    def serve(self, port: int) -> None:
        start_http_server(port, addr="127.0.0.1", registry=self.registry)

    def update(self, stats: WorkerStats) -> None:
        public = stats.public()
        for name, gauge in (*self.totals.items(), *self.faults.items()):
            gauge.set(public[name])
