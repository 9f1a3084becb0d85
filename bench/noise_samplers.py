"""Benchmark: release noise at production parameters, privmon's exact keyed samplers
side by side with the code before them (diffprivlib) and with OpenDP, in one run.

1. Per draw, at the scales configs/streams.toml gives (monitoring: discrete
   Laplace; research: discrete Gaussian up to σ ≈ 7.07e6): µs per draw of
   privmon (privacy/samplers.py over a keyed stream), OpenDP 0.16 (one call per
   value and one vector call for 10,000 values; Rust core, OS randomness, so not
   keyable), and diffprivlib 0.6.6 (the old samplers; few draws where they are slow).
   Also the Spearman correlation of a draw's time with |value| (a timing channel),
   the µs per draw in bulk (``IntegerNoise.add``), and the same three figures for
   the previous privmon samplers (``--previous-rev``, CKS as in the paper).
2. One window of 10,000 cells per stream through ``release_window``, time and
   tracemalloc peak, for this tree and for a baseline revision (default: the last
   commit with diffprivlib's samplers), each in its own process. The baseline's
   research release is measured on ``--baseline-research-cells`` cells and its
   spread computation once: at production σ it takes seconds and GB per call.
   Times are of an untraced pass; peak memory of a second, traced one.

    python -m bench.noise_samplers [--cells 10000] [--baseline-rev 1938aad]
        [--previous-rev 915e463] [--write]

Needs the bench extra (``pip install -e '.[bench]'``: diffprivlib, opendp).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import MappingProxyType

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BASELINE_REV = "1938aad"  # the last commit whose release noise came from diffprivlib
PREVIOUS_REV = "915e463"  # the last commit with CKS samplers whose cost grows with |value|


# ---------------------------------------------------------------- per draw
def _time_per_draw(draw, n: int) -> tuple[float, float]:
    """(µs per draw, Spearman correlation of each draw's time with |value|)."""
    times, values = np.empty(n), np.empty(n)
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        v = draw()
        times[i] = clock() - t0
        values[i] = abs(v)
    from scipy import stats

    rho = stats.spearmanr(times, values).statistic if np.ptp(values) else 0.0
    return float(times.mean() / 1e3), float(rho)


_CASES = (("monitoring", "events"), ("monitoring", "latency"), ("research", "events"),
          ("research", "latency"), ("research", "session"))


def _cases() -> list:
    from privmon.privacy.release import noise_for
    from privmon.streams.config import load_config

    config = load_config()
    return [(stream, quantity, noise_for(config.policy(stream), quantity))
            for stream, quantity in _CASES]


def privmon_per_draw(n: int) -> list[dict]:
    """This tree's samplers: µs per scalar draw, its time's Spearman correlation with
    |value|, and µs per draw in bulk (``add`` over 10,000 streams, one draw each)."""
    from privmon.privacy.samplers import KeyedStream

    key = os.urandom(32)
    rows = []
    for stream, quantity, noise in _cases():
        rng = KeyedStream(key, b"bench")
        us, rho = _time_per_draw(lambda noise=noise, rng=rng: noise.draw(rng), n)
        streams = [KeyedStream(key, f"bulk/{i}".encode()) for i in range(10_000)]
        t0 = time.perf_counter()
        noise.add(np.zeros(10_000, np.int64), streams)
        bulk = (time.perf_counter() - t0) / 10_000 * 1e6
        rows.append({"case": f"{stream}.{quantity}", "us": round(us, 1),
                     "time_vs_abs_value": round(rho, 3), "bulk_us": round(bulk, 1)})
    return rows


def per_draw(n: int, previous: Path | None = None) -> list[dict]:
    import diffprivlib.mechanisms as dpl
    import opendp.prelude as dp

    dp.enable_features("contrib")
    mine = privmon_per_draw(n)
    before = (_in_tree(previous, _call(f"privmon_per_draw({n})"), 900) if previous
              else None) or [{}] * len(mine)
    rows = []
    for (stream, quantity, noise), ours, prev in zip(_cases(), mine, before, strict=True):
        if noise.kind == "geometric":
            scale = -1 / math.log(noise.param)
            odp = dp.m.make_laplace(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale)
            odp_vec = dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=int)),
                                        dp.l1_distance(T=int), scale)
            # diffprivlib's Geometric takes (epsilon, sensitivity): scale = sensitivity/epsilon
            old = dpl.Geometric(epsilon=1 / scale, sensitivity=1)
            old_n = n
        else:
            scale = noise.param
            odp = dp.m.make_gaussian(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale)
            odp_vec = dp.m.make_gaussian(dp.vector_domain(dp.atom_domain(T=int)),
                                         dp.l2_distance(T=int), scale)

            class _Sigma(dpl.GaussianDiscrete):  # the old code's zCDP calibration
                def _find_scale(self, s=scale):
                    return s

            old = _Sigma(epsilon=1.0, delta=0.5, sensitivity=1)
            old_n = 3 if scale > 1e5 else max(3, n // 20)  # seconds per draw at production σ
        odp_one = _time_per_draw(lambda m=odp: m(0), max(200, n // 20))
        zeros = [0] * 10_000
        t0 = time.perf_counter()
        odp_vec(zeros)
        odp_vec_us = (time.perf_counter() - t0) / len(zeros) * 1e6
        dpl_one = _time_per_draw(lambda m=old: m.randomise(0), old_n)
        rows.append({
            "case": f"{stream}.{quantity}", "noise": noise.description,
            "scale_or_sigma": round(scale, 2),
            "privmon_us": ours["us"], "privmon_time_vs_abs_value": ours["time_vs_abs_value"],
            "privmon_bulk_us": ours["bulk_us"],
            "previous_us": prev.get("us"), "previous_time_vs_abs_value":
                prev.get("time_vs_abs_value"), "previous_bulk_us": prev.get("bulk_us"),
            "opendp_us": round(odp_one[0], 1), "opendp_vector_us": round(odp_vec_us, 2),
            "diffprivlib_us": round(dpl_one[0], 1), "diffprivlib_draws": old_n,
            "diffprivlib_time_vs_abs_value": round(dpl_one[1], 3),
        })
        print(json.dumps(rows[-1]), flush=True)
    return rows


# ---------------------------------------------------------------- one window
def _totals(policy, cells: int, rng: np.random.Generator):
    from privmon.privacy.accumulators import CellTotals
    from privmon.privacy.kinds import HistogramMetric

    linf = policy.bounds.max_events_per_cell
    accounts = rng.integers(policy.k * 40, policy.k * 80, cells)
    events = accounts * rng.integers(1, linf + 1, cells)
    cols = {}
    for m in policy.metrics:
        if isinstance(m, HistogramMetric):
            pick = rng.multinomial(1, [1 / m.n_buckets] * m.n_buckets, cells)
            cols[m.name] = pick * events[:, None]
        else:
            cols[m.name] = rng.integers(0, 100, cells) * events
    return CellTotals(cells=np.arange(cells, dtype=np.int64), accounts=accounts.astype(np.int64),
                      events=events.astype(np.int64), columns=MappingProxyType(cols))


def window(stream: str, cells: int) -> dict:
    """Release one window of ``cells`` cells with this interpreter's ``privacy`` package."""
    import inspect

    from privmon.privacy import release
    from privmon.streams.config import load_config

    policy = load_config().policy(stream)
    totals = _totals(policy, cells, np.random.default_rng(1))
    labels = {d: "x" for d in policy.dimensions}
    kwargs = {}
    if "noise" in inspect.signature(release.release_window).parameters:
        from privmon.privacy.noise_keys import NoiseKeys

        kwargs["noise"] = NoiseKeys({0: os.urandom(32)}).window(stream, "bench", 0)

    def label(c: int) -> dict:
        return {**labels, policy.dimensions[0]: str(c)}

    t0 = time.perf_counter()  # timed untraced; memory from a second, traced pass
    rel = release.release_window(totals, policy, window_start_ms=0, cell_labels=label, **kwargs)
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    release.release_window(totals, policy, window_start_ms=0, cell_labels=label, **kwargs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"stream": stream, "cells": cells, "released": len(rel.records),
            "seconds": round(seconds, 3), "peak_mib": round(peak / 2**20, 1)}


def spread_once() -> dict:
    """The old code's spread of the research latency noise (σ ≈ 7.07e6), once."""
    from privmon.privacy import mechanisms

    sigma = 7_071_067.8
    fn = (getattr(mechanisms, "_discrete_gaussian_spread", None)
          or mechanisms.discrete_gaussian_spread)
    tracemalloc.start()
    t0 = time.perf_counter()
    fn(sigma)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"spread_sigma": sigma, "seconds": round(seconds, 3),
            "peak_mib": round(peak / 2**20, 1)}


def _call(expr: str) -> str:
    """Code that prints ``expr`` (a call into this module) as JSON."""
    name = expr.split("(")[0]
    return f"import json; from bench.noise_samplers import {name}; print(json.dumps({expr}))"


def _in_tree(tree: Path, code: str, timeout_s: float) -> dict | None:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    try:
        out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, timeout=timeout_s,
                             capture_output=True, text=True, check=True).stdout
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"baseline run failed: {exc.stderr[-2000:]}") from None
    return json.loads(out.strip().splitlines()[-1])


