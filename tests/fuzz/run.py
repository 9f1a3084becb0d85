"""Coverage-guided fuzzing of stage 1's input handling with atheris.

    python -m tests.fuzz.run decode [--seconds 60] [--corpus DIR]
    python -m tests.fuzz.run ingest [--seconds 60] [--corpus DIR]

Seeds come from tests/corpus (the hostile corpus and valid events and
envelopes); the oracle is tests/fuzz/oracle.py. A finding is written by
libFuzzer as crash-<sha1> in the working directory and the run exits non-zero:
add it to tests/corpus/hostile.py with its expected reason. At the end a
summary line ``fuzz-summary {...}`` gives executions, coverage and findings. A run
longer than SEGMENT_S is several libFuzzer processes in turn on the same corpus (why:
beside SEGMENT_S).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A run is cut into libFuzzer processes of at most this long, sharing the corpus. Under
# atheris' instrumentation the fuzzer's memory grows with every numpy comparison of an
# input's bytes (streams/decode.py's _facts, from 1 KiB): 2026-12-07, 150k decode runs
# from the seeds took 294 MiB peak, 69 MiB with that branch off, and uninstrumented
# 300k mutated inputs kept the process at 38 MiB. One process reached the 4 GiB
# -rss_limit_mb (an "out-of-memory" finding) after ~100 s of ingest and 45 s of decode
# (~290k runs); a fresh process every 20 s stays below half of it.
SEGMENT_S = 20


def _seeds(corpus: Path, target: str) -> int:
    """Write the seeds: the hostile corpus, plus valid events and envelopes. For the
    ingest target a first byte 2 keys each message by its own account id."""
    from tests.corpus.hostile import corpus as hostile
    from tests.fuzz.oracle import NOW

    corpus.mkdir(parents=True, exist_ok=True)
    n = 0
    for i, entry in enumerate(hostile(NOW)):
        if len(entry.value) <= 70_000:  # libFuzzer's -max_len below: keep seeds inside it
            prefix = b"\x02" if target == "ingest" else b""
            (corpus / f"seed-{i:04d}").write_bytes(prefix + entry.value)
            n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", choices=("decode", "ingest"))
    ap.add_argument("--seconds", type=int, default=60, help="total fuzzing time (default 60)")
    ap.add_argument("--corpus", type=Path, default=None,
                    help="corpus directory (kept between runs; default: a temporary one)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    corpus = args.corpus or Path(tempfile.mkdtemp(prefix=f"privmon-fuzz-{args.target}-"))
    if args.child:
        _fuzz(args.target, args.seconds, corpus)  # libFuzzer exits the process itself
        return 0
    seeds = _seeds(corpus, args.target)
    print(f"fuzzing {args.target} for {args.seconds} s from {seeds} seeds in {corpus}",
          flush=True)
    started = time.monotonic()
    log = corpus.parent / f"{corpus.name}.log"
    code: int = 0
    with open(log, "wb") as f:
        left = args.seconds
        while left > 0 and code == 0:  # one libFuzzer process per segment, one corpus
            seconds = min(SEGMENT_S, left)
            left -= seconds
            code = subprocess.call([sys.executable, "-m", "tests.fuzz.run", args.target,
                                    "--child", "--seconds", str(seconds), "--corpus",
                                    str(corpus)], stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    text = log.read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if not ln.startswith("INFO: Instrumenting")]
    print("\n".join(lines[-25:]), flush=True)
    return _summary(args.target, text, time.monotonic() - started, corpus, code)


def _fuzz(target_name: str, seconds: int, corpus: Path) -> None:
    import atheris

    with atheris.instrument_imports(include=["privmon"]):
        from tests.fuzz.targets import IngestTarget, decode_target
    target = decode_target if target_name == "decode" else IngestTarget()
    findings = corpus.parent / f"{corpus.name}-findings"
    findings.mkdir(exist_ok=True)
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", "-max_len=70000", "-timeout=20",
                   "-rss_limit_mb=4096", "-print_final_stats=1",
                   f"-artifact_prefix={findings}/", str(corpus)], target)
    atheris.Fuzz()


def _summary(target: str, text: str, seconds: float, corpus: Path, code: object) -> int:
    def last(pattern: str) -> int | None:
        found = re.findall(pattern, text)
        return int(found[-1]) if found else None

    executed = [int(n) for n in re.findall(r"stat::number_of_executed_units:\s*(\d+)", text)]
    summary = {"target": target, "seconds": round(seconds),
               "executions": sum(executed) if executed else None,
               "segments": len(executed), "coverage": last(r"\bcov: (\d+)"),
        "features": last(r"\bft: (\d+)"), "corpus_files": len(list(corpus.iterdir())),
        "findings": len(re.findall(r"Uncaught Python exception|==\d+== ERROR|"
                                   r"deadly signal|Test unit written to", text)) // 2 + (
            0 if code == 0 else 1),
        "exit": code}
    print("fuzz-summary " + json.dumps(summary), flush=True)
    return 0 if not summary["findings"] and code in (0, None) else 1


if __name__ == "__main__":
    sys.exit(main())
