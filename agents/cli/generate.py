"""`privmon generate`: realistic telemetry to the raw topic (the pipeline's load)."""

from __future__ import annotations

import argparse
import json
import time

from privmon.agents.cli.options import add_deployment_options, kafka_options
from privmon.streams.config import load_config, with_prefix
from privmon.streams.kafka_errors import connecting


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "generate", help="produce realistic telemetry to the raw topic",
        description="Produce synthetic telemetry (diurnal load, heavy users, optional "
        "incident) to the raw topic at a chosen rate, as single events or envelopes.",
    )
    add_deployment_options(g)
    g.add_argument("--topic", default=None,
                   help="topic to produce to (default: the raw topic of --config, with "
                   "--topic-prefix)")
    g.add_argument("--rate", type=float, default=1000.0, help="events per second")
    g.add_argument("--duration-s", type=float, default=60.0,
                   help="stop after this many seconds (default 60)")
    g.add_argument("--accounts", type=int, default=5000,
                   help="distinct accounts the events come from (default 5000)")
    g.add_argument("--envelope", type=int, default=1,
                   help="events per message at most (1 = single events; e.g. 100 = envelopes); an "
                   "envelope holds one account's events, so most are smaller")
    g.add_argument("--incident-server", default=None, help="server that starts failing")
    g.add_argument("--incident-after-s", type=float, default=30.0,
                   help="seconds until --incident-server starts failing (default 30)")
    g.add_argument("--seed", type=int, default=None,
                   help="seed of the generator, for a reproducible stream (default: random)")
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    from privmon.streams.generator import Incident, TelemetryGenerator

    start = int(time.time() * 1000)
    incident = None
    if args.incident_server:
        incident = Incident(server=args.incident_server,
                            start_ms=start + int(args.incident_after_s * 1000))
    gen = TelemetryGenerator(accounts=args.accounts, incident=incident, seed=args.seed)
    options = kafka_options(args)
    if args.topic is None:
        args.topic = with_prefix(load_config(args.config), args.topic_prefix).topics.raw
    with connecting(args.bootstrap):
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
