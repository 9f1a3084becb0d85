"""State memory of stage 1: --accounts accounts over --cells cells in open windows.

    python -m bench.state_memory [--accounts 1000000] [--cells 10000] [--write]

Feeds one Stage1Partition (configs/streams.toml with private cells, as
bench/pipeline.py runs it: monitoring, research and capacity, all windows
open) with --events-per-account events per account in envelopes, then
reports the process's resident memory (VmRSS before and after,
VmHWM peak) and the state sizes: per stream the (account, cell) rows of the
open windows, and the participation limiter's accounts. No Kafka: this is the
in-memory state a worker holds for its partitions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.state_memory",
                                description=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accounts", type=int, default=1_000_000)
    p.add_argument("--cells", type=int, default=10_000)
    p.add_argument("--events-per-account", type=int, default=2)
    p.add_argument("--write", action="store_true")
    args = p.parse_args(argv)

    # The shipped config with private cells (as bench.pipeline runs it): the synthetic
    # servers here are not the inventory, and public cells would fold them into one.
    import tempfile

    from bench.pipeline import bench_config
    from privmon.agents.stage1 import Stage1Partition
    from privmon.streams.config import load_config
    from privmon.streams.participation_state import StateChunk
    from privmon.streams.pseudonym import Pseudonymizer

    config = load_config(bench_config(Path(tempfile.mkdtemp(prefix="privmon-state-")),
                                      "telemetry.raw", ""))
    rng = np.random.default_rng(5)
    now = int(time.time() * 1000)
    window_start = now - now % 60_000  # all events in the current minute: windows stay open
    stage = Stage1Partition(partition=0, policies=config.policies,
                            pseudonymizer=Pseudonymizer({0: b"m" * 32}), idle_lag_ms=10**9)
    base = _mib("VmRSS")
    t0 = time.perf_counter()
    home = rng.integers(0, args.cells, args.accounts)
    batch, offset, per = [], 0, args.events_per_account
    for a in range(args.accounts):
        cell = int(home[a])
        events = [{"account_id": f"acct-{a:07d}", "server": f"s{cell:05d}",
                   "region": f"r{cell % 8}", "client_version": f"5.{cell % 4}",
                   "platform": ("chrome", "firefox", "edge", "safari")[cell % 4],
                   "latency_ms": 80.0, "bytes": 100_000, "error": False, "session_s": 300.0,
                   "event_time_ms": window_start + 1000 + j} for j in range(per)]
        batch.append((offset, events[0]["account_id"].encode(),
                      json.dumps({"events": events}).encode()))
        offset += 1
        if len(batch) == 5000:
            stage.ingest(batch, now_ms=window_start + 2000)
            batch = []
        if a and a % 200_000 == 0:
            print(f"  {a:,} accounts, RSS {_mib('VmRSS'):.0f} MiB", file=sys.stderr, flush=True)
    if batch:
        stage.ingest(batch, now_ms=window_start + 2000)
    seconds = time.perf_counter() - t0
    rows = {k[0]: len(w.table) for k, w in stage.open.items()}
    cells = {k[0]: len(w.labels) for k, w in stage.open.items()}
    rss, hwm = _mib("VmRSS"), _mib("VmHWM")
    # Saving the participation-cap state (every account changed: the worst case of a
    # close) and restoring it, as a restarted worker does.
    t0 = time.perf_counter()
    stage.close(now_ms=window_start + 2000)  # closes nothing; collects the changed buckets
    saved = stage.take_state()
    save_s = time.perf_counter() - t0
    saved_mib = sum(len(v or b"") for _, v in saved) / 2**20
    t0 = time.perf_counter()
    restored = Stage1Partition(
        partition=0, policies=config.policies, pseudonymizer=Pseudonymizer({0: b"m" * 32}),
        idle_lag_ms=10**9, participation=[StateChunk.decode(v) for _, v in saved if v])
    restore_s = time.perf_counter() - t0
    assert len(restored.accounts) == len(stage.accounts)
    hwm_saved = _mib("VmHWM")
    text = (f"\n## Stage-1 state: {args.accounts:,} accounts, {args.cells:,} cells, "
            f"all windows open ({time.strftime('%Y-%m-%d')})\n\n"
            f"`python -m bench.state_memory --accounts {args.accounts} --cells {args.cells}`: "
            f"{args.accounts * per:,} events in envelopes of {per} into one Stage1Partition "
            f"(configs/streams.toml, 3 streams) in {seconds:.1f} s. (account, cell) rows per "
            f"stream: {rows}; cells: {cells}; ids kept: {len(stage.accounts):,}. "
            f"RSS {base:.0f} MiB before, {rss:.0f} MiB after (+{rss - base:.0f} MiB state); "
            f"peak {hwm:.0f} MiB. Saving the participation-cap state with every account "
            f"changed (the worst case of one close): {len(saved)} records, {saved_mib:.0f} MiB "
            f"in {save_s:.2f} s; restoring it into a new partition: {restore_s:.2f} s (peak "
            f"{hwm_saved:.0f} MiB with both copies).\n")
    print(text)
    if args.write:
        with open(REPO / "bench" / "RESULTS.md", "a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
