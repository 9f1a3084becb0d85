"""The hostile corpus through a real worker: right reasons, good input intact, bounded memory."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from tests.corpus.hostile import corpus
from tests.integration.pipeline_harness import (
    all_released,
    first_window_after,
    known_input,
    make_setup,
    partial_sums,
    read_topic,
    start_worker,
    stop_worker,
    trusted_status,
    wait_for,
)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_hostile_corpus_is_dead_lettered_and_good_input_counts(bootstrap, tmp_path, figures):
    setup = make_setup(tmp_path, bootstrap, "hostile")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(setup.raw, num_partitions=4, replication_factor=1,
                                  topic_configs={"max.message.bytes": str(4 << 20)})])
    admin.close()
    log = tmp_path / "worker.log"
    worker = start_worker(setup, "w1", log)
    try:
        start = first_window_after(int(time.time() * 1000), lead_ms=4000)
        truth = known_input(start, 2)
        entries = corpus(int(time.time() * 1000))
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                 max_request_size=8 << 20)
        half = len(truth.messages) // 2
        for key, value in truth.messages[:half]:
            producer.send(setup.raw, key=key, value=value)
        for entry in entries:
            producer.send(setup.raw, key=entry.key, value=entry.value)
        for key, value in truth.messages[half:]:
            producer.send(setup.raw, key=key, value=value)
        producer.flush()
        producer.close()
        wait_for(all_released(setup, truth), timeout_s=120, what="releases around the corpus",
                 procs=[worker], log=log)
        rss = _rss_mib(worker.pid)
    finally:
        stop_worker(worker)

    expected = Counter(r for e in entries for r in e.reasons)
    letters = [json.loads(r.value) for r in read_topic(bootstrap, setup.topic("telemetry.dlq"))]
    assert Counter(d["reason"] for d in letters) == expected
    assert all(d["source"]["topic"] == setup.raw for d in letters)

    sums = partial_sums(setup)
    for key_, events in truth.events.items():
        assert sums[key_][:2] == [truth.accounts[key_], events], key_

    status = trusted_status(log)
    good = sum(truth.events.values()) + sum(e.accepted for e in entries)
    assert status["accepted"] == good
    assert status["dead_lettered"] == sum(expected.values())
    assert status["messages"] == len(truth.messages) + len(entries)
    figures(f"corpus {len(entries)} messages, {sum(expected.values())} dead letters "
            f"(reasons {dict(sorted(expected.items()))}) = the DLQ exactly; accepted {good} = "
            f"status; worker RSS {rss:.0f} MiB")
    assert rss < 512, f"worker RSS {rss:.0f} MiB"
