"""Benchmark: stage 1's ingest work per event, beside the decode alone (no Kafka).

What a worker's stage 1 does with each ``getmany`` batch of one raw partition
(``Stage1Partition.ingest``: decode, pseudonymize, window, cap, bound, for the
three streams of the shipped config), against the "limit" pipeline's own work
on the same bytes (``bench.pipeline.decode_all``: privmon's validating decode and
nothing else), in the same run. The input is bench.pipeline's (the same
generator, 1 event per message or envelopes), fed in batches of 5,000 messages
as the worker's consumer hands them over: the messages go to 4 raw partitions by
Kafka's partitioner (one ``Stage1Partition`` each, as one worker holds the
bench's 4), and each ``ingest`` call takes the next 5,000 of one partition, in
turn (aiokafka's ``getmany`` drains one partition's fetched records before the
next one's).

    python -m bench.stage1_cost [--events 200000] [--envelope 1] [--repeat 3]
                                [--profile FILE]

The ratio "decode / ingest" is the ceiling stage 1's compute alone allows for
privmon's "of limit" figure (the consumer's own cost comes on top of both).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.pipeline import bench_config, decode_all, encode_input
from privmon.agents.stage1 import Stage1Partition
from privmon.streams.config import load_config
from privmon.streams.partitioner import partitions_for_keys
from privmon.streams.pseudonym import Pseudonymizer

BATCH = 5000  # messages per getmany (the stage-1 consumer's max_poll_records)
PARTITIONS = 4


def ingest_all(config, messages: list[tuple[bytes, bytes]], now_ms: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds for 4 Stage1Partitions to ingest ``messages`` in worker-sized batches."""
    where = partitions_for_keys([k for k, _ in messages], PARTITIONS).tolist()
    records: list[list[tuple[int, bytes, bytes]]] = [[] for _ in range(PARTITIONS)]
    for (k, v), p in zip(messages, where, strict=True):
        records[p].append((len(records[p]), k, v))
    stages = [Stage1Partition(partition=p, policies=config.policies,
                              pseudonymizer=Pseudonymizer({0: b"m" * 32}), idle_lag_ms=10**9)
              for p in range(PARTITIONS)]
    step = BATCH
    t0 = time.perf_counter()
    for i in range(0, max(map(len, records)), step):
        for stage, own in zip(stages, records, strict=True):
            if i < len(own):
                dead = stage.ingest(own[i:i + step], now_ms=now_ms)
                assert not dead, dead[:1]  # the bench's input is all valid
    return time.perf_counter() - t0


def decode_only(messages: list[tuple[bytes, bytes]], now_ms: int) -> tuple[float, int]:
    values = [v for _, v in messages]
    t0 = time.perf_counter()
    n = sum(decode_all(values[i:i + BATCH], now_ms) for i in range(0, len(values), BATCH))
    return time.perf_counter() - t0, n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stage1_cost",
                                description=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--envelope", type=int, default=1, help="events per message (at most)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each (best kept)")
    p.add_argument("--profile", type=Path, help="write a pyinstrument profile of one ingest")
    args = p.parse_args(argv)

    config = load_config(bench_config(Path(tempfile.mkdtemp(prefix="privmon-s1cost-")),
                                      "telemetry.raw", ""))
    messages = encode_input(args.events, args.envelope)
    now = int(time.time() * 1000)
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        ingest_all(config, messages, now)
        profiler.stop()
        args.profile.write_text(profiler.output_text(unicode=True, show_all=False))
        print(f"profile: {args.profile}", file=sys.stderr)
    decode_s, ingest_s, events = [], [], 0
    for r in range(args.repeat):  # interleaved, so that drift hits both alike
        seconds, events = decode_only(messages, now)
        decode_s.append(seconds)
        ingest_s.append(ingest_all(config, messages, now))
        print(f"  run {r + 1}: decode {decode_s[-1]:.3f} s, ingest {ingest_s[-1]:.3f} s",
              file=sys.stderr, flush=True)
    d, i = min(decode_s), min(ingest_s)
    print(f"| {args.envelope} | {events:,} | {d:.3f} s ({d / events * 1e6:.2f} us/event) | "
          f"{i:.3f} s ({i / events * 1e6:.2f} us/event) | {d / i:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