def _baseline_tree(rev: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = into / "baseline.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), rev, "privacy",
                    "streams", "agents", "bench", "configs"], cwd=REPO, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    (into / "tree" / "bench" / "noise_samplers.py").write_text(Path(__file__).read_text())
    return into / "tree"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=10_000, help="cells per window (10,000)")
    ap.add_argument("--draws", type=int, default=4_000, help="draws per case for per-draw times")
    ap.add_argument("--baseline-rev", default=BASELINE_REV,
                    help=f"git revision of the baseline (default {BASELINE_REV})")
    ap.add_argument("--previous-rev", default=PREVIOUS_REV,
                    help=f"git revision of the previous samplers (default {PREVIOUS_REV})")
    ap.add_argument("--baseline-research-cells", type=int, default=2,
                    help="cells of the baseline's research window (its draws take seconds)")
    ap.add_argument("--timeout-s", type=float, default=900, help="per baseline run")
    ap.add_argument("--write", action="store_true", help="append the figures to bench/RESULTS.md")
    args = ap.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = _baseline_tree(args.baseline_rev, Path(tmp) / "baseline")
        previous = _baseline_tree(args.previous_rev, Path(tmp) / "previous")
        print(f"# per draw ({args.draws} draws per case)", flush=True)
        draws = per_draw(args.draws, previous)
        for stream in ("monitoring", "capacity", "research"):
            mine = _in_tree(REPO, _call(f"window({stream!r}, {args.cells})"), args.timeout_s)
            before = _in_tree(previous, _call(f"window({stream!r}, {args.cells})"),
                              args.timeout_s)
            print(f"# {stream}: previous {args.previous_rev} {before}", flush=True)
            cells = args.cells if stream != "research" else args.baseline_research_cells
            bcode = _call(f"window({stream!r}, {cells})")
            print(f"# {stream}: this tree {mine}", flush=True)
            theirs = _in_tree(base, bcode, args.timeout_s)
            print(f"# {stream}: baseline {args.baseline_rev} {theirs}", flush=True)
            rows.append({"stream": stream, "privmon": mine, "previous": before,
                         "baseline": theirs})
        code = _call("spread_once()")
        spread = {"privmon": _in_tree(REPO, code, args.timeout_s),
                  "baseline": _in_tree(base, code, args.timeout_s)}
        print(f"# research latency spread: {spread}", flush=True)
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"Python {platform.python_version()}",
              "per_draw": draws, "window": rows, "spread": spread}
    print(json.dumps(result, indent=1))
    if args.write:
        with open(REPO / "bench" / "RESULTS.md", "a") as f:
            f.write("\n\n## Release noise (bench.noise_samplers)\n\n```json\n"
                    + json.dumps(result, indent=1) + "\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
