"""`privmon subscribe`: analysts' view of released aggregates.

Both need only read access to ``aggregates.<stream>`` (the ``analyst``
principal of configs/acls.toml) and read with read_committed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from datetime import UTC, datetime

from privmon.agents.cli.options import add_deployment_options, kafka_options, stop_event
from privmon.agents.releases import (
    aggregate_topic,
    parse_time_ms,
    policy_mismatch,
    windows,
)
from privmon.privacy.records import MetricValue, ReleaseRecord
from privmon.streams.config import load_config

DEFAULT_SUFFIXES = (".mean", ".rate", ".p95")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "subscribe", help="print a stream's released aggregates live, as a table",
        description="Print each released window of STREAM as a table: one row per cell, "
        "each value with ± the half-width of its 95% noise interval. By default the "
        "accounts and events counts and every mean, rate and p95; --metrics chooses. "
        "Cells that were not released (under k or held back by DP selection) never appear.",
    )
    s.add_argument("stream", help="release stream, e.g. monitoring, research, capacity")
    add_deployment_options(s)
    s.add_argument("--since", default=None,
                   help="also print windows from this time: a time ago (e.g. 1h) or a UTC "
                   "date/time (2026-11-24T08:00); default: only new releases")
    s.add_argument("--metrics", default=None,
                   help="comma-separated metric names, e.g. events,errors.rate,latency_hist.p99")
    s.add_argument("--duration-s", type=float, default=None, help="stop after this long")
    s.set_defaults(func=run)


NOISY = "~"  # marks a value whose 95% noise interval is wider than the value itself


def _fmt(name: str, v: MetricValue) -> str:
    """``value ±half`` of the 95% noise interval, with no digits below the noise (two
    significant digits of the half-width), and ``~`` where the noise is larger than
    the value (too few events in the cell for it to say much)."""
    half = (v.ci95_high - v.ci95_low) / 2
    scale, unit = (100.0, "%") if name.endswith(".rate") else (1.0, "")
    value, width = v.value * scale, half * scale
    decimals = max(0, 1 - math.floor(math.log10(width))) if width > 0 else 0
    text = f"{value:.{decimals}f}{unit} ±{width:.{decimals}f}{unit}"
    return text + (f" {NOISY}" if width > abs(value) else "")


def format_window(records: list[ReleaseRecord], metrics: list[str] | None) -> str:
    """A released window as a text table (cells sorted by their dimension values)."""
    first = records[0]
    shown = next((r for r in records if not r.under_k), first)  # under k: accounts alone
    names = metrics or [n for n in shown.metrics if n in ("accounts", "events")
                        or n.endswith(DEFAULT_SUFFIXES)]
    dims = list(first.cell)
    start = datetime.fromtimestamp(first.window_start_ms / 1000, UTC)
    end = datetime.fromtimestamp(first.window_end_ms / 1000, UTC)
    rows = [[*r.cell.values(), *(_fmt(n, r.metrics[n]) if n in r.metrics
                                 else "under k" if r.under_k else "-" for n in names)]
            for r in sorted(records, key=lambda r: tuple(r.cell.values()))]
    head = [*dims, *names]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    p = first.privacy
    lines = [f"[{first.stream}] window {start:%Y-%m-%d %H:%M:%S}-{end:%H:%M:%S} UTC: "
             f"{len(records)} cells released (k={p.k}, {p.mechanism}, epsilon={p.epsilon:g}"
             + (f", rho={p.rho:g}" if p.rho else "") + ")",
             "  " + "  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    if any(NOISY in c for row in rows for c in row):
        lines[0] += f" [{NOISY}: noise larger than the value]"
    lines += ["  " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True))
              for row in rows]
    return "\n".join(lines)


async def _follow(args: argparse.Namespace, topic: str, metrics: list[str] | None) -> None:
    stop = stop_event(args.duration_s)
    since = parse_time_ms(args.since) if args.since else None
    config = load_config(args.config)
    warned: set[str] = set()
    async for window in windows(args.bootstrap, topic, stop, since_ms=since,
                                options=kafka_options(args)):
        versions = {r.privacy.policy_version for r in window.records} - warned
        mismatch = policy_mismatch(versions, config, args.config)
        if mismatch:  # once per foreign version
            warned |= versions
            print(f"privmon subscribe: warning: {topic} holds records {mismatch}",
                  file=sys.stderr, flush=True)
        if window.records:
            print(format_window(window.records, metrics) + "\n", flush=True)
        else:
            start = datetime.fromtimestamp(window.start_ms / 1000, UTC)
            end = datetime.fromtimestamp(window.end_ms / 1000, UTC)
            print(f"[{window.stream}] window {start:%Y-%m-%d %H:%M:%S}-{end:%H:%M:%S} UTC: "
                  "no cell released (none passed the k and selection thresholds)\n",
                  flush=True)


def run(args: argparse.Namespace) -> int:
    topic = aggregate_topic(args.stream, config=args.config, topic_prefix=args.topic_prefix)
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    print(f"privmon subscribe: {topic} on {args.bootstrap} (read_committed); "
          "values are noisy: ± is the 95% noise interval. Ctrl-C to stop.", flush=True)
    asyncio.run(_follow(args, topic, metrics))
    return 0
