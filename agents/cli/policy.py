"""`privmon policy explain [STREAM]`: what the configured policy buys, before any data.

For each stream: the guarantee per account composed over each horizon of its caps
(tight, with basic composition beside it), how many distinct accounts a cell needs
to be published in full in 50% / 95% of windows, each released value's noise std
and 95% half-width at that size, and the accounts a cell needs for a 10% relative
error at 95% confidence (for a synthetic cell: --events-per-account events per
account, values at mid-range, booleans true at --rate). Then all streams together.
Computed from the config alone (privacy/planner.py); it reads no Kafka topic.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from privmon.privacy.planner import explain
from privmon.streams.config import DEFAULT_PATH, load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("policy", help="what the privacy policy buys (privmon policy explain)",
                       description="Questions about the configured privacy policy.")
    cmds = p.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND")
    e = cmds.add_parser("explain", help="noise, release odds, errors and the guarantee",
                        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("stream", nargs="?", help="one stream (default: every stream)")
    e.add_argument("--config", type=Path, default=DEFAULT_PATH,
                   help="pipeline config (TOML; default %(default)s)")
    e.add_argument("--events-per-account", type=float, default=10.0,
                   help="events per account and window of the synthetic cell (default 10)")
    e.add_argument("--rate", type=float, default=0.1,
                   help="share of events a boolean metric is true for (default 0.1)")
    e.add_argument("--json", action="store_true", help="print JSON instead of text")
    e.set_defaults(func=run)


def _duration(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000)):
        if ms >= size:
            return f"{ms / size:g} {unit}"
    return f"{ms / 1000:g} s"


def _horizon(h: dict) -> str:
    c = h["cap"]
    return (f"epsilon {h['epsilon']:.4g} at delta {h['delta']:.2g} per {_duration(h['horizon_ms'])}"
            f" (basic composition: {h['basic_epsilon']:.4g}; any {_duration(h['horizon_ms'])}, "
            f"aligned or not: {h['rolling_epsilon']:.4g}); cap epsilon <= {c['epsilon']:g}, "
            f"delta <= {c['delta']:g}")


def _accounts(n: int | None) -> str:
    return "more than 1e9" if n is None else f"{n:,}"


def render(rep: dict, source: str) -> str:
    lines = [f"privmon policy explain: {source}; per account, composed tightly (Rényi DP); "
             f"a synthetic cell has {rep['events_per_account']:g} events per account and "
             f"window, values at mid-range, booleans true for {rep['rate']:.0%} of events"]
    for s in rep["streams"]:
        cells = (f"public cells ({s['public_cells']}, with the unlisted one): every one every "
                 "window, under k by its noisy account count" if s["public_cells"] else
                 f"private cells: k floor and DP partition selection ({s['selection']})")
        lines += ["", f"{s['stream']}: {_duration(s['window_ms'])} windows by "
                  f"{', '.join(s['dimensions'])}; k = {s['k']}; {cells}"]
        lines += [f"  guarantee: {_horizon(h)}" for h in s["horizons"]]
        r = s["accounts_for_release"]
        lines.append(f"  published in full in 50% / 95% of windows from {_accounts(r['50%'])} / "
                     f"{_accounts(r['95%'])} distinct accounts")
        lines.append(f"  {'value':22} {'noise std':>14} {'95% +/-':>14}   accounts for "
                     f"±{rep['target']:.0%} at 95%  (std at {s['spread_at_accounts']:,} accounts)")
        values = s["values"]
        for i, v in enumerate(values):
            name = v["name"]
            if ".bucket." in name:  # published buckets: one line for all alike
                if i and ".bucket." in values[i - 1]["name"]:
                    continue
                alike = sum(".bucket." in x["name"] for x in values)
                name = f"{name.split('.bucket.')[0]}.bucket.* ({alike})"
            need = _accounts(v["accounts_for_target"]) if v["target_applies"] else \
                "- (bootstrap interval)"
            lines.append(f"  {name:22} {v['std']:14.4g} {v['ci95_half']:14.4g}   {need}")
    lines += ["", "all streams together:"]
    lines += [f"  {_horizon(h)}" for h in rep["all_streams"]]
    f = rep["headroom"]
    lines.append(f"  the caps allow every per-window budget x{f:.3f} (noise std /{f:.3f})"
                 + ("; `derive_budgets = true` in the config uses exactly that" if f > 1.001
                    else ""))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    policies = config.policies
    if args.stream:
        policies = (config.policy(args.stream),)  # KeyError names the configured ones
    if not args.events_per_account > 0 or not 0 < args.rate < 1:
        raise ValueError(f"--events-per-account {args.events_per_account} / --rate "
                         f"{args.rate}: expected > 0 and in (0, 1)")
    rep = explain(policies, config.global_caps, events_per_account=args.events_per_account,
                  rate=args.rate, all_policies=config.policies)
    print(json.dumps(rep, indent=2) if args.json else render(rep, str(args.config)))
    return 0
