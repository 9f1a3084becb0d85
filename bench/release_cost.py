"""Benchmark: stage 2's release work for one window of N public cells (no Kafka).

What a worker does between "every stage-1 partition marked the window" and
"records handed to the producer", for each partials partition: merge the
partials, draw the noise, build and encode every record (``compute_releases``).
The configuration is the latency benchmark's (``bench/pipeline.py``: monitoring
with public cells, a value and a boolean metric, geometric noise), the partials
come from 4 stage-1 partitions and are routed to 4 stage-2 partitions as the
worker routes them. The release latency target (p99 < 1 s at 10k cells, < 2 s
at 100k) needs this well under those figures, since the worker's stage 1 and the
broker share the same 2 cores.

    python -m bench.release_cost [--cells 10000] [--windows 3] [--baseline REV]
                                 [--profile FILE]

``--baseline REV`` runs the same windows, one after the other in the same run, on
the code of git revision REV (extracted to a temporary tree) and prints both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from privmon.agents.stage2 import Stage2Partition
from privmon.agents.stage2_runner import compute_releases
from privmon.privacy.noise_keys import NoiseKeys
from privmon.streams.config import load_config
from privmon.streams.partials import Partials, decode, mark, route

try:  # (absent from a baseline revision before it)
    from privmon.agents.stage2 import ListedCells
except ImportError:
    ListedCells = None

SOURCES = PARTITIONS = 4
T0 = 1_800_000_000_000
REPO = Path(__file__).resolve().parents[1]


def config_for(cells: int, workdir: Path, window_ms: int = 2000):  # type: ignore[no-untyped-def]
    try:
        from bench.latency import LATENCY_TOML
    except ImportError:  # a baseline revision before bench/latency.py
        from bench.pipeline import LATENCY_TOML  # type: ignore[attr-defined,no-redef]

    path = workdir / "latency.toml"
    path.write_text(LATENCY_TOML.format(prefix="", window_ms=window_ms, grace_ms=1000,
                                        max_windows=40_000))
    (workdir / "inventory.toml").write_text("".join(
        f'[[cells]]\nserver = "s{i:05d}"\nregion = "r{i % 4}"\n' for i in range(cells)))
    return load_config(path)


def partials(policy, cells: int, start: int, rng: np.random.Generator) -> list[Partials]:  # type: ignore[no-untyped-def]
    """Each stage-1 partition's partials of one window: every cell with events in
    about 9 of 10 cases per source (the load's 5 home accounts a cell, spread)."""
    labels = [(f"s{i:05d}", f"r{i % 4}") for i in range(cells)]
    out = []
    for source in range(SOURCES):
        have = np.flatnonzero(rng.random(cells) < 0.9)
        n = have.size
        accounts = rng.integers(1, 4, n)
        events = accounts * rng.integers(1, 10, n)
        columns: dict[str, list] = {}
        for m in policy.metrics:
            columns[m.name] = rng.integers(-events * 10, events * 10 + 1).tolist() \
                if m.name == "latency" else rng.integers(0, events + 1).tolist()
        out.append(Partials(partition=source, stream=policy.name, window_start_ms=start,
                            cells=[labels[i] for i in have.tolist()],
                            accounts=accounts.tolist(), events=events.tolist(),
                            columns=columns))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=10_000, help="public cells per window")
    ap.add_argument("--windows", type=int, default=3, help="windows timed (one after another)")
    ap.add_argument("--profile", help="write a pyinstrument text profile of the timed part here")
    ap.add_argument("--baseline", metavar="REV", help="also time git revision REV, after this")
    ap.add_argument("--prepared", action="store_true",
                    help="draw each window's noise ahead first, as a worker does after its "
                    "previous release (Stage2Partition.prepare_next), and time it apart")
    args = ap.parse_args(argv)
    mine = measure(args)
    print(json.dumps({"tree": "this", **mine}), flush=True)
    if args.baseline:
        theirs = in_revision(args.baseline, ["--cells", str(args.cells),
                                             "--windows", str(args.windows),
                                             *(["--prepared"] if args.prepared else [])])
        print(json.dumps({**theirs, "tree": args.baseline}), flush=True)
        print(f"{args.cells} cells: {mine['best_s']:.3f} s a window here, "
              f"{theirs['best_s']:.3f} s at {args.baseline} "
              f"({theirs['best_s'] / mine['best_s']:.2f}x)")
    return 0


