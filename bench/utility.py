"""Utility at the same guarantee: privmon beside PipelineDP on the same synthetic cells.

    python -m bench.utility [--cells 400] [--write]      (needs the bench extra: pipeline-dp)

Three tables, from the default configs/streams.toml:

1. Release rate per cell size, research (private cells): privmon's truncated
   geometric selection (its exact keep probability, and the rate over keyed draws
   through release_window) beside PipelineDP's TRUNCATED_GEOMETRIC (PyDP's
   probability_of_keep) and its LAPLACE_THRESHOLDING, at the same ε, δ, L0 and k.
2. RMSE per metric, monitoring (public cells: every cell released by both): one
   window of ``--cells`` cells of the same truth, released by privmon (release_window)
   and by PipelineDP's DPEngine (public partitions, one aggregation per metric at
   privmon's per-metric ε, the same L0 and Linf, values clamped to the same range).
3. The ε per account and UTC day each states for monitoring's 120 windows.

Both run in this process, on this machine, in one run; no broker.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import MappingProxyType

import numpy as np

from privmon.privacy.accountant import horizon_guarantee
from privmon.privacy.accumulators import CellTotals
from privmon.privacy.noise_keys import NoiseKeys
from privmon.privacy.planner import release_probability
from privmon.privacy.release import release_window, selection_epsilon
from privmon.streams.config import load_config

REPO = Path(__file__).resolve().parent.parent
KEYS = NoiseKeys({0: b"utility-bench-key-0123456789abcd"})
EVENTS_PER_ACCOUNT = 10
LATENCY_MS = 120.0  # every event's latency (inside [0, 5000])
ERROR_EVERY = 10  # one event in 10 is an error


def _pipeline_dp():  # type: ignore[no-untyped-def]
    try:
        import pipeline_dp
    except ImportError:
        sys.exit("bench.utility needs PipelineDP: pip install -e '.[bench]'")
    return pipeline_dp


def release_rates(sizes: list[int], draws: int) -> list[dict]:
    pdp = _pipeline_dp()
    from pipeline_dp.partition_selection import create_partition_selection_strategy

    policy = load_config().policy("research")
    eps, delta, l0 = selection_epsilon(policy), policy.budget.delta, policy.bounds.max_cells
    tg = create_partition_selection_strategy(pdp.PartitionSelectionStrategy.TRUNCATED_GEOMETRIC,
                                             eps, delta, l0, policy.k)
    lt = create_partition_selection_strategy(pdp.PartitionSelectionStrategy.LAPLACE_THRESHOLDING,
                                             eps, delta, l0, policy.k)
    rows = []
    for n in sizes:
        rows.append({"accounts": n, "privmon": release_probability(policy, n),
                     "privmon_observed": _observed_rate(policy, n, draws),
                     "pipelinedp_truncated_geometric": tg.probability_of_keep(n),
                     "pipelinedp_laplace_thresholding": lt.probability_of_keep(n)})
    return rows


def _observed_rate(policy, accounts: int, draws: int) -> float:  # type: ignore[no-untyped-def]
    """Cells of ``accounts`` accounts released over ``draws`` windows (keyed noise)."""
    totals = _totals(policy, np.full(draws, accounts))
    # cells of their own per size: every row draws independent keyed bits
    labels = {i: ("eu-central", f"v{accounts}.{i}", "chrome") for i in range(draws)}
    rel = release_window(totals, policy, window_start_ms=0,
                         cell_labels=lambda i: dict(zip(policy.dimensions, labels[i],
                                                        strict=True)),
                         noise=KEYS.window(policy.name, policy.policy_version, 0))
    return sum(not r.under_k for r in rel.records) / draws


def _totals(policy, accounts: np.ndarray) -> CellTotals:  # type: ignore[no-untyped-def]
    n = len(accounts)
    events = accounts * EVENTS_PER_ACCOUNT
    cols = {}
    for m in policy.metrics:
        if m.buckets:
            cols[m.name] = np.zeros((n, *m.buckets), np.int64)
        elif m.KIND == "value":
            q = m.quantize(np.array([LATENCY_MS if m.field == "latency_ms" else 60.0]))[0]
            cols[m.name] = events * int(q)
        else:
            cols[m.name] = events // ERROR_EVERY
    return CellTotals(cells=np.arange(n, dtype=np.int64), accounts=accounts.astype(np.int64),
                      events=events.astype(np.int64), columns=MappingProxyType(cols))


def rmse(cells: int, accounts: int) -> list[dict]:
    pdp = _pipeline_dp()
    base = load_config().policy("monitoring")
    names = [(f"s{i:04d}", "eu") for i in range(cells)]
    policy = dataclasses.replace(base, public_cells=tuple(sorted(names)))
    truth_events = accounts * EVENTS_PER_ACCOUNT
    truth = {"accounts": accounts, "events": truth_events,
             "latency.sum": truth_events * LATENCY_MS,
             "errors.count": truth_events // ERROR_EVERY}
    t0 = time.perf_counter()
    rel = release_window(_totals(policy, np.full(cells, accounts)), policy, window_start_ms=0,
                         cell_labels=lambda i: dict(zip(policy.dimensions, names[i],
                                                        strict=True)),
                         noise=KEYS.window(policy.name, policy.policy_version, 0))
    privmon_s = time.perf_counter() - t0
    ours = {name: _rmse([r.metrics[name].value for r in rel.records if name in r.metrics],
                        truth[name]) for name in truth}
    stds = {name: rel.records[0].metrics[name].noise_std for name in truth}

    # PipelineDP: the same events (one per row), one aggregation per metric at its ε.
    rows = [(f"a{c}-{a}", names[c], 1.0 if e % ERROR_EVERY == 0 else 0.0)
            for c in range(cells) for a in range(accounts) for e in range(EVENTS_PER_ACCOUNT)]
    b = policy.budget
    specs = {"accounts": (pdp.Metrics.PRIVACY_ID_COUNT, selection_epsilon(policy), None),
             "events": (pdp.Metrics.COUNT, b.epsilon * b.shares["events"], None),
             "latency.sum": (pdp.Metrics.SUM, b.epsilon * b.shares["latency"],
                             lambda r: LATENCY_MS),
             "errors.count": (pdp.Metrics.SUM, b.epsilon * b.shares["errors"], lambda r: r[2])}
    theirs, their_std, t1 = {}, {}, time.perf_counter()
    for name, (metric, eps, value) in specs.items():
        accountant = pdp.NaiveBudgetAccountant(total_epsilon=eps, total_delta=0)
        engine = pdp.DPEngine(accountant, pdp.LocalBackend())
        lo_hi = {"min_value": 0.0, "max_value": 5000.0 if name == "latency.sum" else 1.0} \
            if value is not None else {}
        params = pdp.AggregateParams(
            metrics=[metric], noise_kind=pdp.NoiseKind.LAPLACE,
            max_partitions_contributed=policy.bounds.max_cells,
            max_contributions_per_partition=policy.bounds.max_events_per_cell,
            output_noise_stddev=True, **lo_hi)
        extract = pdp.DataExtractors(privacy_id_extractor=lambda r: r[0],
                                     partition_extractor=lambda r: r[1],
                                     value_extractor=value or (lambda r: 0))
        out = engine.aggregate(rows, params, extract, public_partitions=names)
        accountant.compute_budgets()
        field = {pdp.Metrics.PRIVACY_ID_COUNT: "privacy_id_count", pdp.Metrics.COUNT: "count",
                 pdp.Metrics.SUM: "sum"}[metric]
        got = [v for _, v in list(out)]
        theirs[name] = _rmse([getattr(v, field) for v in got], truth[name])
        their_std[name] = float(getattr(got[0], f"{field}_noise_stddev"))
    pipelinedp_s = time.perf_counter() - t1
    return [{"metric": name, "truth": truth[name], "privmon_rmse": ours[name],
             "privmon_noise_std": stds[name], "pipelinedp_rmse": theirs[name],
             "pipelinedp_noise_std": their_std[name],
             "privmon_s": privmon_s, "pipelinedp_s": pipelinedp_s} for name in truth]


def _rmse(values: list[float], truth: float) -> float:
    v = np.asarray(values, float)
    return float(np.sqrt(np.mean((v - truth) ** 2)))


def daily_epsilon() -> dict:
    config = load_config()
    policy = config.policy("monitoring")
    cap = policy.horizon_caps[0]
    g = horizon_guarantee([policy], cap)
    day = next(c for c in config.global_caps if c.horizon_ms == 86_400_000)
    everything = horizon_guarantee(config.policies, day)
    return {"windows": 120, "per_window_epsilon": policy.budget.epsilon,
            "privmon_monitoring": g.epsilon, "privmon_delta": g.delta,
            "privmon_all_streams": everything.epsilon, "all_streams_delta": everything.delta,
            # PipelineDP accounts one aggregation at a time: 120 windows are 120 runs,
            # and across them it states nothing; adding them up is basic composition.
            "pipelinedp_per_run": policy.budget.epsilon,
            "pipelinedp_120_runs_basic": 120 * policy.budget.epsilon}


def _markdown(rates: list[dict], errors: list[dict], eps: dict, meta: dict) -> str:
    out = [f"## Utility beside PipelineDP (bench.utility), {meta['date']}", "",
           f"`python -m bench.utility` on {meta['machine']}, commit {meta['commit']}, "
           f"PipelineDP {meta['pipelinedp']}; configs/streams.toml as shipped.", "",
           "Release rate per cell size, research (private cells; ε 0.2, δ 1e-8, L0 1, "
           f"k 50). privmon observed: {meta['draws']} cells through release_window.", "",
           "| accounts | privmon | privmon observed | PipelineDP truncated geometric "
           "| PipelineDP Laplace thresholding |", "| ---: | ---: | ---: | ---: | ---: |"]
    out += [f"| {r['accounts']} | {r['privmon']:.6f} | {r['privmon_observed']:.4f} | "
            f"{r['pipelinedp_truncated_geometric']:.6f} | "
            f"{r['pipelinedp_laplace_thresholding']:.6f} |" for r in rates]
    out += ["", f"RMSE per metric, monitoring: {meta['cells']} public cells of "
            f"{meta['accounts']} accounts, {EVENTS_PER_ACCOUNT} events each, latency "
            f"{LATENCY_MS:g} ms, 1 event in {ERROR_EVERY} an error; each metric at "
            "privmon's per-metric ε, L0 2, Linf 30, latency in [0, 5000].", "",
            "| metric | truth | privmon noise std | PipelineDP noise std | privmon RMSE "
            "| PipelineDP RMSE |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    out += [f"| {r['metric']} | {r['truth']:,.0f} | {r['privmon_noise_std']:,.1f} | "
            f"{r['pipelinedp_noise_std']:,.1f} | {r['privmon_rmse']:,.1f} | "
            f"{r['pipelinedp_rmse']:,.1f} |" for r in errors]
    out += ["", "The noise std is what each states for its noise (exact, from the parameters); "
            f"the RMSEs are over the {meta['cells']} cells of one window (sampling error of an "
            f"RMSE of Laplace noise ≈ {100 * math.sqrt(1.25 / meta['cells']):.0f}%)."]
    out += ["", "ε per account and UTC day, monitoring (120 windows of ε "
            f"{eps['per_window_epsilon']:g}): privmon states {eps['privmon_monitoring']:.2f} "
            f"at δ {eps['privmon_delta']:g} (all streams together "
            f"{eps['privmon_all_streams']:.2f} at δ {eps['all_streams_delta']:g}); PipelineDP "
            f"states {eps['pipelinedp_per_run']:g} per run and nothing across runs: "
            f"{eps['pipelinedp_120_runs_basic']:g} by basic composition.", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=400, help="cells of the RMSE table")
    ap.add_argument("--accounts", type=int, default=50, help="accounts per cell (RMSE)")
    ap.add_argument("--draws", type=int, default=4000, help="cells per size (release rate)")
    ap.add_argument("--write", action="store_true", help="append to bench/RESULTS.md")
    args = ap.parse_args(argv)
    pdp = _pipeline_dp()
    print("release rates ...", file=sys.stderr, flush=True)
    rates = release_rates([120, 125, 130, 131, 135, 140, 145, 150], args.draws)
    print("RMSE ...", file=sys.stderr, flush=True)
    errors = rmse(args.cells, args.accounts)
    eps = daily_epsilon()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    meta = {"date": time.strftime("%Y-%m-%d"), "commit": commit, "draws": args.draws,
            "cells": args.cells, "accounts": args.accounts,
            "pipelinedp": getattr(pdp, "__version__", "?"),
            "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, "
                       f"Python {platform.python_version()}"}
    text = _markdown(rates, errors, eps, meta)
    print(text)
    print(json.dumps({"rates": rates, "rmse": errors, "epsilon": eps, "meta": meta},
                     indent=1), file=sys.stderr)
    if args.write:
        with open(REPO / "bench" / "RESULTS.md", "a") as f:
            f.write("\n" + text)
    return 0 if all(math.isfinite(r["privmon_rmse"]) for r in errors) else 1


if __name__ == "__main__":
    sys.exit(main())
