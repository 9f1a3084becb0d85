"""`privmon demo`: the real pipeline on a local Kafka, with a live view of releases.

What runs (all real, on 127.0.0.1):
1. a local Apache Kafka broker (privmon kafka, unless --bootstrap is given);
2. the telemetry generator producing per-account envelopes to the raw topic,
   a few malformed messages among them, and an incident (server fra-03
   starts failing) after --incident-after-s;
3. the privmon worker (both stages, exactly-once release) with the short
   windows of configs/demo.toml: 10 s per (server, region), 30 s per region;
4. a read_committed reader of the aggregate topics printing every released
   window: noisy counts, error rate and p95 latency with 95% intervals (how
   many cells were held back is exact data, so it is not shown);
5. the alert agent with configs/demo_alerts.toml: it fires only when a rule
   holds beyond the noise with 99% confidence (the incident on fra-03 does;
   healthy servers should not), printed as ALERT lines.
Each run uses its own topics (prefix demo-<random>.).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path

from privmon.agents.alerts.rules import Alert, AlertConfig, load_alert_config
from privmon.agents.cli.options import quiet_retried_kafka_errors, stop_event
from privmon.privacy.accountant import horizon_guarantee
from privmon.privacy.noise_keys import NoiseKeys
from privmon.privacy.records import ReleaseRecord
from privmon.streams.config import CONFIG_DIR, PipelineConfig, load_config, with_prefix
from privmon.streams.generator import Incident, TelemetryGenerator
from privmon.streams.pseudonym import Pseudonymizer

DEMO_CONFIG = CONFIG_DIR / "demo.toml"
DEMO_ALERTS = DEMO_CONFIG.with_name("demo_alerts.toml")
MALFORMED = [b'{"account_id": "acct-x", "latency_ms": ', b'{"events": "none"}',
             b'{"account_id": "acct-y", "server": 7}']


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the local demo: Kafka, telemetry with an incident, the worker, live releases",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration-s", type=float, default=90.0,
                   help="stop after this many seconds (default 90; Ctrl-C stops earlier)")
    p.add_argument("--rate", type=float, default=3000.0, help="events per second (default 3000)")
    p.add_argument("--accounts", type=int, default=8000, help="simulated accounts (default 8000)")
    p.add_argument("--incident-after-s", type=float, default=30.0,
                   help="seconds until server fra-03 starts failing (default 30)")
    p.add_argument("--config", type=Path, default=DEMO_CONFIG, help="release streams (TOML)")
    p.add_argument("--rules", type=Path, default=DEMO_ALERTS, help="alert rules (TOML)")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve the latest released monitoring values as Prometheus gauges on "
                   "127.0.0.1:PORT/metrics")
    p.add_argument("--bootstrap", default=None,
                   help="use this Kafka instead of starting the local one (e.g. kafka:9092)")
    p.add_argument("--topic-prefix", default=None, help="topic prefix (default demo-<random>.)")
    p.add_argument("--keep-kafka", action="store_true",
                   help="leave the local Kafka running at the end, so that the commands the "
                   "demo prints (subscribe, export, report, budget) can read its releases")
    p.set_defaults(func=run)


def cap_notes(config: PipelineConfig, duration_s: float) -> list[str]:
    """Streams whose participation cap an account active in every window reaches within
    ``duration_s``: from then on its events no longer count, and cells shrink (the demo's
    generator keeps every account active all the time, unlike real clients)."""
    notes = []
    for p in config.policies:
        cap = p.participation
        binds_s = cap.max_windows * p.window_ms / 1000
        if cap.max_windows * p.window_ms < cap.period_ms and duration_s > binds_s:
            notes.append(
                f"note: {p.name} counts an account in at most {cap.max_windows} windows per "
                f"{cap.period_ms / 3_600_000:g} h (its participation cap); the demo's accounts "
                f"are active in every window, so after {binds_s:.0f} s they reach it and "
                f"{p.name} releases fewer and smaller cells until the period ends")
    return notes


def _self() -> str:
    """How this process was started, to print commands that run as they are."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "privmon":
        return str(argv0)
    return f"{shlex.quote(sys.executable)} -m privmon.agents.cli"


def what_next(*, bootstrap: str, config: Path, prefix: str) -> list[str]:
    """The downstream commands for this demo's broker, config and topics."""
    common = (f"--bootstrap {bootstrap} --config {shlex.quote(str(config))} "
              f"--topic-prefix {prefix}")
    me = _self()
    return [f"{me} subscribe monitoring {common} --since 5m --duration-s 5",
            f"{me} export capacity {common} --since 1h -o demo-capacity.csv",
            f"{me} report capacity {common} --days 1 --out demo-report",
            f"{me} budget {common}"]


