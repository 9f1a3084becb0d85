"""`privmon demo` against the session's broker: it releases windows, and only aggregates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kafka import KafkaConsumer

from privacy.records import ReleaseRecord

REPO = Path(__file__).resolve().parents[2]


def test_demo_releases_private_aggregates_and_flags_the_incident(bootstrap):
    result = subprocess.run(
        [sys.executable, "-m", "agents.cli", "demo", "--bootstrap", bootstrap,
         "--duration-s", "16", "--window-s", "3", "--incident-after-s", "0", "--rate", "3000"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "released" in out and "window" in out
    assert "fra-03" in out and "above 5% with 95% confidence" in out

    consumer = KafkaConsumer("aggregates.demo", bootstrap_servers=bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    raw = [m.value for m in consumer]
    consumer.close()
    assert raw, "no release records on aggregates.demo"
    records = [ReleaseRecord.from_json(v) for v in raw]
    assert {r.stream for r in records} == {"demo"}
    assert all(r.metrics["accounts"].value >= r.privacy.k for r in records)
    keys = [(r.window_start_ms, r.cell["server"], r.cell["region"]) for r in records]
    assert len(keys) == len(set(keys)), "a (window, cell) was released twice"
    assert not any(b"acct-" in v for v in raw), "a raw account id reached an aggregate topic"
