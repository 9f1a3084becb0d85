"""Downstream tools against the real broker: subscribe, export, the pandas API, the
capacity report, the budget report, and the alert agent with a local HTTP receiver
(webhook + Alertmanager v2) and a real Prometheus scrape.

Release records come from the real release path with known truths
(tests/downstream/synthetic.py) and are produced to uniquely prefixed topics;
the pipeline itself is exercised by test_pipeline.py and test_demo.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from privmon.agents.alerts.agent import AlertAgent
from privmon.agents.alerts.rules import load_alert_config
from privmon.agents.alerts.sinks import HttpSink
from privmon.agents.releases import releases
from privmon.privacy.accountant import LedgerEntry, compose, window_cost
from privmon.streams.config import load_config, with_prefix
from privmon.streams.localkafka.procs import free_port
from privmon.streams.topics import create_missing
from tests.downstream.synthetic import capacity_days, monitoring_window
from tests.integration.pipeline_harness import (
    REPO,
    produce,
    produce_releases,
    read_topic,
    worker_env,
)

MINUTE = 60_000


def privmon(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "privmon.agents.cli", *args], cwd=REPO,
                          env=worker_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def prefix(bootstrap):
    """Topics of one imagined deployment: 21 days of capacity releases, 6 minutes
    of monitoring releases (an incident on fra-03 from minute 3), and its ledger."""
    p = f"down-{secrets.token_hex(3)}."
    create_missing(bootstrap, {f"{p}aggregates.capacity": (2, {}),
                               f"{p}aggregates.monitoring": (2, {}),
                               f"{p}privmon.ledger": (1, {})})
    now = int(time.time() * 1000)
    cap = capacity_days(21, end_ms=now)
    produce_releases(bootstrap, f"{p}aggregates.capacity", cap, partitions=2)
    first = (now // MINUTE - 8) * MINUTE
    mon = []
    for i in range(6):
        mon += monitoring_window(first + i * MINUTE, incident=i >= 3, seed=100 + i)
    produce_releases(bootstrap, f"{p}aggregates.monitoring", mon, partitions=2)
    config = load_config()
    ledger = []
    for i in range(6):
        for q in (0, 1):  # two partials partitions released each window
            ledger.append(LedgerEntry.for_release(
                config.policy("monitoring"), window_start_ms=first + i * MINUTE,
                cells_released=2, partials_partition=q))
    for r in {r.window_start_ms for r in cap}:
        ledger.append(LedgerEntry.for_release(config.policy("capacity"), window_start_ms=r,
                                              cells_released=7))
    produce(bootstrap, f"{p}privmon.ledger",
            [(f"{e.stream}|{e.window_start_ms}|{e.partials_partition}".encode(), e.to_json())
             for e in ledger])
    return p, cap, mon, first


def test_subscribe_prints_released_windows_as_a_table(bootstrap, prefix):
    p, _, mon, first = prefix
    out = privmon("subscribe", "monitoring", "--bootstrap", bootstrap, "--topic-prefix", p,
                  "--since", "15m", "--metrics", "events,errors.rate", "--duration-s", "6")
    assert out.returncode == 0, out.stderr
    windows = re.findall(r"^\[monitoring\] window .* UTC: (\d+) cells released", out.stdout, re.M)
    assert windows == ["4"] * 6  # tiny-01 (3 accounts) is never released
    assert "tiny-01" not in out.stdout
    last = mon[-4:]
    fra03 = next(r for r in last if r.cell["server"] == "fra-03")
    rate = fra03.metrics["errors.rate"]
    row = re.findall(r"^\s+fra-03\s+eu-central\s+\d+ ±\d+\s+(\S+%) ±(\S+%)$", out.stdout, re.M)
    assert row[-1] == (f"{rate.value:.1%}", f"{(rate.ci95_high - rate.ci95_low) / 2:.1%}")


def test_export_csv_and_parquet_hold_every_record_with_noise_columns(bootstrap, prefix,
                                                                    tmp_path):
    p, cap, _, _ = prefix
    for fmt in ("csv", "parquet"):
        path = tmp_path / f"cap.{fmt}"
        out = privmon("export", "capacity", "--bootstrap", bootstrap, "--topic-prefix", p,
                      "--since", "30d", "--format", fmt, "-o", str(path))
        assert out.returncode == 0, out.stderr
        assert f"{len(cap)} rows (21 windows)" in out.stderr
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
        assert len(frame) == len(cap)
        for col in ("bytes.sum", "bytes.sum_std", "bytes.sum_ci95_low", "bytes.sum_ci95_high",
                    "epsilon", "delta", "k", "mechanism", "region", "server"):
            assert col in frame.columns, col
        truth = sorted((r.window_start_ms, r.cell["server"], r.metrics["bytes.sum"].value)
                       for r in cap)
        starts = ((pd.to_datetime(frame["window_start"], utc=True)
                   - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1))
        got = sorted(zip(starts, frame["server"], frame["bytes.sum"], strict=True))
        assert got == truth  # exact: values survive the file format
        assert (frame["events_ci95_low_raw"] <= frame["events_ci95_low"]).all()
        assert (frame["events_ci95_low"] >= 0).all()
        if fmt == "parquet":  # counts as integers, typed nulls
            assert str(frame["events"].dtype) == "int64"
            assert str(frame["accounts"].dtype) == "int64"
            assert str(frame["rho"].dtype) == "float64"


def test_python_api_returns_a_dataframe(bootstrap, prefix, monkeypatch):
    p, cap, _, _ = prefix
    df = releases("capacity", bootstrap=bootstrap, since="30d", topic_prefix=p)
    assert len(df) == len(cap)
    # The deployment settings of the commands apply to it too: $PRIVMON_BOOTSTRAP.
    monkeypatch.setenv("PRIVMON_BOOTSTRAP", bootstrap)
    assert len(releases("capacity", since="30d", topic_prefix=p)) == len(cap)
    assert str(df["window_start"].dtype).startswith("datetime64")
    assert (df["events_ci95_low"] < df["events"]).all()
    assert (df["events"] < df["events_ci95_high"]).all()
    last_week = releases("capacity", bootstrap=bootstrap, since="7d", topic_prefix=p)
    assert 0 < len(last_week) < len(df)
    assert last_week["window_start"].min() >= pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=7)


def test_report_capacity_writes_html_and_pngs(bootstrap, prefix, tmp_path):
    p, _, _, _ = prefix
    out = privmon("report", "capacity", "--days", "30", "--bootstrap", bootstrap,
                  "--topic-prefix", p, "--out", str(tmp_path / "rep"))
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "rep" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5
    for name in ("bandwidth_by_region", "sessions_by_region", "top_servers", "peak_hours",
                 "growth"):
        with Image.open(tmp_path / "rep" / f"{name}.png") as img:
            assert img.format == "PNG" and img.size == (900, 450) or name == "growth"


def test_budget_reads_the_ledger(bootstrap, prefix):
    p, _, _, first = prefix
    out = privmon("budget", "--bootstrap", bootstrap, "--topic-prefix", p, "--json")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    mon = next(s for s in rep["streams"] if s["stream"] == "monitoring")
    assert mon["windows_released"] == 6  # two partition entries per window fold into one
    assert mon["cells_released"] == 24 and "cells_suppressed" not in mon
    assert mon["per_window"] == [{"epsilon": 0.5, "delta": 0.0, "rho": 0.0,  # public cells
                                  "policy_version": "2026-12-02.1"}]
    day = mon["horizons"][0]
    day_start = (rep["now_ms"] // 86_400_000) * 86_400_000
    in_today = sum(1 for i in range(6) if first + i * MINUTE >= day_start)
    policy = next(x for x in load_config().policies if x.name == "monitoring")
    tight = compose([(window_cost(policy), in_today)], target_delta=1e-5)  # the recorded parts
    assert day["spent"]["epsilon"] == pytest.approx(tight.epsilon)
    assert day["spent"]["basic_epsilon"] == pytest.approx(0.5 * in_today)
    assert day["cap"] == {"epsilon": 12.0, "delta": 1e-5}
    text = privmon("budget", "--bootstrap", bootstrap, "--topic-prefix", p)
    assert "monitoring: 6 windows of 60 s released" in text.stdout
    assert "cap epsilon <= 12" in text.stdout and "basic composition" in text.stdout
    assert "warning" not in out.stderr + text.stderr  # the ledger's policy is the config's


def test_budget_warns_when_the_ledger_is_of_another_policy(bootstrap, prefix):
    """The production ledger read with the demo's config (another policy version)."""
    p = prefix[0]
    out = privmon("budget", "--bootstrap", bootstrap, "--topic-prefix", p,
                  "--config", str(REPO / "configs" / "demo.toml"))
    assert out.returncode == 0, out.stderr
    assert "privmon budget: warning: the ledger" in out.stderr
    assert "'2026-12-02.1'" in out.stderr and "pass its --config" in out.stderr


