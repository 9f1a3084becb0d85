"""Benchmark: bound, aggregate and release 1M events into 10k cells (no Kafka).

Side by side, on the same generated events in the same run:
- baseline: what one writes first, a per-event Python dict aggregation
  (counts, sums, errors per cell) with no bounding, thresholds or noise;
- privmon core: ContributionTable (Linf, L0) -> accumulators -> release_window
  (k floor, DP selection, noise, quantile bootstrap).
Times are wall-clock of one pass; peak memory is tracemalloc's peak of a
second, traced pass (numpy reports its buffers to tracemalloc).

    python -m bench.privacy_core [--events 1000000] [--cells 10000] [--write]
"""

from __future__ import annotations

import argparse
import platform
import secrets
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from privmon.privacy import accumulators as acc
from privmon.privacy.bounding import ContributionTable
from privmon.privacy.kinds import BooleanMetric, HistogramMetric, ValueMetric
from privmon.privacy.noise_keys import NoiseKeys
from privmon.privacy.params import (
    ContributionBounds,
    HorizonCap,
    ParticipationCap,
    PrivacyBudget,
    StreamPolicy,
)
from privmon.privacy.release import release_window

BATCH = 100_000


def policy() -> StreamPolicy:
    edges = (0, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000)
    return StreamPolicy(
        name="bench", window_ms=60_000, dimensions=("server", "region"),
        metrics=(
            ValueMetric(name="latency", field="latency_ms", lower=0, upper=5000),
            ValueMetric(name="bytes", field="bytes", lower=0, upper=10_000_000, resolution=1000),
            BooleanMetric(name="errors", field="error"),
            HistogramMetric(name="latency_hist", field="latency_ms", edges=edges),
        ),
        bounds=ContributionBounds(max_cells=2, max_events_per_cell=10),
        budget=PrivacyBudget(mechanism="geometric", epsilon=1.0, delta=1e-6, shares={
            "selection": 0.2, "events": 0.2, "latency": 0.15, "bytes": 0.15,
            "errors": 0.15, "latency_hist": 0.15,
        }),
        k=20, participation=ParticipationCap(max_windows=60, period_ms=86_400_000),
        horizon_caps=(HorizonCap(horizon_ms=86_400_000, max_epsilon=60, max_delta=1e-4),),
        policy_version="bench",
    )


def generate(n_events: int, n_cells: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_accounts = max(1, n_events // 5)
    return {
        "account": rng.integers(0, n_accounts, n_events),
        # Skewed cell popularity, like servers: a few busy ones, a long tail.
        "cell": np.minimum(rng.zipf(1.3, n_events) - 1, n_cells - 1),
        "latency_ms": rng.lognormal(4, 1, n_events),
        "bytes": rng.lognormal(11, 2, n_events),
        "error": rng.random(n_events) < 0.02,
    }


def baseline(ev: dict[str, np.ndarray]) -> int:
    cells: dict[int, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0])
    for cell, lat, byt, err in zip(ev["cell"].tolist(), ev["latency_ms"].tolist(),
                                   ev["bytes"].tolist(), ev["error"].tolist(), strict=True):
        c = cells[cell]
        c[0] += 1
        c[1] += lat
        c[2] += byt
        c[3] += err
    return len(cells)


def privmon(ev: dict[str, np.ndarray], pol: StreamPolicy) -> tuple[int, int]:
    table = ContributionTable(pol)
    n = ev["account"].size
    for s in range(0, n, BATCH):
        sl = slice(s, s + BATCH)
        table.add(ev["account"][sl], ev["cell"][sl],
                  {k: ev[k][sl] for k in ("latency_ms", "bytes", "error")})
    totals = acc.add(acc.initialize(pol), table.bounded_rows(np.random.default_rng()))
    noise = NoiseKeys({0: secrets.token_bytes(32)}).window(pol.name, pol.policy_version, 0)
    rel = release_window(totals, pol, window_start_ms=0,
                         cell_labels=lambda c: {"server": str(c), "region": "r"}, noise=noise)
    return len(totals), len(rel.records)


def measure(fn: Callable[[], object]) -> tuple[float, float, object]:
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak / 2**20, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--write", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()
    pol = policy()
    print(f"generating {args.events:,} events over {args.cells:,} cells ...", flush=True)
    ev = generate(args.events, args.cells)
    print("baseline (per-event dict, no privacy) ...", flush=True)
    b_s, b_mb, b_cells = measure(lambda: baseline(ev))
    print("privmon core (bound, aggregate, release) ...", flush=True)
    p_s, p_mb, (p_cells, released) = measure(lambda: privmon(ev, pol))
    rows = [
        "| pipeline | seconds | events/s | peak traced MiB | cells | released |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| baseline dict, no privacy | {b_s:.2f} | {args.events / b_s:,.0f} | {b_mb:.0f} "
        f"| {b_cells:,} | (all, exact) |",
        f"| privmon core | {p_s:.2f} | {args.events / p_s:,.0f} | {p_mb:.0f} "
        f"| {p_cells:,} | {released:,} |",
    ]
    header = (
        f"\n## Privacy core: {args.events:,} events into {args.cells:,} cells\n\n"
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {platform.python_version()}, "
        f"numpy {np.__version__}, `python -m bench.privacy_core`\n\n"
    )
    table = header + "\n".join(rows) + "\n"
    print(table)
    if args.write:
        path = Path(__file__).with_name("RESULTS.md")
        if not path.exists():
            path.write_text("# Benchmark results\n\nWritten by the benchmarks in bench/.\n")
        with open(path, "a") as f:
            f.write(table)


if __name__ == "__main__":
    main()
