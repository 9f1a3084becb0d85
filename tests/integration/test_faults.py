"""Faults on a 3-broker cluster under load: 20 worker SIGKILLs, the leader broker of a
raw partition stopped and brought back, and the whole cluster restarted. After all of
it: no (window, cell) released twice, no accepted event lost (exact partial sums equal
the input), and the worker recovered by itself. Recovery times (fault to the next
committed release) are listed under "privmon figures" at the end of the run."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from streams.localkafka.cluster import LocalKafka
from tests.integration.pipeline_harness import (
    WINDOW_MS,
    all_released,
    first_window_after,
    known_input,
    make_setup,
    partial_sums,
    read_topic,
    start_worker,
    stop_worker,
    wait_for,
)
from tests.integration.test_pipeline import _check_against_truth, _check_exact_partials

KILLS = 20


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    cluster = LocalKafka(name="faults", state_root=tmp_path_factory.mktemp("faults"), nodes=3,
                         num_partitions=4)
    cluster.start(timeout_s=240)
    yield cluster
    cluster.stop(purge=not os.environ.get("KEEP_FAULTS"))  # KEEP_FAULTS=1 keeps it to inspect


def _ledger_size(setup) -> int:
    return len(read_topic(setup.bootstrap, setup.topic("privmon.ledger")))


def _leader_of(bootstrap: str, topic: str, partition: int) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for p in admin.describe_topics([topic])[0]["partitions"]:
            if p["partition_index"] == partition:
                return p["leader_id"]
    finally:
        admin.close()
    raise AssertionError(f"no leader for {topic}-{partition}")


def _time_to_next_release(setup, before: int, worker, log, timeout_s: float = 120) -> float:
    started = time.monotonic()
    wait_for(lambda: _ledger_size(setup) > before, timeout_s=timeout_s,
             what="a release after the fault", procs=[worker], log=log)
    return time.monotonic() - started


def test_worker_kills_leader_loss_and_cluster_restart(cluster3, tmp_path, figures):
    setup = make_setup(tmp_path, cluster3.bootstrap_servers, "faults")
    log = tmp_path / "worker.log"
    windows = 30
    start = first_window_after(int(time.time() * 1000), lead_ms=8000)
    truth = known_input(start, windows)
    per_window = len(truth.messages) // windows
    produced = threading.Event()

    def load() -> None:
        """Each window's input 4 s before the window opens (events are in its future)."""
        producer = KafkaProducer(bootstrap_servers=cluster3.bootstrap_servers, acks="all",
                                 retries=20)
        for w in range(windows):
            delay = (start + w * WINDOW_MS - 4000) / 1000 - time.time()
            if delay > 0 and not produced.is_set():
                time.sleep(delay)
            for key, value in truth.messages[w * per_window:(w + 1) * per_window]:
                producer.send(setup.raw, key=key, value=value)
            producer.flush()
        producer.close()
        produced.set()

    # Topics (replicated x3) exist before the load starts.
    worker = start_worker(setup, "w1", log)
    wait_for(lambda: setup.raw in KafkaAdminClient(
        bootstrap_servers=cluster3.bootstrap_servers).list_topics(), timeout_s=60,
        what="the worker to create its topics", procs=[worker], log=log)
    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    recovery: dict[str, list[float]] = {"worker_kill": [], "leader_stop": []}
    rng = random.Random(2026)
    try:
        # The first release waits for the input's first window, not for recovery:
        # the kills start after it, so every sampled recovery time is one.
        wait_for(lambda: _ledger_size(setup) > 0, timeout_s=90, what="the first release",
                 procs=[worker], log=log)
        # (a) 20 SIGKILLs at random points.
        for _ in range(KILLS):
            time.sleep(rng.uniform(1.0, 3.0))
            before = _ledger_size(setup)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = start_worker(setup, "w1", log)
            if len(recovery["worker_kill"]) < 6:  # sample a few (each waits for a release)
                recovery["worker_kill"].append(_time_to_next_release(setup, before, worker, log))
        # (b) stop the leader of raw partition 0, bring it back.
        leader = _leader_of(cluster3.bootstrap_servers, setup.raw, 0)
        before = _ledger_size(setup)
        cluster3.stop_node(leader)
        recovery["leader_stop"].append(_time_to_next_release(setup, before, worker, log))
        cluster3.start_node(leader, timeout_s=180)
        # (c) restart the whole cluster (after the remaining input is in).
        produced.set()
        loader.join(timeout=180)
        before = _ledger_size(setup)
        down = time.monotonic()
        cluster3.stop()
        cluster3.start(timeout_s=240)
        recovery["cluster_down_and_up"] = [time.monotonic() - down]
        recovery["cluster_restart"] = [_time_to_next_release(setup, before, worker, log, 180)]
        wait_for(all_released(setup, truth), timeout_s=180, what="every window released",
                 procs=[worker], log=log)
    finally:
        stop_worker(worker)

    assert len(recovery["worker_kill"]) == 6
    records = _check_against_truth(setup, truth)  # no (window, cell) twice
    _check_exact_partials(setup, truth)  # no accepted event lost or counted twice
    released = Counter((r.window_start_ms, tuple(r.cell.values())) for r in records)
    in_partials = sum(s[1] for s in partial_sums(setup).values())
    letters = read_topic(cluster3.bootstrap_servers, setup.topic("telemetry.dlq"))
    assert letters == []
    figures(json.dumps({
        "faults": {"worker_sigkill": KILLS, "leader_broker_stop": 1, "cluster_restart": 1},
        "windows": windows, "releases_checked": len(records),
        "duplicates": sum(n - 1 for n in released.values()),
        "events_lost": sum(truth.events.values()) - in_partials,
        "recovery_s": {k: [round(v, 1) for v in vs] for k, vs in recovery.items()}}))
