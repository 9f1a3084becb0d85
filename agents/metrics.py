"""The worker's own health as Prometheus metrics (no identifiers, nothing exact).

Served on ``--metrics-port`` at /metrics. Only what may leave the trusted zone
(``WorkerStats.public``): released windows and cells and fault counters, each a
counter (``_total``: they only grow while the process runs and start again from 0
when it restarts, which ``rate()`` and ``increase()`` handle as a counter reset);
and the privacy budget spent per account, per stream and horizon, composed from
the ledger exactly as ``privmon budget`` composes it (gauges
``privmon_epsilon_spent`` and ``privmon_delta_spent``, labels ``stream`` (or
``all`` for the caps over every stream) and ``horizon_seconds``): the ledger as
this worker saw it at its last rebuild plus its own releases since, so with
several workers each may lag the ledger (``privmon budget`` reads it whole).
 Input-side counts (messages, dead letters, lag) are exact functions
of the raw data and stay in the trusted status file
(tests/privacy/test_exact_channels.py). ``promtool check metrics`` is clean on this
endpoint (tests/integration/test_prometheus.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from privmon.agents.stats import WorkerStats
from privmon.privacy.accountant import Accountant, LedgerEntry
from privmon.privacy.params import HorizonCap, StreamPolicy

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


class BudgetSpent(Collector):
    """Per stream and horizon, the guarantee the ledger's releases compose to in the
    aligned horizon containing now (``Accountant.spent``, as ``privmon budget``)."""

    def __init__(self, policies: Sequence[StreamPolicy], global_caps: Sequence[HorizonCap] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.policies = tuple(policies)
        self.global_caps = tuple(global_caps)
        self.clock = clock  # seconds
        self.entries: dict[tuple[str, int, int], LedgerEntry] = {}

    def add(self, entries: Iterable[LedgerEntry]) -> None:
        """Ledger entries read back or written (a re-written one replaces itself)."""
        for e in entries:
            self.entries[(e.stream, e.window_start_ms, e.partials_partition)] = e

    def collect(self) -> Iterable[GaugeMetricFamily]:
        acc = Accountant.from_entries(self.policies, list(self.entries.values()))
        now_ms = int(self.clock() * 1000)
        eps = GaugeMetricFamily("privmon_epsilon_spent", "epsilon spent per account in the "
                                "current aligned horizon (as privmon budget)",
                                labels=["stream", "horizon_seconds"])
        delta = GaugeMetricFamily("privmon_delta_spent", "delta spent per account in the "
                                  "current aligned horizon (as privmon budget)",
                                  labels=["stream", "horizon_seconds"])
        caps = [(p.name, cap) for p in self.policies for cap in p.horizon_caps]
        caps += [(None, cap) for cap in self.global_caps]
        for stream, cap in caps:
            spent = acc.spent(cap, now_ms=now_ms, stream=stream)
            labels = [stream or "all", f"{cap.horizon_ms // 1000}"]
            eps.add_metric(labels, spent.epsilon)
            delta.add_metric(labels, spent.delta)
        yield eps
        yield delta


class WorkerMetrics:
    def __init__(self, policies: Sequence[StreamPolicy],
                 global_caps: Sequence[HorizonCap] = ()) -> None:
        self.registry = CollectorRegistry()
        self._counters = _PublicCounters()
        self.registry.register(self._counters)
        self.ledger = BudgetSpent(policies, global_caps)
        self.registry.register(self.ledger)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)

    def update(self, stats: WorkerStats) -> None:
        """Export ``stats`` (read again at every scrape)."""
        self._counters.stats = stats
