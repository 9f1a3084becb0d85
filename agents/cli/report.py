"""`privmon report capacity`: the capacity planners' HTML report with PNG plots."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from privmon.agents.capacity_report import PANELS, render
from privmon.agents.cli.options import add_deployment_options, kafka_options
from privmon.agents.releases import aggregate_topic, read_records, to_frame


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="render a report from released aggregates (capacity)",
        description="Render a self-contained HTML report with PNG plots from the daily "
        "capacity stream: bandwidth and sessions per region and for the top servers over "
        "time with 95% noise bands, peak hours (hour-of-day buckets), and the growth trend. "
        "Needs only read access to the aggregate topic.",
    )
    p.add_argument("kind", choices=("capacity",), help="which report")
    p.add_argument("--days", type=float, default=30.0, help="period to cover (default 30)")
    p.add_argument("--stream", default="capacity", help="the daily stream (default capacity)")
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default capacity-report-<date>)")
    p.add_argument("--top-servers", type=int, default=5, help="servers in the top-servers plot")
    add_deployment_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = args.out or Path(time.strftime("capacity-report-%Y%m%d"))
    topic = aggregate_topic(args.stream, config=args.config, topic_prefix=args.topic_prefix)
    since = int(time.time() * 1000 - args.days * 86_400_000)
    print(f"privmon report: reading {topic} since {args.days:g} days ago ...",
          file=sys.stderr, flush=True)
    records = asyncio.run(read_records(
        args.bootstrap, topic, since_ms=since,
        options=kafka_options(args)))
    frame = to_frame(records)
    print(f"privmon report: {len(frame)} released cells; rendering {len(PANELS)} plots ...",
          file=sys.stderr, flush=True)
    path = render(frame, out, title=f"Capacity report: last {args.days:g} days")
    print(f"privmon report: wrote {path} (and {', '.join(p + '.png' for p in PANELS)} in {out})")
    return 0