def _by_account(events: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        out[event["account_id"]].append(event)
    return out


async def _produce(bootstrap: str, topic: str, args: argparse.Namespace,
                   stop: asyncio.Event, counters: dict[str, int]) -> None:
    from aiokafka import AIOKafkaProducer

    now_ms = int(time.time() * 1000)
    gen = TelemetryGenerator(accounts=args.accounts, incident=Incident(
        server="fra-03", start_ms=now_ms + int(args.incident_after_s * 1000)))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        tick_s, ticks = 0.1, 0
        while not stop.is_set():
            t = int(time.time() * 1000)
            events = gen.events(int(gen.rng.poisson(args.rate * tick_s)),
                                start_ms=t - int(tick_s * 1000), end_ms=t)
            for account, own in _by_account(events).items():  # keyed by account
                await producer.send(topic, key=account.encode(),
                                    value=json.dumps({"events": own}).encode())
            if ticks % 20 == 0:  # every 2 s, one malformed message
                bad = MALFORMED[(ticks // 20) % len(MALFORMED)]
                await producer.send(topic, key=b"acct-x", value=bad)
                counters["malformed"] += 1
            counters["produced"] += len(events)
            ticks += 1
            await asyncio.sleep(tick_s)
    finally:
        await producer.stop()


def _print_window(stream: str, start: int, records: list[ReleaseRecord]) -> None:
    t0 = time.strftime("%H:%M:%S", time.localtime(start / 1000))
    # (How many cells were held back is exact data: it is not shown, nor stored.)
    print(f"\n[{stream}] window {t0}: {len(records)} cells released")
    if stream == "monitoring":
        print(f"  {'server':8} {'region':11} {'accounts':>12} {'events':>13} "
              f"{'error rate [95% CI]':>24} {'p95 latency ms [95% CI]':>26}")
        for r in sorted(records, key=lambda r: (r.cell["region"], r.cell["server"])):
            m = r.metrics
            if r.under_k:
                print(f"  {r.cell['server']:8} {r.cell['region']:11} {m['accounts'].value:7.0f} "
                      f"±{m['accounts'].ci95_high - m['accounts'].value:<4.0f}  under k: "
                      "only the noisy account count is published")
                continue
            er, p95 = m["errors.rate"], m["latency_hist.p95"]
            print(f"  {r.cell['server']:8} {r.cell['region']:11} "
                  f"{m['accounts'].value:7.0f} "
                  f"±{m['accounts'].ci95_high - m['accounts'].value:<4.0f}"
                  f"{m['events'].value:8.0f} ±{m['events'].ci95_high - m['events'].value:<4.0f}"
                  f"{er.value:9.1%} [{er.ci95_low:6.1%},{er.ci95_high:6.1%}]"
                  f"{p95.value:9.0f} [{p95.ci95_low:5.0f},{p95.ci95_high:6.0f}]")
    else:
        print(f"  {'region':11} {'accounts':>12} {'GB':>16} {'mean session s':>20}")
        for r in sorted(records, key=lambda r: r.cell["region"]):
            m = r.metrics
            if r.under_k:
                continue
            gb, sess = m["bytes.sum"], m["session.mean"]
            print(f"  {r.cell['region']:11} {m['accounts'].value:7.0f} "
                  f"±{m['accounts'].ci95_high - m['accounts'].value:<4.0f}"
                  f"{gb.value / 1e9:9.2f} ±{(gb.ci95_high - gb.value) / 1e9:<5.2f}"
                  f"{sess.value:12.0f} ±{sess.ci95_high - sess.value:<5.0f}")
    sys.stdout.flush()


async def _view(bootstrap: str, config: PipelineConfig, stop: asyncio.Event,
                counters: dict[str, int]) -> None:
    """Print each released window of every stream once it is whole (its completion
    records are in: agents/releases.py ``windows``), from the first window on."""
    from privmon.agents.releases import windows

    async def one(stream: str) -> None:
        if stop.is_set():  # (stopped before the worker made the topics)
            return
        async for window in windows(bootstrap, config.topics.aggregate(stream), stop,
                                    since_ms=0):
            counters["released"] += len(window.records)
            _print_window(window.stream, window.start_ms, window.records)

    await asyncio.gather(*(one(p.name) for p in config.policies))


def _print_alert(alert: Alert) -> None:
    t0 = time.strftime("%H:%M:%S", time.localtime(alert.window_start_ms / 1000))
    print(f"\n!! ALERT [{alert.severity}] window {t0}: {alert.summary}\n   {alert.describe()}",
          flush=True)


async def _main(bootstrap: str, args: argparse.Namespace, config: PipelineConfig,
                rules: AlertConfig) -> None:
    from privmon.agents.alerts.agent import AlertAgent
    from privmon.agents.worker import Worker

    stop = stop_event(args.duration_s)
    # Ephemeral pseudonymization and noise keys: they live in this process only.
    pseudonymizer = Pseudonymizer({0: secrets.token_bytes(32)})
    noise_keys = NoiseKeys({0: secrets.token_bytes(32)})
    worker = Worker(config=config, bootstrap=bootstrap, worker_id="demo",
                    pseudonymizer=pseudonymizer, noise_keys=noise_keys, partitions=4,
                    idle_lag_ms=3000)
    counters = dict.fromkeys(("produced", "malformed", "released"), 0)
    alerter = AlertAgent(pipeline=config, alerts=rules, bootstrap=bootstrap,
                         export_streams=["monitoring"])
    alerter.on_alert = _print_alert
    if args.metrics_port is not None:
        alerter.metrics.serve(args.metrics_port)
    worker_task = asyncio.create_task(worker.run(stop))
    from privmon.agents.releases import wait_for_topics

    await wait_for_topics(bootstrap, [config.topics.raw, *(config.topics.aggregate(p.name)
                                                          for p in config.policies)], stop)
    tasks = [worker_task, asyncio.create_task(alerter.run(stop)),
             asyncio.create_task(_produce(bootstrap, config.topics.raw, args, stop, counters)),
             asyncio.create_task(_view(bootstrap, config, stop, counters))]
    started = time.monotonic()
    while not stop.is_set():
        await asyncio.wait([worker_task], timeout=5)
        if worker_task.done():
            stop.set()
            break
        s = worker.stats
        # Only what the worker released: its input-side counts are exact (trusted zone).
        print(f"[{time.monotonic() - started:5.0f}s] generator produced "
              f"{counters['produced']:,} events (+{counters['malformed']} malformed); worker "
              f"released {s.windows_released} windows, {s.cells_released} cells; "
              f"{len(alerter.fired)} alerts", flush=True)
    await asyncio.gather(*tasks)


def run(args: argparse.Namespace) -> int:
    # Kafka >= 4 answers produce requests of a transaction whose partition
    # registration is still being verified (KIP-890) with a retriable error
    # that aiokafka logs as a warning and retries; keep the demo's view clean.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    quiet_retried_kafka_errors()
    prefix = args.topic_prefix or f"demo-{secrets.token_hex(3)}."
    config = load_config(args.config)
    rules = load_alert_config(args.rules, config).with_prefix(prefix)
    config = with_prefix(config, prefix)
    for cap in config.global_caps:
        g = horizon_guarantee(config.policies, cap)
        print(f"privmon demo: streams {[p.name for p in config.policies]}; per account over "
              f"{cap.horizon_ms / 3_600_000:g} h: epsilon <= {g.epsilon:.3g}, "
              f"delta <= {g.delta:.1g} (cap {cap.max_epsilon:g})")
    for note in cap_notes(config, args.duration_s):
        print(note)
    cluster = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        from privmon.streams.localkafka.cluster import LocalKafka

        cluster = LocalKafka(name="demo", port=None, num_partitions=4)
        print("starting local Apache Kafka (the first run downloads it with Maven) ...",
              flush=True)
        bootstrap = cluster.start()
        print(f"Kafka up at {bootstrap}")
    print(f"generator -> {config.topics.raw} at ~{args.rate:.0f} events/s, incident on fra-03 "
          f"after {args.incident_after_s:.0f}s; worker -> {config.topics.aggregate_prefix}*; "
          f"alerts -> {rules.topic}"
          + (f", gauges on :{args.metrics_port}/metrics" if args.metrics_port else "") + ". "
          "Ctrl-C to stop.", flush=True)
    try:
        asyncio.run(_main(bootstrap, args, config, rules))
    finally:
        if cluster is not None and not args.keep_kafka:
            cluster.stop(purge=True)
            print("local Kafka stopped")
    print("demo finished")
    if cluster is not None and not args.keep_kafka:
        print("\nTo read this demo's releases with the downstream tools, run it with "
              "--keep-kafka: it then prints the commands for its broker and topics.")
        return 0
    print("\nwhat next: the released aggregates, as an analyst, a planner and the privacy "
          "officer see them" + (f" (stop the broker after with: {_self()} kafka stop --name "
                                "demo --purge)" if cluster is not None else "") + ":")
    for line in what_next(bootstrap=bootstrap, config=args.config.resolve(), prefix=prefix):
        print(f"  {line}")
    return 0
