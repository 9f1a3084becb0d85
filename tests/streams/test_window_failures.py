"""A window whose close or release raises is quarantined, and later windows go on
(both stages without Kafka)."""

from __future__ import annotations

import json

import pytest

from privmon.agents.stage1 import Stage1Partition
from privmon.agents.stage2 import Stage2Partition, WindowFailed
from privmon.privacy import bounding
from privmon.privacy.release import WindowRelease
from privmon.streams.config import load_config
from privmon.streams.partials import decode
from privmon.streams.pseudonym import Pseudonymizer
from tests.integration.pipeline_harness import FAST
from tests.privacy.keyed import KEYS

POLICIES = load_config(FAST).policies
MONITORING = next(p for p in POLICIES if p.name == "monitoring")
W = MONITORING.window_ms
T0 = 1_800_000_000_000 - 1_800_000_000_000 % W


def _messages(window: int, n: int = 8) -> list[tuple[bytes, bytes]]:
    return [(f"acct-{i}".encode(), json.dumps({
        "account_id": f"acct-{i}", "server": "fra-01", "region": "eu", "client_version": "1",
        "platform": "chrome", "latency_ms": 10.0, "bytes": 100, "error": False,
        "session_s": 1.0, "event_time_ms": T0 + window * W + 100}).encode()) for i in range(n)]


def test_a_window_whose_close_raises_is_quarantined_by_stage_2(monkeypatch):
    part = Stage1Partition(partition=0, policies=POLICIES,
                           pseudonymizer=Pseudonymizer({0: b"k" * 32}), idle_lag_ms=0)
    offset = 0
    for window in range(3):
        part.ingest([(offset + i, k, v) for i, (k, v) in enumerate(_messages(window))],
                    now_ms=T0 + window * W + 200)
        offset += 8
    real = bounding.ContributionTable.bounded_rows
    calls = {"n": 0}

    def second_raises(self, rng):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ArithmeticError("injected")
        return real(self, rng)

    monkeypatch.setattr(bounding.ContributionTable, "bounded_rows", second_raises)
    partials, marks = part.close(now_ms=T0 + 3 * W + MONITORING.grace_ms + 1)
    mark = next(m for m in marks if m.stream == "monitoring")
    assert mark.failed == ((T0 + W, "ArithmeticError"),)
    assert sorted({p.window_start_ms for p in partials if p.stream == "monitoring"}) == [
        T0, T0 + 2 * W]
    stage2 = Stage2Partition(policies=POLICIES, sources=1, noise_keys=KEYS)
    for i, record in enumerate([*partials, *marks]):
        stage2.on_record(i, decode(record.encode()))  # through the wire format
    ready = [k for k in stage2.releasable() if k[0] == "monitoring" and k[1] >= T0]
    assert ready == [("monitoring", T0), ("monitoring", T0 + W), ("monitoring", T0 + 2 * W)]
    assert isinstance(stage2.release("monitoring", T0), WindowRelease)
    with pytest.raises(WindowFailed, match="stage 1: ArithmeticError"):
        stage2.release("monitoring", T0 + W)
    assert isinstance(stage2.release("monitoring", T0 + 2 * W), WindowRelease)
    assert ("monitoring", T0 + W) in stage2.released  # never retried
