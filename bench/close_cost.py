"""Benchmark: stage 1's close of one window at N public cells (no Kafka).

What a worker's stage 1 computes once a window is due, for each of its 4 raw
partitions (``stage1_runner._closed``: close the window — bound, sum, partials by
label — route its cells to the stage-2 partitions and encode them, and the
changed participation-cap state), on the latency benchmark's load
(bench/latency.py: its config, N public cells with 5 home accounts each, 20,000
events/s; 10 s windows, so ~200k events a window). Windows are timed one after
another, after one untimed window (whose accounts are all new).

    python -m bench.close_cost [--cells 100000] [--windows 3] [--profile FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.latency import LATENCY_TOML
from privmon.agents.stage1 import Stage1Partition
from privmon.agents.stage1_runner import _closed
from privmon.streams.config import load_config
from privmon.streams.generator import TelemetryGenerator
from privmon.streams.listed import ListedCells
from privmon.streams.partitioner import partitions_for_keys
from privmon.streams.pseudonym import Pseudonymizer

PARTITIONS = 4
T0 = 1_800_000_000_000
RATE = 20_000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--windows", type=int, default=3, help="windows timed")
    ap.add_argument("--window-ms", type=int, default=10_000)
    ap.add_argument("--profile", help="write a pyinstrument text profile of the timed closes")
    args = ap.parse_args(argv)
    w = args.window_ms
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "latency.toml"
        path.write_text(LATENCY_TOML.format(prefix="", window_ms=w, grace_ms=1000,
                                            max_windows=min(40_000, 86_400_000 // w)))
        (Path(tmp) / "inventory.toml").write_text("".join(
            f'[[cells]]\nserver = "s{i:05d}"\nregion = "r{i % 4}"\n'
            for i in range(args.cells)))
        cfg = load_config(path)
    gen = TelemetryGenerator(accounts=args.cells * 5, seed=3)
    gen.servers = [(f"s{i:05d}", f"r{i % 4}") for i in range(args.cells)]
    gen.home = np.arange(args.cells * 5) % args.cells
    gen.account_p = np.full(args.cells * 5, 1 / (args.cells * 5))
    listed = ListedCells()  # one for the partitions, as in a worker
    parts = [Stage1Partition(partition=q, policies=cfg.policies, listed=listed,
                             pseudonymizer=Pseudonymizer({0: b"m" * 32}), idle_lag_ms=10**9)
             for q in range(PARTITIONS)]
    offsets = [0] * PARTITIONS
    profiler = None
    if args.profile:
        from pyinstrument import Profiler
        profiler = Profiler()
    first = T0 - T0 % w
    times = []
    for k in range(args.windows + 1):
        start = first + k * w
        events = gen.events(RATE * w // 1000, start_ms=start, end_ms=start + w)
        by_part: list[list] = [[] for _ in range(PARTITIONS)]
        where = partitions_for_keys([e["account_id"].encode() for e in events], PARTITIONS)
        for e, q in zip(events, where.tolist(), strict=True):
            by_part[q].append((offsets[q], e["account_id"].encode(),
                               json.dumps(e).encode()))
            offsets[q] += 1
        for q, part in enumerate(parts):
            for i in range(0, len(by_part[q]), 5000):
                part.ingest(by_part[q][i:i + 5000], now_ms=start + w)
        now = start + w + 1000 + 1  # due: end + grace
        if k and profiler is not None:
            profiler.start()
        t = time.perf_counter()
        windows = 0
        for part in parts:
            part.watermark.observe(now)
            windows += _closed(part, now, True, PARTITIONS).windows
        elapsed = time.perf_counter() - t
        if k and profiler is not None:
            profiler.stop()
        if windows != PARTITIONS:
            raise AssertionError(f"window {k}: {windows} partitions closed it, expected "
                                 f"{PARTITIONS}")
        if k:
            times.append(elapsed)
            print(f"window {k}: 4 partitions closed in {elapsed:.3f} s", flush=True)
    if profiler is not None:
        Path(args.profile).write_text(profiler.output_text(unicode=False, show_all=False))
    print(json.dumps({"cells": args.cells, "best_s": round(min(times), 4),
                      "windows_s": [round(t, 4) for t in times]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
