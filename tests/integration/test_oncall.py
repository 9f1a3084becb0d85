"""The on-call stack for real: two alert agents post to a real Alertmanager and are
scraped by a real Prometheus (tests/oncall_programs.py). Alertmanager holds one alert
for the incident (both agents send the same labels), resolves it within one window of
the condition clearing, and Prometheus holds the released values, their noise and
interval exactly as the release records say, with the agents' counts as counters."""

from __future__ import annotations

import asyncio
import secrets
import time
import urllib.parse
import urllib.request

import pytest

from privmon.agents.alerts.agent import AlertAgent
from privmon.agents.alerts.rules import load_alert_config
from privmon.agents.alerts.sinks import HttpSink
from privmon.streams.config import load_config, with_prefix
from privmon.streams.localkafka.procs import free_port
from privmon.streams.topics import create_missing
from tests.downstream.synthetic import monitoring_window
from tests.integration.pipeline_harness import REPO, produce_releases
from tests.oncall_programs import (
    alertmanager,
    get_json,
    prometheus,
    promtool_check_metrics,
    version,
)

MINUTE = 60_000
RULE = "server_error_rate_high"


def _alerts(am: str) -> list[dict]:
    """Alertmanager's active alerts of the rule (resolved ones are not listed)."""
    query = urllib.parse.urlencode({"filter": f'alertname="{RULE}"'})
    return get_json(f"{am}/api/v2/alerts?{query}")


def _query(prom: str, expr: str) -> list[dict]:
    query = urllib.parse.urlencode({"query": expr})
    return get_json(f"{prom}/api/v1/query?{query}")["data"]["result"]


async def _until(check, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


async def test_alertmanager_and_prometheus_see_what_the_agents_saw(bootstrap, tmp_path,
                                                                    figures):
    p = f"oncall-{secrets.token_hex(3)}."
    pipeline = with_prefix(load_config(), p)
    rules = load_alert_config(REPO / "configs" / "alerts.toml", load_config()).with_prefix(p)
    topic = pipeline.topics.aggregate("monitoring")
    create_missing(bootstrap, {topic: (2, {})})
    ports = [free_port(), free_port()]
    with alertmanager(tmp_path / "alertmanager") as am, prometheus(
            tmp_path / "prometheus", {"privmon-alerts": [f"127.0.0.1:{x}" for x in ports]},
            rules=REPO / "configs" / "prometheus" / "privmon_rules.yml") as prom:
        agents = [AlertAgent(pipeline=pipeline, alerts=rules, bootstrap=bootstrap,
                             sinks=[HttpSink("alertmanager", am, hold_windows=3)],
                             export_streams=["monitoring"], backlog_ms=0) for _ in ports]
        for agent, port in zip(agents, ports, strict=True):
            agent.metrics.serve(port)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(a.run(stop)) for a in agents]
        try:
            await asyncio.wait_for(asyncio.gather(*(a.ready.wait() for a in agents)), 60)
            first = (int(time.time() * 1000) // MINUTE - 6) * MINUTE  # all ended, none stale
            # fra-03 fails in windows 2 and 3 (the rule needs 2 in a row: fires in 3),
            # then recovers in window 4.
            windows = [monitoring_window(first + i * MINUTE, incident=i in (2, 3),
                                         seed=300 + i) for i in range(5)]

            async def release(i: int) -> None:
                await asyncio.to_thread(produce_releases, bootstrap, topic, windows[i],
                                        partitions=2)
                await _until(lambda: all(a.windows_evaluated == i + 1 for a in agents),
                             timeout_s=30, what=f"both agents to evaluate window {i}")

            for i in range(4):
                await release(i)
            assert all([a.window_start_ms - first for a in ag.fired] == [3 * MINUTE]
                       for ag in agents)
            active = _alerts(am)
            # Both agents posted; Alertmanager holds one alert (same labels).
            assert len(active) == 1, active
            alert = active[0]
            assert alert["labels"] == {"alertname": RULE, "severity": "page",
                                       "stream": "monitoring", "source": "privmon",
                                       "server": "fra-03", "region": "eu-central"}
            assert alert["status"]["state"] == "active"
            assert "confidence 0.99" in alert["annotations"]["description"]
            assert all(a.sinks[0].delivered == 1 for a in agents)

            await release(4)  # fra-03 healthy again
            cleared = time.monotonic()
            assert all([r.window_start_ms - first for r in ag.resolutions] == [4 * MINUTE]
                       for ag in agents)
            await _until(lambda: _alerts(am) == [], timeout_s=5,
                         what="Alertmanager to resolve the alert")
            resolved_s = time.monotonic() - cleared

            # Prometheus: the latest released values, exactly as released.
            latest = {r.cell["server"]: r for r in windows[4]}
            v = latest["fra-03"].metrics["errors.rate"]
            cell = '{server="fra-03"}'
            await _until(lambda: len(_query(prom, f"privmon_monitoring_errors_ratio{cell}")) == 2
                         and all(float(s["value"][1]) == v.value for s in
                                 _query(prom, f"privmon_monitoring_errors_ratio{cell}")),
                         timeout_s=30, what="Prometheus to scrape the last window")
            for stat in ("value", "noise_std", "ci95_low", "ci95_high"):
                name = "errors_ratio" if stat == "value" else f"errors_{stat}_ratio"
                got = {float(s["value"][1]) for s in
                       _query(prom, f"privmon_monitoring_{name}{cell}")}
                assert got == {getattr(v, stat)}, stat
            # A quantity in milliseconds arrives in seconds (base units).
            ms = latest["fra-03"].metrics["latency.mean"].value
            got = _query(prom, f"privmon_monitoring_latency_mean_seconds{cell}")
            assert [float(s["value"][1]) for s in got] == [pytest.approx(ms / 1000, rel=1e-12)] * 2
            recording = 'privmon:monitoring_error_rate:value{server="fra-03"}'
            await _until(lambda: {float(s["value"][1]) for s in _query(prom, recording)}
                         == {v.value}, timeout_s=30, what="the shipped recording rule")
            kinds = get_json(f"{prom}/api/v1/metadata")["data"]
            # (OpenMetrics: a counter's family is named without _total)
            assert kinds["privmon_alerts_fired"][0]["type"] == "counter"
            assert kinds["privmon_alerts_resolved"][0]["type"] == "counter"
            assert kinds["privmon_monitoring_errors_ratio"][0]["type"] == "gauge"
            fired = _query(prom, f'privmon_alerts_fired_total{{rule="{RULE}"}}')
            assert sorted(float(s["value"][1]) for s in fired) == [1.0, 1.0]
            for port in ports:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as resp:
                    lint = promtool_check_metrics(resp.read().decode())
                assert lint.returncode == 0, lint.stdout + lint.stderr
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    figures(f"{version('prometheus-alertmanager')}; {version('prometheus')}: two agents, one "
            f"alert (fra-03), resolved {resolved_s:.1f} s after the clearing window was "
            "evaluated; Prometheus values, noise std, interval and the shipped recording "
            "rule equal the release records; promtool check metrics clean on both agents")
