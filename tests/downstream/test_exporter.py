"""The alert agent's exporter: latest released values, gone once stale by either rule."""

from __future__ import annotations

import pytest

from privmon.agents.alerts.exporter import LatestReleases
from privmon.streams.config import load_config
from tests.downstream.synthetic import monitoring_window

MINUTE = 60_000


def _servers(latest: LatestReleases) -> set[str]:
    return {s.labels["server"] for fam in latest.collect() for s in fam.samples
            if fam.name == "privmon_monitoring_window_end_seconds"}


def test_a_cell_disappears_when_releases_stop_not_only_when_later_windows_come():
    config = load_config()
    grace = config.policy("monitoring").grace_ms
    now = [0.0]
    latest = LatestReleases(config.policies, ["monitoring"], clock=lambda: now[0])
    start = 100 * MINUTE
    for r in monitoring_window(start, seed=3):
        latest.update(r)
    end_s = (start + MINUTE) / 1000
    now[0] = end_s + 3 * 60 + grace / 1000  # exactly 3 windows + grace after its end
    before = _servers(latest)
    assert "fra-03" in before and len(before) > 3
    now[0] += 0.001  # a moment later, with no newer window released
    assert _servers(latest) == set()


def test_a_cell_three_windows_behind_the_newest_disappears():
    config = load_config()
    latest = LatestReleases(config.policies, ["monitoring"], clock=lambda: 0.0)
    old = [r for r in monitoring_window(0, seed=4) if r.cell["server"] == "fra-03"]
    latest.update(old[0])
    for r in monitoring_window(3 * MINUTE, seed=5):
        if r.cell["server"] != "fra-03":
            latest.update(r)
    assert "fra-03" in _servers(latest)  # 3 windows behind: still shown
    for r in monitoring_window(4 * MINUTE, seed=6):
        if r.cell["server"] != "fra-03":
            latest.update(r)
    assert "fra-03" not in _servers(latest) and _servers(latest)


def test_every_stream_exports_promtool_clean_names_in_base_units():
    """All streams of both shipped configs: one name per quantity (no two released
    values share a name and labels), promtool-clean, milliseconds as seconds."""
    from prometheus_client import generate_latest

    from privmon.agents.alerts.exporter import AlertMetrics
    from privmon.streams.config import CONFIG_DIR
    from tests.oncall_programs import promtool_check_metrics

    for path in (CONFIG_DIR / "streams.toml", CONFIG_DIR / "demo.toml"):
        config = load_config(path)
        for policy in config.policies:
            seen = {}
            for metric in policy.metrics:
                for name, series in metric.series().items():
                    ident = (series.name(), series.labels)
                    assert ident not in seen, (policy.name, name, seen.get(ident))
                    seen[ident] = name
                    assert not series.name().endswith(("_ms", "_count", "_sum", "_total"))
    config = load_config()
    latest = LatestReleases(config.policies, ["monitoring"], clock=lambda: 0.0)
    for r in monitoring_window(0, seed=7):
        latest.update(r)
    scrape = generate_latest(AlertMetrics(latest).registry).decode()
    lint = promtool_check_metrics(scrape)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    r = next(r for r in monitoring_window(0, seed=7) if r.cell["server"] == "fra-03")
    line = next(ln for ln in scrape.splitlines() if ln.startswith(
        "privmon_monitoring_latency_mean_seconds{") and 'server="fra-03"' in ln)
    # (x * 1e-3 and x / 1000 may differ in the last bit)
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(r.metrics["latency.mean"].value / 1000,
                                                          rel=1e-12)
