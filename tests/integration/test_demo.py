"""`privmon demo` against the session's broker: it runs the real worker and shows releases."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from privmon.privacy.records import ReleaseRecord
from tests.integration.pipeline_harness import read_topic, release_records

REPO = Path(__file__).resolve().parents[2]


def test_demo_releases_private_aggregates_and_alerts_on_the_incident(bootstrap, tmp_path,
                                                                     figures):
    prefix = "demotest."
    result = subprocess.run(
        [sys.executable, "-m", "privmon.agents.cli", "demo", "--bootstrap", bootstrap,
         "--duration-s", "45", "--incident-after-s", "0", "--topic-prefix", prefix],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "[monitoring] window" in out and "[capacity] window" in out
    # The incident fires the noise-aware rule, and only for fra-03. Healthy servers fail 1%
    # of requests with noise std ~1.5%: a false alarm needs noise > 4% + 4.4 std (~7 std,
    # Laplace tail ~2.5e-5 per evaluation), so over ~50 evaluations this check fails
    # spuriously with probability ~1e-3.
    alerts = re.findall(r"^!! ALERT \[(\w+)\] window [\d:]+: (.*)$", out, re.M)
    assert alerts, out[-3000:]
    assert set(alerts) == {("page", "error rate of fra-03 (eu-central) above 5%")}
    assert "with confidence 0.999" in out
    fired = [json.loads(r.value) for r in read_topic(bootstrap, f"{prefix}privmon.alerts")]
    assert len(fired) == len(alerts)
    assert {(a["rule"], a["cell"]["server"]) for a in fired} == {
        ("server_error_rate_high", "fra-03")}
    assert all(a["value"]["value"] - a["z"] * a["value"]["noise_std"] > 0.05 for a in fired)
    released = [int(n) for n in re.findall(r"worker released \d+ windows, (\d+) cells", out)]
    assert released and released[-1] > 0
    assert "accepted" not in out and "dead-lettered" not in out  # exact input counts: no

    raw = [r.value for r in release_records(read_topic(bootstrap,
                                                       f"{prefix}aggregates.monitoring"))]
    assert raw, "no release records on the monitoring topic"
    records = [ReleaseRecord.from_json(v) for v in raw]
    keys = [(r.window_start_ms, r.cell["server"], r.cell["region"]) for r in records]
    assert len(keys) == len(set(keys)), "a (window, cell) was released twice"
    assert all(r.metrics["accounts"].value >= r.privacy.k for r in records)
    for topic in ("aggregates.monitoring", "aggregates.capacity", "privmon.partials",
                  "privmon.ledger", "privmon.progress"):
        for record in read_topic(bootstrap, prefix + topic, committed_only=False):
            assert b"acct-" not in (record.key or b"") + record.value, topic
    dlq = [json.loads(r.value)["reason"] for r in read_topic(bootstrap, f"{prefix}telemetry.dlq")]
    assert set(dlq) <= {"bad_json", "bad_envelope", "wrong_type"} and dlq

    # The demo's "what next": every command it prints runs, as printed, and shows data.
    nexts = out.split("\nwhat next:", 1)[1].splitlines()[1:]
    assert len(nexts) == 4, out[-2000:]
    for line in nexts:
        got = subprocess.run(shlex.split(line.strip()), cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
        assert got.returncode == 0 and "Traceback" not in got.stderr, (line, got.stderr[-2000:])
    assert len((tmp_path / "demo-capacity.csv").read_text().splitlines()) > 1
    assert (tmp_path / "demo-report" / "report.html").exists()
    figures(f"demo: {len(alerts)} alerts, all fra-03; the {len(nexts)} commands it prints "
            "(subscribe, export, report capacity, budget) ran as printed")