def test_readers_warn_when_the_records_are_of_another_policy(bootstrap, prefix):
    """Production releases read with the demo's config: export and the pandas API say
    so (the topic names match; the windows, budgets and streams do not)."""
    p = prefix[0]
    demo = REPO / "configs" / "demo.toml"
    out = privmon("export", "monitoring", "--bootstrap", bootstrap, "--topic-prefix", p,
                  "--config", str(demo), "--since", "30d", "-o", "/dev/null")
    assert out.returncode == 0, out.stderr
    assert "privmon export: warning:" in out.stderr and "'2026-12-02.1'" in out.stderr
    with pytest.warns(UserWarning, match="pass its --config"):
        releases("monitoring", since="30d", bootstrap=bootstrap, config=demo, topic_prefix=p)
    same = privmon("export", "monitoring", "--bootstrap", bootstrap, "--topic-prefix", p,
                   "--since", "30d", "-o", "/dev/null")
    assert same.returncode == 0 and "warning" not in same.stderr  # its own config: silent


def parse_scrape(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text format -> {(name, sorted labels): value}."""
    out = {}
    for m in re.finditer(r'^(\w+)\{(.*)\} (\S+)$', text, re.M):
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m[2])))
        out[(m[1], labels)] = float(m[3])
    return out


class Receiver(BaseHTTPRequestHandler):
    posts: list[tuple[str, object]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.posts.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


async def test_alert_agent_fires_on_the_incident_only(bootstrap, tmp_path):
    p = f"alert-{secrets.token_hex(3)}."
    pipeline = with_prefix(load_config(), p)
    rules_path = tmp_path / "rules.toml"
    rules_path.write_text((REPO / "configs" / "alerts.toml").read_text()
                          .replace("baseline_ms = 3_600_000", "baseline_ms = 60_000"))
    rules = load_alert_config(rules_path, load_config()).with_prefix(p)
    create_missing(bootstrap, {pipeline.topics.aggregate("monitoring"): (2, {})})
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    Receiver.posts.clear()
    agent = AlertAgent(pipeline=pipeline, alerts=rules, bootstrap=bootstrap,
                       sinks=[HttpSink("webhook", f"{url}/hook"),
                              HttpSink("alertmanager", url)],
                       export_streams=["monitoring"], backlog_ms=0)
    port = free_port()
    agent.metrics.serve(port)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        # Releases older than the agent's start are history, not alerts: start it first.
        await asyncio.wait_for(agent.ready.wait(), timeout=60)
        # every window ended, and the last one less than 3 windows + grace ago (still
        # exported: agents/alerts/exporter.py)
        first = (int(time.time() * 1000) // MINUTE - 7) * MINUTE
        windows = [monitoring_window(first + i * MINUTE, incident=i >= 3, seed=200 + i,
                                     us_east_factor=0.3 if i == 5 else 1.0) for i in range(6)]
        for records in windows:  # one window at a time, as the worker releases them
            await asyncio.to_thread(produce_releases, bootstrap,
                                    pipeline.topics.aggregate("monitoring"), records,
                                    partitions=2)
            await asyncio.sleep(1.6)
        deadline = time.monotonic() + 30
        while agent.windows_evaluated < 6 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert agent.windows_evaluated == 6

        fired = sorted((a.rule, a.window_start_ms - first, tuple(a.cell.values()))
                       for a in agent.fired)
        # fra-03 fails from window 3; the error rule needs 2 windows in a row (for_windows=2).
        # us-east traffic falls to 30% in window 5; the drop rule also needs 2 windows, so the
        # single-window drop does not fire. tiny-01 (every request failing, 3 accounts) was
        # never released and never fires.
        assert fired == [("server_error_rate_high", 4 * MINUTE, ("fra-03", "eu-central")),
                         ("server_error_rate_high", 5 * MINUTE, ("fra-03", "eu-central"))]
        on_topic = await asyncio.to_thread(read_topic, bootstrap, rules.topic)
        alerts = [json.loads(m.value) for m in on_topic]
        assert len(alerts) == 2 and {a["schema"] for a in alerts} == {"privmon.alert/1"}
        a = alerts[-1]
        assert a["cell"] == {"server": "fra-03", "region": "eu-central"}
        assert a["value"]["ci95_low"] > 0.05 and a["confidence"] == 0.99
        assert a["false_alarm_bound"] == pytest.approx(1e-4)

        hooks = [body for path, body in Receiver.posts if path == "/hook"]
        manager = [body for path, body in Receiver.posts if path == "/api/v2/alerts"]
        assert [h["alerts"][0]["rule"] for h in hooks] == ["server_error_rate_high"] * 2
        assert len(manager) == 2 and all(isinstance(b, list) for b in manager)
        am = manager[-1][0]
        assert am["labels"] == {"alertname": "server_error_rate_high", "severity": "page",
                                "stream": "monitoring", "source": "privmon",
                                "server": "fra-03", "region": "eu-central"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", am["startsAt"])
        assert am["endsAt"] > am["startsAt"] and "confidence 0.99" in am["annotations"][
            "description"]

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            scrape = resp.read().decode()
        latest = {r.cell["server"]: r for r in windows[-1]}
        v = latest["fra-03"].metrics["errors.rate"]
        samples = parse_scrape(scrape)
        cell = (("region", "eu-central"), ("server", "fra-03"))
        assert samples[("privmon_monitoring_errors_ratio", cell)] == pytest.approx(v.value)
        assert samples[("privmon_monitoring_errors_noise_std_ratio", cell)] == pytest.approx(
            v.noise_std)
        assert samples[("privmon_monitoring_errors_ci95_low_ratio", cell)] == pytest.approx(
            v.ci95_low)
        assert 'server="tiny-01"' not in scrape
        assert re.search(r'^privmon_alerts_fired_total\{rule="server_error_rate_high"\} 2.0$',
                         scrape, re.M)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        server.shutdown()


def test_a_bad_rule_file_stops_the_agent_with_the_field_named(tmp_path, bootstrap):
    bad = tmp_path / "rules.toml"
    bad.write_text(Path(REPO / "configs" / "alerts.toml").read_text()
                   .replace('metric = "errors.rate"', 'metric = "error.rate"'))
    out = privmon("alerts", "--bootstrap", bootstrap, "--rules", str(bad), "--duration-s", "1")
    assert out.returncode == 2
    assert "rules.server_error_rate_high.metric = 'error.rate'" in out.stderr
