"""A real Faust worker reads one topic and writes another on the local broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer

from tests.integration.pipeline_harness import stop_worker

APP = Path(__file__).with_name("faust_smoke_app.py")
REPO = Path(__file__).resolve().parents[2]


def test_faust_agent_relays_between_topics(bootstrap, topic_name, tmp_path):
    source, sink = f"{topic_name}-in", f"{topic_name}-out"
    env = {
        **os.environ,
        "SMOKE_BOOTSTRAP": bootstrap,
        "SMOKE_IN": source,
        "SMOKE_OUT": sink,
        "SMOKE_DATADIR": str(tmp_path / "faust"),
        "PYTHONPATH": str(REPO),
    }
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, str(APP), "worker", "--loglevel", "info"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
        )
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        words = [f"event-{i}".encode() for i in range(20)]
        for word in words:
            producer.send(source, value=word)
        producer.flush()
        producer.close()

        consumer = KafkaConsumer(
            sink, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
            consumer_timeout_ms=60000,
        )
        got = []
        for message in consumer:
            got.append(message.value)
            if len(got) == len(words):
                break
        consumer.close()
        assert worker.poll() is None, "the Faust worker exited:\n" + log.read_text()[-3000:]
    finally:
        stop_worker(worker)
    assert sorted(got) == sorted(w.upper() for w in words), log.read_text()[-3000:]
