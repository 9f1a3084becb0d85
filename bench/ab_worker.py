"""Benchmark: the worker of this tree against a baseline revision, interleaved, on one input.

One local broker; the input (bench.pipeline's: single events or envelopes) is
written once; then, round by round, the limit (aiokafka + decode), this tree's
`privmon worker` and the baseline's, each on its own consumer group and output
topics, in the order limit, this, baseline (the next round swaps the two
workers). A live run varies by ~10-20% from one run to the next on this 2-core
machine; interleaving on one input is what makes two trees comparable.

    python -m bench.ab_worker --baseline REV [--mode envelope] [--rounds 3]

Each worker row gives seconds by the workers' own stamps (first raw records to
last ingest; trees before the stamps: by their status lines, "status"), and
the same by status lines for both, the like-for-like comparison. Nothing is
asserted: benchmarks report.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench.pipeline import bench_config, produce, run_limit, run_privmon
from bench.shared import extract_revision


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab_worker",
                                description=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True, metavar="REV", help="git revision to compare")
    p.add_argument("--mode", choices=("single", "envelope"), default="envelope")
    p.add_argument("--events", type=int, default=0,
                   help="events (default: 500,000 single, 1,000,000 in envelopes)")
    p.add_argument("--envelope", type=int, default=100, help="events per envelope, at most")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--partitions", type=int, default=4)
    args = p.parse_args(argv)
    events = args.events or (500_000 if args.mode == "single" else 1_000_000)

    from privmon.streams.localkafka.cluster import LocalKafka

    workdir = Path(tempfile.mkdtemp(prefix="privmon-ab-"))
    base = extract_revision(args.baseline, workdir / "baseline")
    cluster = LocalKafka(name="ab", state_root=workdir / "kafka", port=None,
                         num_partitions=args.partitions)
    print(f"ab: starting Kafka (work dir {workdir}) ...", file=sys.stderr, flush=True)
    bootstrap = cluster.start()
    topic = f"ab-{args.mode}"
    rows: dict[str, list[dict]] = {"limit": [], "this tree": [], args.baseline: []}
    try:
        produce(bootstrap, topic, events, 1 if args.mode == "single" else args.envelope,
                args.partitions)
        for r in range(args.rounds):
            rows["limit"].append(run_limit(bootstrap, topic, events))
            order = ["this tree", args.baseline]
            for name in order if r % 2 == 0 else order[::-1]:
                tag = f"r{r}{'t' if name == 'this tree' else 'b'}"
                cfg = bench_config(workdir, topic, f"{tag}.")
                rows[name].append(run_privmon(bootstrap, cfg, events, 1, workdir, tag,
                                              args.partitions,
                                              tree=base if name == args.baseline else None))
            print(f"ab: round {r + 1}: " + ", ".join(
                f"{k} {v[-1]['seconds']:.2f} s" for k, v in rows.items()), file=sys.stderr,
                flush=True)
    finally:
        cluster.stop()
    limit = statistics.median(x["seconds"] for x in rows["limit"])
    print(f"\n{args.mode}: {events:,} events, {args.rounds} rounds, medians "
          f"(limit {limit:.2f} s, {events / limit:,.0f} ev/s)\n")
    print("| worker | seconds (own stamps) | of limit | seconds by status lines | all runs |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name in ("this tree", args.baseline):
        own = statistics.median(x["seconds"] for x in rows[name])
        status = statistics.median(x["seconds_status"] for x in rows[name])
        runs = ", ".join(f"{x['seconds']:.2f}" for x in rows[name])
        ratio = f"{limit / own:.1%}" if own else "n/a (within one status line)"
        print(f"| {name} | {own:.2f} | {ratio} | {status:.2f} | {runs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
