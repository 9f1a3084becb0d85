"""Isolation in a real worker: a batch that raises past stage 1's per-message guards,
and a window whose release raises in stage 2 (faults injected by
tests/integration/faulty_worker.py). The worker must keep running, dead-letter
exactly the poison messages (``internal_error``) with every good event counted
once, and quarantine the failing windows without blocking later ones."""

from __future__ import annotations

import asyncio
import base64
import json
import time

from aiokafka import AIOKafkaProducer

from tests.integration.pipeline_harness import (
    first_window_after,
    known_input,
    make_setup,
    produce,
    read_topic,
    release_records,
    released_windows,
    start_worker,
    stop_worker,
    trusted_status,
    wait_for,
)
from tests.integration.test_pipeline import _check_against_truth, _check_exact_partials

WINDOWS = 6
POISON = "poison-01"


def _poison(account: str, t: int) -> tuple[bytes, bytes]:
    event = {"account_id": account, "server": POISON, "region": "eu", "client_version": "5",
             "platform": "chrome", "latency_ms": 5.0, "bytes": 10, "error": False,
             "session_s": 1.0, "event_time_ms": t}
    return account.encode(), json.dumps(event).encode()


def test_poison_batch_and_failing_window_are_isolated(kafka_cluster, bootstrap, tmp_path,
                                                      figures):
    setup = make_setup(tmp_path, bootstrap, "isolation")
    log = tmp_path / "worker.log"
    worker = start_worker(setup, "w1", log, module="tests.integration.faulty_worker",
                          env={"PRIVMON_TEST_POISON_SERVER": POISON,
                               "PRIVMON_TEST_FAIL_STREAM": "capacity"})
    try:
        start = first_window_after(int(time.time() * 1000), lead_ms=4000)
        truth = known_input(start, WINDOWS)
        messages = list(truth.messages)
        poison = [_poison(f"acct-poison-{i}", start + 1000 + i * 4000) for i in range(3)]
        for i, m in enumerate(poison):  # amid the good input, inside ordinary batches
            messages.insert((i + 1) * len(messages) // 4, m)
        produce(bootstrap, setup.raw, messages)
        wait_for(lambda: set(truth.windows) <= released_windows(setup), timeout_s=120,
                 what="every monitoring window", procs=[worker], log=log)
        assert worker.poll() is None, "the worker exited"
        time.sleep(2.5)  # one more status line
    finally:
        stop_worker(worker)

    # Stage 1: exactly the poison messages dead-lettered, with their own bytes.
    letters = [json.loads(r.value) for r in read_topic(bootstrap, setup.topic("telemetry.dlq"))]
    assert sorted(base64.b64decode(d["payload_b64"]) for d in letters) == sorted(
        v for _, v in poison)
    assert {(d["reason"], d["detail"]) for d in letters} == {("internal_error", "RuntimeError")}
    _check_exact_partials(setup, truth)  # every good event counted once, no poison event
    _check_against_truth(setup, truth)
    text = log.read_text()
    assert "raised RuntimeError; rebuilding from committed state and retrying them" in text
    assert "dead-lettering it as internal_error" in text
    status = trusted_status(log)
    assert status["dead_letter_reasons"] == {"internal_error": 3}
    assert status["accepted"] == sum(truth.events.values())
    assert status["batches_isolated"] >= 3

    # Stage 2: capacity windows quarantined, marked failed, nothing published for them,
    # and monitoring windows after them released all the same.
    ledger = [json.loads(r.value) for r in read_topic(bootstrap, setup.topic("privmon.ledger"))]
    capacity = [e for e in ledger if e["stream"] == "capacity"]
    failed = [e for e in capacity if e["failed"]]  # the others: windows without cells there
    assert failed and all(e["failed"] == "ZeroDivisionError" and e["cells_released"] == 0
                          for e in failed)
    assert all(e["cells_released"] == 0 for e in capacity)
    assert release_records(read_topic(bootstrap, setup.topic("aggregates.capacity"))) == []
    first_failed_end = min(e["window_end_ms"] for e in failed)
    assert any(e["stream"] == "monitoring" and e["window_start_ms"] >= first_failed_end
               for e in ledger), "no monitoring window after the failed one"
    assert "quarantined: nothing published, marked failed in the ledger" in text
    assert status["windows_failed"] == len(failed)
    figures(f"isolation: 3 poison messages -> 3 internal_error letters, "
            f"{status['batches_isolated']} batch isolations, {len(failed)} capacity windows "
            f"quarantined; worker kept running")


def test_a_message_that_kills_the_process_is_set_aside_after_a_few_restarts(
        kafka_cluster, bootstrap, tmp_path, figures):
    """A native crash (SIGSEGV) on one message: a supervisor restarts the worker each
    time; the crash guard (agents/crashguard.py) sets the message aside within a few
    restarts, and every good event is released."""
    setup = make_setup(tmp_path, bootstrap, "crashloop")
    log = tmp_path / "worker.log"
    crash_file = tmp_path / "w1.crashguard.json"

    def start():
        return start_worker(setup, "w1", log, ("--crash-file", str(crash_file)),
                            module="tests.integration.faulty_worker",
                            env={"PRIVMON_TEST_CRASH_SERVER": POISON})

    worker = start()
    deaths: list[int] = []
    try:
        start_ms = first_window_after(int(time.time() * 1000), lead_ms=4000)
        truth = known_input(start_ms, 3)
        messages = list(truth.messages)
        crash = _poison("acct-crash", start_ms + 1000)
        messages.insert(len(messages) // 2, crash)
        produce(bootstrap, setup.raw, messages)
        deadline = time.monotonic() + 180
        while not set(truth.windows) <= released_windows(setup):
            assert time.monotonic() < deadline, f"no releases; deaths {deaths}\n" + \
                log.read_text()[-3000:]
            if worker.poll() is not None:  # the supervisor's part: restart it
                deaths.append(worker.returncode)
                assert len(deaths) <= 6, f"crash loop: {deaths}\n" + log.read_text()[-3000:]
                worker = start()
            time.sleep(0.5)
    finally:
        stop_worker(worker)
    assert deaths and all(code == -11 for code in deaths), deaths  # SIGSEGV, then no more
    letters = [json.loads(r.value) for r in read_topic(bootstrap, setup.topic("telemetry.dlq"))]
    assert [(d["reason"], d["detail"], base64.b64decode(d["payload_b64"])) for d in letters] == [
        ("internal_error", "ProcessDied", crash[1])]
    _check_exact_partials(setup, truth)
    assert "the previous process died while processing raw partition" in log.read_text()
    figures(f"crash loop: a segfaulting message set aside after {len(deaths)} deaths; "
            "every good event released")


def _fence(bootstrap: str, transactional_id: str) -> None:
    """What a coordinator failover or transaction timeout does to the worker: a new
    producer epoch for its transactional id, which fences the worker's producer."""
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap,
                                    transactional_id=transactional_id)
        await producer.start()  # InitProducerId: bumps the epoch
        await producer.stop()
    asyncio.run(run())


def test_a_fenced_stage_recovers_and_releases_every_window_once(kafka_cluster, bootstrap,
                                                                 tmp_path, figures):
    """Fence both stages' producers mid-run (the CI failover run once died of the
    ProducerFenced this provokes): the worker keeps running, and every window is
    released once with the exact input (no event lost or counted twice)."""
    setup = make_setup(tmp_path, bootstrap, "fenced")
    log = tmp_path / "worker.log"
    worker = start_worker(setup, "w1", log)
    try:
        start = first_window_after(int(time.time() * 1000), lead_ms=4000)
        truth = known_input(start, WINDOWS)
        produce(bootstrap, setup.raw, truth.messages)
        wait_for(lambda: truth.windows[0] in released_windows(setup), timeout_s=120,
                 what="the first window", procs=[worker], log=log)
        app_id = f"{setup.prefix}privmon"
        for stage in ("s1", "s2"):
            _fence(bootstrap, f"{app_id}-{stage}-w1")
        wait_for(lambda: set(truth.windows) <= released_windows(setup), timeout_s=120,
                 what="every monitoring window", procs=[worker], log=log)
        assert worker.poll() is None, "the worker exited"
    finally:
        stop_worker(worker)
    text = log.read_text()
    fenced = [ln for ln in text.splitlines() if "ProducerFenced" in ln and "recovering" in ln]
    assert fenced, "the fence did not reach the worker: the check proved nothing\n" + text[-3000:]
    records = _check_against_truth(setup, truth)
    figures(f"{len(fenced)} fenced transaction(s) recovered; {len(records)} cells in "
            f"{len(truth.windows)} windows released once each, exact input")
