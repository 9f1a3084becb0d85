"""`privmon worker`: the pipeline (both stages) against Kafka."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import time
from pathlib import Path

from privmon.agents.cli.options import (
    add_deployment_options,
    kafka_options,
    quiet_retried_kafka_errors,
    stop_event,
)
from privmon.agents.stats import WorkerStats
from privmon.privacy.noise_keys import NoiseKeys
from privmon.streams.config import load_config, with_prefix
from privmon.streams.pseudonym import Pseudonymizer


def register(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser(
        "worker", help="run the privacy pipeline (both stages) against Kafka",
        description=(
            "Read raw telemetry, dead-letter invalid input, pseudonymize, bound, aggregate "
            "per event-time window and release each (stream, window, cell) exactly once to "
            "aggregates.<stream>. Needs PRIVMON_PSEUDONYM_KEYS and PRIVMON_NOISE_KEYS "
            "(see privacy/keys.py). "
            "Stops cleanly on SIGINT/SIGTERM."
        ),
    )
    add_deployment_options(w)
    w.add_argument("--worker-id", default="w1",
                   help="stable id of this worker; a restarted worker must reuse it")
    w.add_argument("--stages", choices=("both", "1", "2"), default="both",
                   help="which stages this process runs (default both). Under live load "
                   "a release shares the process with stage 1's ingest; for release "
                   "latency, run '--stages 1' and '--stages 2' as two processes with the "
                   "same --worker-id (bench/RESULTS.md has the figures)")
    w.add_argument("--partitions", type=int, default=4,
                   help="partitions of topics this worker creates (default 4)")
    w.add_argument("--idle-lag-ms", type=int, default=5000,
                   help="close windows this long after their grace even without new events "
                   "(default 5000)")
    w.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics on --metrics-host:PORT/metrics")
    w.add_argument("--metrics-host", default="127.0.0.1",
                   help="address the metrics endpoint listens on (default %(default)s; "
                   "0.0.0.0 for a Prometheus in another container: it serves only "
                   "released, public figures)")
    w.add_argument("--status-every-s", type=float, default=10.0,
                   help="print a status line this often (0: never): released windows and "
                   "cells and fault counters only, nothing computed from exact input")
    w.add_argument("--trusted-status", type=Path, default=None,
                   help="also write every counter, input-side ones included (messages, "
                   "accepted, dead letters, late, over-cap, raw lag), to this JSON file "
                   "(mode 0600) at each status; they are exact functions of the raw data, "
                   "so keep the file as restricted as the raw topic")
    w.add_argument("--crash-file", type=Path, default=None,
                   help="where the crash guard notes the raw messages in flight, so that a "
                   "message that kills the process (a native crash, the OOM killer) is set "
                   "aside after a few restarts instead of crash-looping; keep it across "
                   "restarts (default: $PRIVMON_CACHE or ~/.cache/privmon, "
                   "worker/<app id>-<worker id>.json; 'none' turns the guard off)")
    w.add_argument("--log-level", choices=("debug", "info", "warning"), default="info",
                   help="privmon's log level (default %(default)s); debug adds each step's "
                   "timings, which follow the input's size: keep such logs as restricted "
                   "as the raw topic")
    w.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from privmon.agents.worker import BOTH_STAGES, Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("privmon").setLevel(args.log_level.upper())  # (not the clients' debug)
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python's connection chatter
    quiet_retried_kafka_errors()
    config = with_prefix(load_config(args.config), args.topic_prefix)
    pseudonymizer = Pseudonymizer.from_env()
    noise_keys = NoiseKeys.from_env()
    now = int(time.time() * 1000)
    for keys in (pseudonymizer.keys, noise_keys.keys):  # storage limitation: fail closed
        keys.refuse_expired(now_ms=now, keep_ms=config.retention.raw_ms)
    options = kafka_options(args)
    stages = BOTH_STAGES if args.stages == "both" else frozenset({int(args.stages)})
    crash_file = args.crash_file
    if 1 not in stages:  # (the guard notes raw messages in flight: stage 1's)
        crash_file = None
    elif crash_file is None:
        cache = Path(os.environ.get("PRIVMON_CACHE") or Path.home() / ".cache" / "privmon")
        crash_file = cache / "worker" / f"{config.app_id}-{args.worker_id}.json"
    elif str(crash_file) == "none":
        crash_file = None
    worker = Worker(config=config, bootstrap=args.bootstrap, worker_id=args.worker_id,
                    pseudonymizer=pseudonymizer, noise_keys=noise_keys,
                    partitions=args.partitions,
                    idle_lag_ms=args.idle_lag_ms, kafka_options=options,
                    crash_file=crash_file, stages=stages)

    metrics = None
    if args.metrics_port is not None:
        from privmon.agents.metrics import WorkerMetrics

        metrics = WorkerMetrics(config.policies, config.global_caps)
        metrics.serve(args.metrics_port, args.metrics_host)
        worker.on_ledger = metrics.ledger.add

    async def main() -> None:
        stop = stop_event()
        task = asyncio.create_task(worker.run(stop))
        last_status = time.monotonic()
        while not task.done():
            await asyncio.wait([task], timeout=min(1.0, args.status_every_s or 1.0))
            if metrics is not None:
                metrics.update(worker.stats)
            due = args.status_every_s and time.monotonic() - last_status >= args.status_every_s
            if due and not task.done():
                _status(worker.stats, worker.lag, args.trusted_status)
                last_status = time.monotonic()
        task.result()

    quiet_gc()
    asyncio.run(main())
    _status(worker.stats, worker.lag, args.trusted_status)
    return 0


def _status(stats: WorkerStats, lag: dict[int, int], trusted: Path | None) -> None:
    """The public status line; every counter to the trusted file, if one is given."""
    print("status " + json.dumps(stats.public()), flush=True)
    if trusted is not None:
        trusted.parent.mkdir(parents=True, exist_ok=True)
        tmp = trusted.with_name(trusted.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({**vars(stats), "raw_lag": lag}, f)
        os.replace(tmp, trusted)


# Allocations between generation-0 collections (CPython's default: 700). A batch of
# 5,000 raw records allocates ~20,000 containers (the client's records, their tuples,
# the decoded events) that live ~15 ms: at the default, collections in the middle of
# every batch move thousands of them to older generations, and a full collection over
# everything (~30 ms) followed every few batches: 15 of them, 0.45 s of a 3 s run of
# bench.pipeline's single events.
GC_GEN0_THRESHOLD = 50_000


def quiet_gc() -> None:
    """Fewer and cheaper garbage collections in a long-running worker: what start-up
    made (modules, classes, configs: ~90,000 objects) is frozen out of every later
    collection, and a generation-0 collection waits for GC_GEN0_THRESHOLD allocations.
    Reference cycles are still collected, only less often."""
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
