"""A bounded coverage-guided fuzz run of each target in every test run (CI included).

The long runs (30+ minutes, figures in tests/fuzz/RESULTS.md) use the same
command with a larger --seconds. Atheris is a dev dependency: if it cannot
be imported this test fails, it does not skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECONDS = 40


@pytest.mark.parametrize("target", ["decode", "ingest"])
def test_bounded_fuzz_run_finds_nothing(target, tmp_path, figures):
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", target, "--seconds", str(SECONDS),
         "--corpus", str(tmp_path / "corpus")],
        cwd=REPO, capture_output=True, text=True, timeout=SECONDS + 240,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("fuzz-summary ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(lines[-1].removeprefix("fuzz-summary "))
    findings = sorted(p.name for p in (tmp_path / "corpus-findings").glob("*"))
    assert proc.returncode == 0 and summary["findings"] == 0, (findings, proc.stdout[-3000:])
    assert summary["executions"] and summary["executions"] > 2_000, summary  # it did run
    # ... guided by coverage: with privmon's modules not instrumented (an include list
    # that names no module, as after the move to the privmon namespace) libFuzzer
    # reports no edges and the run is blind random input.
    assert summary["coverage"] and summary["coverage"] > 100, summary  # (~150 decode, ~330 ingest)
    figures(f"fuzz {target}: {summary['executions']} executions in {summary['seconds']} s, "
            f"coverage {summary['coverage']} edges, {summary['features']} features, "
            f"corpus {summary['corpus_files']}, findings 0")
