"""Releases recomputed after a crash are byte-identical (keyed noise), on a real broker.

The worker (tests/integration/faulty_worker.py) kills itself after the broker has a
window's release records and before the transaction commits, three times. The
aborted records stay in the aggregate topic; a reader with ``read_uncommitted``
sees them beside the committed copy. With noise drawn from a keyed stream they are
the same bytes, so averaging copies gains nothing (with fresh noise per attempt,
35 of 35 repeated cells differed in an audit on the old code)."""

from __future__ import annotations

import json
import time
from collections import defaultdict

from tests.integration.pipeline_harness import (
    all_released,
    first_window_after,
    known_input,
    make_setup,
    produce,
    read_topic,
    release_records,
    start_worker,
    stop_worker,
)

WINDOWS = 4
DEATHS = 3


def _run(setup, tmp_path, env: dict) -> dict[tuple, list[bytes]]:
    """Run the dying worker until every window is committed; every copy per cell."""
    log = tmp_path / "worker.log"
    counter = tmp_path / "deaths"
    env = {**env, "PRIVMON_TEST_DIE_BEFORE_COMMIT": f"{counter}:{DEATHS}"}
    bootstrap = setup.bootstrap

    def start():
        return start_worker(setup, "w1", log, module="tests.integration.faulty_worker", env=env)

    worker = start()
    restarts = 0
    try:
        first = first_window_after(int(time.time() * 1000), lead_ms=4000)
        truth = known_input(first, WINDOWS)
        produce(bootstrap, setup.raw, truth.messages)
        done = all_released(setup, truth)
        deadline = time.monotonic() + 240
        while not done():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            if worker.poll() is not None:  # died before a commit: start it again
                assert worker.returncode == -9, log.read_text()[-3000:]
                restarts += 1
                worker = start()
            time.sleep(0.5)
    finally:
        stop_worker(worker)

    assert int(counter.read_text()) == DEATHS and restarts == DEATHS
    by_cell: dict[tuple, list[bytes]] = defaultdict(list)
    for r in release_records(read_topic(bootstrap, setup.topic("aggregates.monitoring"),
                                        committed_only=False)):
        d = json.loads(r.value)
        by_cell[(d["window_start_ms"], tuple(d["cell"].values()))].append(r.value)
    return by_cell


def test_every_copy_of_a_recomputed_release_is_identical(kafka_cluster, bootstrap, tmp_path,
                                                          figures):
    setup = make_setup(tmp_path, bootstrap, "recompute")
    by_cell = _run(setup, tmp_path, {})
    topic = setup.topic("aggregates.monitoring")
    repeated = {k: v for k, v in by_cell.items() if len(v) > 1}
    assert repeated, "no aborted copy in the topic: the fault did not happen"
    differing = [k for k, v in repeated.items() if len(set(v)) > 1]
    assert differing == [], f"{len(differing)} cells with different copies"
    committed = defaultdict(int)
    for r in release_records(read_topic(bootstrap, topic)):
        d = json.loads(r.value)
        committed[(d["window_start_ms"], tuple(d["cell"].values()))] += 1
    assert set(committed.values()) == {1}, "a cell committed twice"
    figures(f"{len(repeated)} cells read more than once with read_uncommitted "
            f"(max {max(len(v) for v in repeated.values())} copies), all byte-identical; "
            f"{len(committed)} committed once each")


def test_the_check_catches_fresh_noise_per_attempt(kafka_cluster, bootstrap, tmp_path, figures):
    """Negative control: a new random key per attempt (the old behaviour) gives
    aborted copies that differ from the committed one."""
    setup = make_setup(tmp_path, bootstrap, "recompute-fresh")
    by_cell = _run(setup, tmp_path, {"PRIVMON_TEST_FRESH_NOISE": "1"})
    repeated = {k: v for k, v in by_cell.items() if len(v) > 1}
    assert repeated, "no aborted copy in the topic: the fault did not happen"
    differing = [k for k, v in repeated.items() if len(set(v)) > 1]
    assert differing, "fresh noise per attempt went unnoticed"
    figures(f"fresh noise per attempt: {len(differing)} of {len(repeated)} repeated cells "
            "differ between copies")
