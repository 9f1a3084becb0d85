"""The worker end to end on the real broker: releases, DLQ, leaks, scale-out, SIGKILL."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack

import pytest

from privmon.agents.stats import WorkerStats
from privmon.privacy.records import ReleaseRecord
from privmon.streams.localkafka.procs import free_port
from privmon.streams.partials import cell_rows
from tests.integration.pipeline_harness import (
    CELLS,
    REPO,
    SMALL_CELL,
    all_released,
    check_completions,
    first_window_after,
    known_input,
    make_setup,
    partial_sums,
    produce,
    public_status,
    read_topic,
    release_records,
    released_windows,
    start_worker,
    stop_worker,
    trusted_status,
    wait_for,
    worker_env,
)
from tests.oncall_programs import get_json, prometheus, promtool_check_metrics

WINDOWS = 3
# |released - true| <= 13 noise std: P(exceeded) < 1.1e-8 per value (geometric: exp(-13·√2)),
# < 1e-6 per run of the ~50 values a test checks. (8 std, 1.2e-5 per value, failed one CI
# run: a draw of 8.6 std, exactly the keyed noise of that cell; the exact partials check
# is what catches a counting bug.)
SIGMAS = 13


def _check_against_truth(setup, truth) -> list[ReleaseRecord]:
    raw = read_topic(setup.bootstrap, setup.topic("aggregates.monitoring"))
    check_completions(raw, set(truth.windows))
    records = [ReleaseRecord.from_json(r.value) for r in release_records(raw)]
    keys = [(r.window_start_ms, (r.cell["server"], r.cell["region"])) for r in records]
    assert len(keys) == len(set(keys)), "a (window, cell) was released twice"
    expected = {(w, c) for w in truth.windows for c in CELLS}
    assert set(keys) == expected, "released cells differ from the well-populated cells"
    for record, key in zip(records, keys, strict=True):
        m = record.metrics
        for name, true in (("accounts", truth.accounts[key]), ("events", truth.events[key]),
                           ("errors.count", truth.errors[key]),
                           ("latency.sum", truth.latency_sum[key])):
            assert abs(m[name].value - true) <= SIGMAS * m[name].noise_std, (key, name)
        assert record.privacy.k == 5 and record.privacy.epsilon == 1.0
    return records


def _check_exact_partials(setup, truth) -> None:
    sums = partial_sums(setup)
    for key, events in truth.events.items():
        accounts, n, errors, latency2 = sums[key]
        assert (accounts, n, errors) == (truth.accounts[key], events, truth.errors[key]), key
        assert latency2 == 2 * truth.latency_sum[key] - 5000 * events, key


def _prometheus_value(url: str, query: str) -> float | None:
    result = get_json(f"{url}/api/v1/query?query={query}")["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_end_to_end_release_dlq_and_no_leaks(kafka_cluster, bootstrap, tmp_path):
    setup = make_setup(tmp_path, bootstrap, "e2e")
    log = tmp_path / "worker.log"
    port = free_port()
    programs = ExitStack()  # a real Prometheus scraping the worker (stopped below)
    prom_url = programs.enter_context(
        prometheus(tmp_path / "prometheus", {"privmon-worker": [f"127.0.0.1:{port}"]}))
    worker = start_worker(setup, "w1", log, ("--metrics-port", str(port)))
    try:
        start = first_window_after(int(time.time() * 1000), lead_ms=4000)
        pii = {"email": "canary.person@example.com", "ip": "198.51.100.77"}
        truth = known_input(start, WINDOWS, extra=pii)
        bad = [
            (b"acct-x", b'{"account_id": "acct-x", '),  # truncated JSON
            (b"acct-y", json.dumps({"account_id": "acct-y", "latency_ms": "slow"}).encode()),
            (b"acct-z", b'{"events": 7}'),
            (b"someone-else", truth.messages[0][1]),  # events keyed by another account
        ]
        produce(bootstrap, setup.raw, bad[:2] + truth.messages + bad[2:])
        wait_for(all_released(setup, truth), timeout_s=90,
                 what="the last window's release", procs=[worker], log=log)
        time.sleep(1.5)  # one metrics refresh after the last release
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        cells = float(re.search(rb"^privmon_cells_released_total (\S+)", metrics, re.M)[1])
        wait_for(lambda: _prometheus_value(prom_url, "privmon_cells_released_total") == cells,
                 timeout_s=30, what="Prometheus to scrape the last count", procs=[worker],
                 log=log)
        kinds = get_json(f"{prom_url}/api/v1/metadata")["data"]
    finally:
        stop_worker(worker)
        programs.close()
    # What Prometheus made of it: the public counts are counters (rate(), resets). (It
    # scrapes OpenMetrics, whose metadata names a counter's family without _total.)
    for name in WorkerStats.PUBLIC:
        assert kinds[f"privmon_{name}"][0]["type"] == "counter", name
    assert kinds["privmon_epsilon_spent"][0]["type"] == "gauge"
    lint = promtool_check_metrics(metrics.decode())
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert re.search(rb"^privmon_cells_released_total (\d+)", metrics, re.M)
    assert int(float(re.search(rb"^privmon_cells_released_total (\S+)", metrics, re.M)[1])) >= 12
    # The budget on /metrics is what `privmon budget` says, per stream and horizon.
    spent = float(re.search(rb'^privmon_epsilon_spent\{horizon_seconds="86400",'
                            rb'stream="monitoring"\} (\S+)', metrics, re.M)[1])
    budget = subprocess.run(
        [sys.executable, "-m", "privmon.agents.cli", "budget", "--bootstrap", bootstrap,
         "--config", str(setup.config), "--json"], cwd=REPO, env=worker_env(),
        capture_output=True, text=True, timeout=120)
    assert budget.returncode == 0, budget.stderr
    mon = next(x for x in json.loads(budget.stdout)["streams"] if x["stream"] == "monitoring")
    assert spent > 0 and spent == pytest.approx(mon["horizons"][0]["spent"]["epsilon"])
    for name in WorkerStats.PUBLIC:  # counters, so that rate() and resets work
        assert re.search(rb"^# TYPE privmon_" + name.encode() + rb"_total counter$", metrics,
                         re.M), name
    # Nothing computed from exact input leaves: no input counts in /metrics or the status.
    for name in (b"privmon_raw_lag_messages", b"privmon_messages_total", b"privmon_accepted",
                 b"privmon_dead_letters", b"privmon_late", b"privmon_over_cap"):
        assert name not in metrics, name
    assert set(public_status(log)) == set(WorkerStats.PUBLIC)

    records = _check_against_truth(setup, truth)
    assert all(r.cell["server"] != SMALL_CELL[0] for r in records)  # under k: never
    _check_exact_partials(setup, truth)

    dlq = [json.loads(r.value) for r in read_topic(bootstrap, setup.topic("telemetry.dlq"))]
    assert sorted(d["reason"] for d in dlq) == sorted(
        ["bad_json", "wrong_type", "bad_envelope"] + ["key_mismatch"] * 3
    )
    status = trusted_status(log)
    input_events = sum(truth.events.values())
    assert status["accepted"] == input_events
    assert status["accepted"] + status["dead_lettered"] == input_events + 3 + 3
    assert status["late"] == 0

    # Leak canaries: raw ids, e-mails and IPs only in the raw and dead-letter topics.
    canaries = [b"acct-", b"canary.person@example.com", b"198.51.100.77"]
    for topic in setup.all_topics():
        if topic in (setup.raw, setup.topic("telemetry.dlq")):
            continue
        for record in read_topic(bootstrap, topic, committed_only=False):
            blob = (record.key or b"") + (record.value or b"")
            assert not any(c in blob for c in canaries), f"identifier leaked into {topic}"
    assert not any(c.decode() in log.read_text() for c in canaries), "identifier in the log"
    assert not any(c in metrics for c in canaries), "identifier in the metrics"


def test_idle_topic_still_releases_its_last_window(bootstrap, tmp_path):
    setup = make_setup(tmp_path, bootstrap, "idle")
    log = tmp_path / "worker.log"
    worker = start_worker(setup, "w1", log)
    try:
        start = first_window_after(int(time.time() * 1000), lead_ms=3000)
        truth = known_input(start, 1)
        produce(bootstrap, setup.raw, truth.messages)
        # Nothing else arrives: the window must close on the wall-clock fallback.
        wait_for(lambda: start in released_windows(setup), timeout_s=60,
                 what="release of the only window of an idle topic", procs=[worker], log=log)
    finally:
        stop_worker(worker)


def test_two_workers_and_split_stages_release_the_same_cells_as_one(bootstrap, tmp_path):
    """One worker; two workers; one worker as two processes (``--stages 1`` and
    ``--stages 2``, the same worker id): the same partials, each cell once."""
    start = first_window_after(int(time.time() * 1000), lead_ms=6000)
    truth = known_input(start, 2)
    results = {}
    stage2_status = ("--trusted-status", str(tmp_path / "split-s2.status.json"))
    for label, processes in (("one", [("w1", ())]), ("two", [("w1", ()), ("w2", ())]),
                             ("split", [("w1", ("--stages", "1")),
                                        ("w1", ("--stages", "2", *stage2_status))])):
        setup = make_setup(tmp_path, bootstrap, f"scale-{label}")
        log = tmp_path / f"{label}.log"
        workers = [start_worker(setup, wid, log, extra) for wid, extra in processes]
        try:
            produce(bootstrap, setup.raw, truth.messages)
            wait_for(all_released(setup, truth), timeout_s=90,
                     what=f"releases with {label} worker(s)", procs=workers, log=log)
        finally:
            for w in workers:
                stop_worker(w)
        _check_against_truth(setup, truth)
        _check_exact_partials(setup, truth)
        results[label] = partial_sums(setup)
        if label == "split":  # each process ran its own stage only
            assert trusted_status(log)["accepted"] == sum(truth.events.values())
            assert trusted_status(log)["windows_released"] == 0
            s2 = json.loads((tmp_path / "split-s2.status.json").read_text())
            assert s2["accepted"] == 0 and s2["windows_released"] > 0
    assert results["one"] == results["two"] == results["split"]


def test_sigkill_at_any_point_releases_each_cell_once_and_loses_nothing(bootstrap, tmp_path):
    setup = make_setup(tmp_path, bootstrap, "kill")
    log = tmp_path / "worker.log"
    # Windows begin >= 10 s from now, so all input (produced in three chunks
    # between the first kills) arrives before the first window closes; the
    # kills then fall before, inside and around the windows' releases.
    start = first_window_after(int(time.time() * 1000), lead_ms=10_000)
    truth = known_input(start, WINDOWS)
    chunks = [truth.messages[i::3] for i in range(3)]
    worker = start_worker(setup, "w1", log)
    kills = 0
    try:
        for i, delay in enumerate((1.5, 2.0, 6.5, 3.0, 4.5)):
            if i < len(chunks):
                produce(bootstrap, setup.raw, chunks[i])
            time.sleep(delay)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            kills += 1
            worker = start_worker(setup, "w1", log)
        wait_for(all_released(setup, truth), timeout_s=120,
                 what="releases after the kills", procs=[worker], log=log)
    finally:
        stop_worker(worker)
    assert kills == 5
    _check_against_truth(setup, truth)  # each (window, cell) once, values around the truth
    _check_exact_partials(setup, truth)  # every event counted exactly once


def test_the_daily_window_cap_holds_across_a_sigkill(bootstrap, tmp_path):
    """An account capped at 2 monitoring windows a day, worker SIGKILLed after its
    2 windows were released: after the restart it contributes to no further window
    (before the cap state was saved, the restart reset it and it got 2 more)."""
    setup = make_setup(tmp_path, bootstrap, "cap")
    text = setup.config.read_text()
    setup.config.write_text(text.replace("max_windows = 1000", "max_windows = 2", 1))
    log = tmp_path / "worker.log"

    def phase(worker, accounts: bytes) -> set[int]:
        truth = known_input(first_window_after(int(time.time() * 1000)), 2)
        truth.messages = [(k.replace(b"acct-", accounts), v.replace(b"acct-", accounts))
                          for k, v in truth.messages]  # other accounts: not capped
        solo = [(b"solo-acct", json.dumps({"events": [{
            "account_id": "solo-acct", "server": "solo-01", "region": "eu",
            "client_version": "5.2.1", "platform": "chrome", "latency_ms": 20.0,
            "bytes": 10, "error": False, "session_s": 1.0,
            "event_time_ms": w + 700}]}).encode()) for w in truth.windows]
        produce(bootstrap, setup.raw, truth.messages + solo)
        wait_for(all_released(setup, truth), timeout_s=90, what="releases",
                 procs=[worker], log=log)
        return set(truth.windows)

    def solo_windows() -> set[int]:
        return {row.window_start_ms
                for r in read_topic(bootstrap, setup.topic("privmon.partials"))
                for row in cell_rows(r.value) if row.cell[0] == "solo-01"}

    worker = start_worker(setup, "w1", log)
    try:
        before = phase(worker, b"acct-")
        assert solo_windows() == before  # admitted to its first 2 windows of the day
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = start_worker(setup, "w1", log)
        after = phase(worker, b"later-")
    finally:
        stop_worker(worker)
    assert before.isdisjoint(after)
    assert solo_windows() == before, "the restart reset the account's daily window cap"
    status = trusted_status(log)
    assert status["over_cap"] == 2  # its events of the 2 later windows, counted as dropped