def in_revision(rev: str, argv: list[str]) -> dict:
    """This benchmark on the code of ``rev``: its last line of JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        from bench.shared import extract_revision  # (here: a baseline's bench may lack it)

        tree = extract_revision(rev, Path(tmp)) / "privmon"  # privmon from PYTHONPATH=tmp
        (tree / "bench" / "release_cost.py").write_text(Path(__file__).read_text())
        out = subprocess.run([sys.executable, "-m", "bench.release_cost", *argv], cwd=tree,
                             env={**os.environ, "PYTHONPATH": tmp}, capture_output=True,
                             text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> dict:
    """Times ``args.windows`` windows of ``args.cells`` public cells, one by one."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_for(args.cells, Path(tmp))
    policy = cfg.policy("monitoring")
    w = policy.window_ms
    keys = NoiseKeys({0: b"n" * 32})
    rng = np.random.default_rng(1)
    shared = {"listed": ListedCells()} if ListedCells else {}  # as in a worker
    parts = [Stage2Partition(policies=(policy,), sources=SOURCES, noise_keys=keys,
                             released=None, partition=q, partitions=PARTITIONS, **shared)
             for q in range(PARTITIONS)]
    first = T0 - T0 % w
    # the first mark's lookback windows are released (and not timed) first
    for part in parts:
        for s in range(SOURCES):
            part.on_record(0, mark(s, policy.name, first))
    for part in parts:
        compute_releases(part, part.releasable())
    profiler = None
    if args.profile:
        from pyinstrument import Profiler
        profiler = Profiler()
    per_window, preparing = [], []
    for k in range(args.windows):
        start = first + k * w
        for block in partials(policy, args.cells, start, rng):
            for _, value, q in route(block, PARTITIONS):
                parts[q].on_record(1, decode(value))
        for part in parts:
            for s in range(SOURCES):
                part.on_record(2, mark(s, policy.name, start + w))
        if args.prepared:  # as a worker does after its previous release
            tp = time.perf_counter()
            for part in parts:
                part.prepare_next()
            preparing.append(time.perf_counter() - tp)
        if profiler is not None:
            profiler.start()
        t = time.perf_counter()
        released = 0
        for part in parts:
            for _, _, outcome in compute_releases(part, part.releasable()):
                assert not isinstance(outcome, Exception), outcome
                released += len(outcome[1])
        per_window.append(time.perf_counter() - t)
        if profiler is not None:
            profiler.stop()
        if released != args.cells + 1:  # and the (unlisted) cell
            raise AssertionError(f"window {k}: {released} records for {args.cells} cells "
                                 "and (unlisted)")
        print(f"window {k}: {released} records in {per_window[-1]:.3f} s "
              f"({per_window[-1] / released * 1e6:.1f} µs a cell)", flush=True)
    best = min(per_window)
    print(f"{args.cells} cells: best {best:.3f} s a window, "
          f"{best / args.cells * 1e6:.1f} µs a cell", flush=True)
    if profiler is not None:
        Path(args.profile).write_text(profiler.output_text(unicode=False, show_all=False))
    out = {"cells": args.cells, "best_s": round(best, 4),
           "windows_s": [round(x, 4) for x in per_window]}
    if preparing:
        out["prepare_best_s"] = round(min(preparing), 4)
        print(f"(noise drawn ahead, off the release's path: {min(preparing):.3f} s)")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
