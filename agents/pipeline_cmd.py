"""`privmon worker` and `privmon generate`: the pipeline and its load."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from agents.stats import WorkerStats
from privacy.noise_keys import NoiseKeys
from streams.config import DEFAULT_PATH, ConfigError, load_config
from streams.localkafka import security
from streams.pseudonym import KeyConfigError, Pseudonymizer


def add_parsers(sub: argparse._SubParsersAction) -> None:
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
    w.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    w.add_argument("--config", type=Path, default=DEFAULT_PATH, help="release streams (TOML)")
    w.add_argument("--worker-id", default="w1",
                   help="stable id of this worker; a restarted worker must reuse it")
    w.add_argument("--partitions", type=int, default=4,
                   help="partitions of topics this worker creates (default 4)")
    w.add_argument("--idle-lag-ms", type=int, default=5000,
                   help="close windows this long after their grace even without new events")
    w.add_argument("--sasl-user", default=None,
                   help="authenticate with SASL/SCRAM as this user; password in "
                   "$PRIVMON_KAFKA_PASSWORD")
    w.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics on 127.0.0.1:PORT/metrics")
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
    w.set_defaults(func=_worker)

    g = sub.add_parser(
        "generate", help="produce realistic telemetry to the raw topic",
        description="Produce synthetic telemetry (diurnal load, heavy users, optional "
        "incident) to the raw topic at a chosen rate, as single events or envelopes.",
    )
    g.add_argument("--bootstrap", default="127.0.0.1:9092")
    g.add_argument("--topic", default="telemetry.raw")
    g.add_argument("--rate", type=float, default=1000.0, help="events per second")
    g.add_argument("--duration-s", type=float, default=60.0)
    g.add_argument("--accounts", type=int, default=5000)
    g.add_argument("--envelope", type=int, default=1,
                   help="events per message (1 = single events; e.g. 100 = envelopes)")
    g.add_argument("--incident-server", default=None, help="server that starts failing")
    g.add_argument("--incident-after-s", type=float, default=30.0)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--sasl-user", default=None,
                   help="authenticate with SASL/SCRAM; password in $PRIVMON_KAFKA_PASSWORD")
    g.set_defaults(func=_generate)


def _worker(args: argparse.Namespace) -> int:
    from agents.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = load_config(args.config)
        pseudonymizer = Pseudonymizer.from_env()
        noise_keys = NoiseKeys.from_env()
        now = int(time.time() * 1000)
        for keys in (pseudonymizer.keys, noise_keys.keys):  # storage limitation: fail closed
            keys.refuse_expired(now_ms=now, keep_ms=config.retention.raw_ms)
        options = security.options_for(args.sasl_user, os.environ)
    except (ConfigError, KeyConfigError, ValueError) as exc:
        print(f"privmon worker: {exc}", file=sys.stderr)
        return 2
    crash_file = args.crash_file
    if crash_file is None:
        cache = Path(os.environ.get("PRIVMON_CACHE") or Path.home() / ".cache" / "privmon")
        crash_file = cache / "worker" / f"{config.app_id}-{args.worker_id}.json"
    elif str(crash_file) == "none":
        crash_file = None
    worker = Worker(config=config, bootstrap=args.bootstrap, worker_id=args.worker_id,
                    pseudonymizer=pseudonymizer, noise_keys=noise_keys,
                    partitions=args.partitions,
                    idle_lag_ms=args.idle_lag_ms, kafka_options=options,
                    crash_file=crash_file)

    metrics = None
    if args.metrics_port is not None:
        from agents.metrics import WorkerMetrics

        metrics = WorkerMetrics()
        metrics.serve(args.metrics_port)
        worker.on_release = lambda stream, eps: metrics.epsilon.labels(stream=stream).inc(eps)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(worker.run(stop))
        last_status = time.monotonic()
        while not task.done():
            await asyncio.wait([task], timeout=1.0)
            if metrics is not None:
                metrics.update(worker.stats)
            due = args.status_every_s and time.monotonic() - last_status >= args.status_every_s
            if due and not task.done():
                _status(worker.stats, worker.lag, args.trusted_status)
                last_status = time.monotonic()
        task.result()

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


def _generate(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    from streams.generator import Incident, TelemetryGenerator

    start = int(time.time() * 1000)
    incident = None
    if args.incident_server:
        incident = Incident(server=args.incident_server,
                            start_ms=start + int(args.incident_after_s * 1000))
    gen = TelemetryGenerator(accounts=args.accounts, incident=incident, seed=args.seed)
    try:
        options = security.options_for(args.sasl_user, os.environ)
    except ValueError as exc:
        print(f"privmon generate: {exc}", file=sys.stderr)
        return 2
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=20, acks="all",
                             **options)
    sent = 0
    deadline = time.monotonic() + args.duration_s
    next_report = time.monotonic() + 5
    try:
        while time.monotonic() < deadline:
            tick = time.monotonic()
            now = int(time.time() * 1000)
            events = gen.events(int(gen.rng.poisson(args.rate * 0.1)), start_ms=now - 100,
                                end_ms=now)
            by_account: dict[str, list[dict]] = {}
            for event in events:  # messages are keyed by account: one account per envelope
                by_account.setdefault(event["account_id"], []).append(event)
            for account, own in by_account.items():
                for i in range(0, len(own), args.envelope):
                    chunk = own[i:i + args.envelope]
                    value = chunk[0] if args.envelope == 1 else {"events": chunk}
                    producer.send(args.topic, key=account.encode(),
                                  value=json.dumps(value).encode())
            sent += len(events)
            if time.monotonic() >= next_report:
                print(f"generate: {sent:,} events sent", flush=True)
                next_report += 5
            time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    except KeyboardInterrupt:
        pass
    finally:
        producer.flush()
        producer.close()
    print(f"generate: done, {sent:,} events sent to {args.topic}")
    return 0
