"""The worker's own health as Prometheus metrics (no identifiers, nothing exact).

Served on ``--metrics-port`` at /metrics. Only what may leave the trusted zone
(``WorkerStats.public``): released windows and cells, epsilon spent, and fault
counters, each a counter (``_total``: they only grow while the process runs and
start again from 0 when it restarts, which ``rate()`` and ``increase()`` handle as a
counter reset). Input-side counts (messages, dead letters, lag) are exact functions
of the raw data and stay in the trusted status file
(tests/privacy/test_exact_channels.py). ``promtool check metrics`` is clean on this
endpoint (tests/integration/test_prometheus.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from privmon.agents.stats import WorkerStats

HELP = {
    "windows_released": "(stream, window, partials partition) releases, every window with "
                        "or without cells",
    "cells_released": "cells published",
    "batches_isolated": "stage-1 batches that raised and were replayed message by message "
                        "(agents/isolation.py)",
    "windows_failed": "stage-2 windows whose release raised: quarantined, marked failed in "
                      "the ledger",
    "closes_failed": "stage-1 window closes that raised (stage 2 quarantines the window)",
    "partials_undecodable": "partials-topic records stage 2 could not read",
}


class _PublicCounters(Collector):
    """The public counters of ``WorkerStats``, read at each scrape."""

    def __init__(self) -> None:
        self.stats: WorkerStats | None = None

    def collect(self) -> Iterable[CounterMetricFamily]:
        if self.stats is None:
            return
        for name, value in self.stats.public().items():
            yield CounterMetricFamily(f"privmon_{name}", HELP[name], value=value)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._counters = _PublicCounters()
        self.registry.register(self._counters)
        self.epsilon = Counter("privmon_epsilon_spent", "per-window epsilon of the windows this "
                               "process released, once per window (not per partition; summed, "
                               "not composed per account: privmon budget has that)",
                               ["stream"], registry=self.registry)

    def serve(self, port: int) -> None:
        start_http_server(port, addr="127.0.0.1", registry=self.registry)

    def update(self, stats: WorkerStats) -> None:
        """Export ``stats`` (read again at every scrape)."""
        self._counters.stats = stats
