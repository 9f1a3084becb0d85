"""The latest released values as Prometheus metrics, for Grafana and on-call.

Per stream S, one gauge family per quantity and statistic, named by the metric kind
(privacy/series.py: the unit last, in base units), labelled by the cell's
dimensions (released cells only; the values are already public):

  privmon_S_errors_ratio{server="fra-03", region="eu-central"}      (errors.rate)
  privmon_S_errors_noise_std_ratio{...}  privmon_S_errors_ci95_low_ratio{...}  ..._ci95_high_ratio
  privmon_S_latency_mean_seconds{...}                    (latency.mean of latency_ms, / 1000)
  privmon_S_latency_hist_quantile_seconds{q="0.95", ...}             (latency_hist.p95)
  privmon_S_events{...}  privmon_S_accounts{...}                     (noisy counts)
  privmon_S_window_end_seconds{server=..., region=...}

A cell disappears once its latest release is ``stale_windows`` windows behind the
stream's newest (e.g. it fell under k), or once that release's window ended more
than ``stale_windows`` windows + grace ago (releases stopped altogether), so a
dashboard never shows an old value as current.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from privmon.privacy.params import StreamPolicy
from privmon.privacy.records import ReleaseRecord
from privmon.privacy.series import STATS, cell_series

STAT_HELP = {"value": "released value, base unit", "noise_std": "std of its DP noise",
             "ci95_low": "lower end of its 95% noise interval",
             "ci95_high": "upper end of its 95% noise interval"}


def _metric_name(stream: str) -> str:
    return "privmon_" + re.sub(r"[^a-zA-Z0-9_]", "_", stream)


class LatestReleases(Collector):
    """Keeps the newest released record per (stream, cell) and exposes it."""

    def __init__(self, policies: Sequence[StreamPolicy], streams: Iterable[str],
                 stale_windows: int = 3,
                 clock: Callable[[], float] = time.time) -> None:
        by_name = {p.name: p for p in policies}
        self.policies = {s: by_name[s] for s in streams}
        self.stale_windows = stale_windows
        self.clock = clock  # seconds
        self.series = {s: {name: series for m in p.metrics
                           for name, series in m.series().items()}
                       for s, p in self.policies.items()}
        self.latest: dict[str, dict[tuple[str, ...], ReleaseRecord]] = {
            s: {} for s in self.policies}

    def update(self, record: ReleaseRecord) -> None:
        cells = self.latest.get(record.stream)
        if cells is None:
            return
        key = tuple(record.cell.values())
        old = cells.get(key)
        if old is None or old.window_start_ms <= record.window_start_ms:
            cells[key] = record

    def _current(self, stream: str) -> list[ReleaseRecord]:
        cells = self.latest[stream]
        if not cells:
            return []
        policy = self.policies[stream]
        newest = max(r.window_start_ms for r in cells.values())
        oldest_ok = newest - self.stale_windows * policy.window_ms
        ended_after_ms = (self.clock() * 1000 - self.stale_windows * policy.window_ms
                          - policy.grace_ms)
        for key in [k for k, r in cells.items()
                    if r.window_start_ms < oldest_ok or r.window_end_ms < ended_after_ms]:
            del cells[key]
        return list(cells.values())

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for stream, policy in self.policies.items():
            base = _metric_name(stream)
            dims = list(policy.dimensions)
            named = self.series[stream]
            families: dict[str, GaugeMetricFamily] = {}
            ends = GaugeMetricFamily(f"{base}_window_end_seconds",
                                     f"{stream}: end of the window of the latest release",
                                     labels=dims)
            for r in self._current(stream):
                cell = [r.cell.get(d, "") for d in dims]
                ends.add_metric(cell, r.window_end_ms / 1000)
                for name, v in r.metrics.items():
                    series = named.get(name) or cell_series(name)
                    if series is None:
                        continue  # a value of a policy version this process does not know
                    for stat in STATS:
                        family = f"{base}_{series.name(stat)}"
                        if family not in families:
                            families[family] = GaugeMetricFamily(
                                family, f"{stream}: {name} ({STAT_HELP[stat]})",
                                labels=[*(k for k, _ in series.labels), *dims])
                        families[family].add_metric([*(x for _, x in series.labels), *cell],
                                                    getattr(v, stat) * series.scale)
            yield from families.values()
            yield ends


class AlertMetrics:
    """The alert agent's registry: latest releases plus alert and delivery counters."""

    def __init__(self, latest: LatestReleases) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(latest)
        self.fired = Counter("privmon_alerts_fired", "alerts fired", ["rule"],
                             registry=self.registry)
        self.resolved = Counter("privmon_alerts_resolved", "fired rules that stopped holding",
                                ["rule"], registry=self.registry)
        self.failed = Counter("privmon_alert_deliveries_failed", "alerts a sink did not take "
                              "after retries", ["sink"], registry=self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
