"""`privmon budget`: what the releases so far have spent, from the ledger topic.

The ledger (``privmon.ledger``, compacted, written by the worker in the same
transaction as each release) has one entry per (stream, window, partials
partition). Per stream this shows the per-window cost, how many windows were
released, the guarantee composed over each of the policy's horizons (the
current aligned horizon, per account: min(windows released, the
participation cap's bound) windows) next to the worst case the config allows
and the cap. Composition is tight (Rényi DP over each window's recorded
mechanisms, privacy/rdp.py); basic composition is printed beside it as a
cross-check. Reading the ledger needs the worker's (or an admin's) access.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime

from privmon.agents.cli.options import add_deployment_options, kafka_options
from privmon.agents.kafka_io import read_compacted
from privmon.agents.releases import policy_mismatch, topic_partitions
from privmon.privacy.accountant import Accountant, LedgerEntry, horizon_guarantee
from privmon.privacy.params import HorizonCap
from privmon.streams.config import PipelineConfig, load_config, with_prefix


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("budget", help="privacy budget spent per stream, from the ledger",
                       description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_deployment_options(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _hours(ms: int) -> str:
    if ms >= 86_400_000:
        return f"{ms / 86_400_000:g} d"
    return f"{ms / 3_600_000:g} h" if ms >= 3_600_000 else f"{ms / 1000:g} s"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def report(config: PipelineConfig, entries: list[LedgerEntry], now_ms: int) -> dict:
    """The budget report as data (what ``--json`` prints)."""
    acc = Accountant.from_entries(config.policies, entries)
    per_window = acc.entries

    def horizon(cap: HorizonCap, stream: str | None, policies: list) -> dict:
        spent = acc.spent(cap, now_ms=now_ms, stream=stream)
        last = acc.spent(cap, now_ms=now_ms, stream=stream, rolling=True)
        worst = horizon_guarantee(policies, cap)
        rolling = horizon_guarantee(policies, cap, rolling=True)
        return {"horizon_ms": cap.horizon_ms, "horizon_start_ms":
                (now_ms // cap.horizon_ms) * cap.horizon_ms,
                "spent": {"epsilon": spent.epsilon, "delta": spent.delta, "rho": spent.rho,
                          "basic_epsilon": spent.basic_epsilon},
                "worst_case": {"epsilon": worst.epsilon, "delta": worst.delta,
                               "basic_epsilon": worst.basic_epsilon},
                "cap": {"epsilon": cap.max_epsilon, "delta": cap.max_delta},
                # over any interval of this length, aligned or not (the caps bind aligned ones)
                "rolling": {"spent_last": {"epsilon": last.epsilon, "delta": last.delta},
                            "worst_case": {"epsilon": rolling.epsilon,
                                           "delta": rolling.delta}}}

    streams = []
    for p in config.policies:
        mine = [e for e in per_window if e.stream == p.name]
        costs = sorted({(e.epsilon, e.delta, e.rho, e.policy_version) for e in mine})
        streams.append({
            "stream": p.name, "window_ms": p.window_ms, "windows_released": len(mine),
            "windows_failed": sum(bool(e.failed) for e in mine),
            "cells_released": sum(e.cells_released for e in mine),
            "last_window_start_ms": max((e.window_start_ms for e in mine), default=None),
            "per_window": [{"epsilon": c[0], "delta": c[1], "rho": c[2], "policy_version": c[3]}
                           for c in costs],
            "horizons": [horizon(cap, p.name, [p]) for cap in p.horizon_caps],
        })
    overall = [horizon(cap, None, list(config.policies)) for cap in config.global_caps]
    return {"now_ms": now_ms, "ledger": config.topics.ledger,
            "entries": len(entries), "streams": streams, "all_streams": overall}


def _print(rep: dict) -> None:
    print(f"privmon budget: {rep['entries']} ledger entries on {rep['ledger']} "
          f"(as of {_iso(rep['now_ms'])}); epsilon/delta are per account, composed tightly "
          "(RDP; basic composition beside it as a cross-check)")

    def line(h: dict) -> str:
        s, w, c, r = h["spent"], h["worst_case"], h["cap"], h["rolling"]
        return (f"    over {_hours(h['horizon_ms'])} (since {_iso(h['horizon_start_ms'])}): "
                f"spent epsilon {s['epsilon']:.4g}, delta {s['delta']:.2g}"
                f" (basic composition: {s['basic_epsilon']:.4g})"
                + f" | config worst case epsilon {w['epsilon']:.4g}, delta {w['delta']:.2g}"
                f" | cap epsilon <= {c['epsilon']:g}, delta <= {c['delta']:g}"
                f"\n      any {_hours(h['horizon_ms'])} interval, aligned or not: last "
                f"{_hours(h['horizon_ms'])} spent epsilon {r['spent_last']['epsilon']:.4g}"
                f" | config worst case epsilon {r['worst_case']['epsilon']:.4g}, delta "
                f"{r['worst_case']['delta']:.2g} (the cap binds aligned horizons)")

    for s in rep["streams"]:
        costs = "; ".join(f"epsilon {c['epsilon']:g}, delta {c['delta']:g}"
                          + (f", rho {c['rho']:g}" if c["rho"] else "")
                          + f" (policy {c['policy_version']})" for c in s["per_window"]) or "-"
        last = _iso(s["last_window_start_ms"]) if s["last_window_start_ms"] else "never"
        print(f"\n  {s['stream']}: {s['windows_released']} windows of "
              f"{_hours(s['window_ms'])}"
              f" released (last {last}); {s['cells_released']} cells released"
              + (f"; {s['windows_failed']} failed (nothing published, cost charged)"
                 if s["windows_failed"] else ""))
        print(f"    per window: {costs}")
        for h in s["horizons"]:
            print(line(h))
    print("\n  all streams together:")
    for h in rep["all_streams"]:
        print(line(h))


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.topic_prefix:
        config = with_prefix(config, args.topic_prefix)
    options = kafka_options(args)
    raw = asyncio.run(_read(args.bootstrap, config.topics.ledger, options))
    entries = [LedgerEntry.from_json(v) for v in raw.values()]
    mismatch = policy_mismatch((e.policy_version for e in entries), config, args.config)
    if mismatch:  # e.g. the demo's ledger read with the production config
        print(f"privmon budget: warning: the ledger {config.topics.ledger!r} holds windows "
              f"{mismatch}", file=sys.stderr)
    rep = report(config, entries, int(time.time() * 1000))
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        _print(rep)
    return 0


async def _read(bootstrap: str, topic: str, options: dict) -> dict[bytes, bytes]:
    partitions = (await topic_partitions(bootstrap, [topic], options))[topic]
    if not partitions:
        raise LookupError(f"ledger topic {topic!r} not found on {bootstrap}: nothing released "
                          "yet, another --config/--topic-prefix, or this principal may not "
                          "see it (the ledger is internal: use the worker's or an admin login)")
    return await read_compacted(bootstrap, topic, len(partitions), options)
