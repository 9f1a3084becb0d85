"""`privmon export`: a stream's released aggregates to CSV or Parquet."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from privmon.agents.cli.options import add_deployment_options, kafka_options
from privmon.agents.releases import (
    aggregate_topic,
    parse_time_ms,
    policy_mismatch,
    read_records,
    to_frame,
)
from privmon.streams.config import load_config


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "export", help="write a stream's released aggregates to CSV or Parquet",
        description="Write every committed release of STREAM with window start in "
        "[--since, --until) to a file: one row per (window, cell), per metric its value, "
        "noise std and 95% interval, and the privacy metadata (mechanism, epsilon, delta, "
        "rho, k, policy version) needed for honest statistics.",
    )
    e.add_argument("stream", help="release stream, e.g. monitoring, research, capacity")
    add_deployment_options(e)
    e.add_argument("--since", required=True,
                   help="first window start: a time ago (e.g. 7d, 12h) or a UTC date/time "
                   "(2026-11-01)")
    e.add_argument("--until", default=None, help="windows starting before this (default: all)")
    e.add_argument("--format", choices=("csv", "parquet"), default="csv")
    e.add_argument("-o", "--output", type=Path, default=None,
                   help="output file (default: <stream>.<format> in the current directory)")
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    topic = aggregate_topic(args.stream, config=args.config, topic_prefix=args.topic_prefix)
    since = parse_time_ms(args.since)
    until = parse_time_ms(args.until) if args.until else None
    records = asyncio.run(read_records(args.bootstrap, topic, since_ms=since,
                                       until_ms=until, options=kafka_options(args)))
    config = load_config(args.config)
    mismatch = policy_mismatch((r.privacy.policy_version for r in records), config, args.config)
    if mismatch:
        print(f"privmon export: warning: {topic} holds records {mismatch}", file=sys.stderr)
    frame = to_frame(records)
    out = args.output or Path(f"{args.stream}.{args.format}")
    if args.format == "csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    windows = frame["window_start"].nunique() if len(frame) else 0
    print(f"privmon export: {len(frame)} rows ({windows} windows) from {topic} -> {out}",
          file=sys.stderr)
    return 0
