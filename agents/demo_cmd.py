"""`privmon demo`: local Kafka, live telemetry, private releases on screen.

What runs (all real, on 127.0.0.1):
1. a local Apache Kafka broker (privmon kafka, unless --bootstrap is given);
2. the telemetry generator producing batch envelopes to ``telemetry.raw``,
   with an incident (error spike on one server) after --incident-after-s;
3. a consumer that pseudonymizes account ids (keyed HMAC), bounds each
   account's contribution, aggregates 10-second event-time windows per
   (server, region), and releases them through privacy/ (k floor, DP
   selection, noise) to ``aggregates.demo`` — printing what was released.

This is the in-process preview of the pipeline; the Faust worker (two keyed
stages, exactly-once release) is the next step and will replace it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from privacy import accumulators as acc
from privacy.accountant import Accountant, check_policies, horizon_guarantee
from privacy.bounding import ContributionTable
from privacy.params import (
    BooleanMetric,
    ContributionBounds,
    HistogramMetric,
    HorizonCap,
    ParticipationCap,
    PrivacyBudget,
    StreamPolicy,
    ValueMetric,
)
from privacy.release import WindowRelease, release_window
from streams.generator import Incident, TelemetryGenerator

RAW_TOPIC, OUT_TOPIC = "telemetry.raw", "aggregates.demo"
DAY_MS = 86_400_000
LATENCY_EDGES = (0, 10, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000)


def demo_policy(window_ms: int) -> StreamPolicy:
    return StreamPolicy(
        name="demo", window_ms=window_ms, grace_ms=2000, dimensions=("server", "region"),
        metrics=(
            ValueMetric(name="latency", field="latency_ms", lower=0, upper=5000),
            BooleanMetric(name="errors", field="error"),
            HistogramMetric(name="latency_hist", field="latency_ms", edges=LATENCY_EDGES),
        ),
        bounds=ContributionBounds(max_cells=1, max_events_per_cell=4),
        budget=PrivacyBudget(mechanism="geometric", epsilon=1.0, delta=1e-7, shares={
            "selection": 0.1, "events": 0.2, "latency": 0.1, "errors": 0.3, "latency_hist": 0.3,
        }),
        k=10,
        participation=ParticipationCap(max_windows=60, period_ms=DAY_MS),
        horizon_caps=(HorizonCap(horizon_ms=DAY_MS, max_epsilon=60.0, max_delta=1e-4),),
        policy_version="demo-1",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the local demo: Kafka, telemetry with an incident, live private releases",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration-s", type=float, default=90.0,
                   help="stop after this many seconds (default 90; Ctrl-C stops earlier)")
    p.add_argument("--rate", type=float, default=3000.0, help="events per second (default 3000)")
    p.add_argument("--accounts", type=int, default=8000, help="simulated accounts (default 8000)")
    p.add_argument("--window-s", type=int, default=10, help="window length in seconds")
    p.add_argument("--incident-after-s", type=float, default=30.0,
                   help="seconds until server fra-03 starts failing (default 30)")
    p.add_argument("--bootstrap", default=None,
                   help="use this Kafka instead of starting the local one (e.g. kafka:9092)")
    p.add_argument("--keep-kafka", action="store_true", help="leave the local broker running")
    p.set_defaults(func=run)


@dataclass
class OpenWindow:
    table: ContributionTable
    accounts: dict[bytes, int] = field(default_factory=dict)
    events: int = 0


class DemoAggregator:
    """Pseudonymize, window by event time, bound and aggregate; release closed windows."""

    def __init__(self, policy: StreamPolicy) -> None:
        self.policy = policy
        self.key = secrets.token_bytes(32)  # HMAC key: per run, never written anywhere
        self.cells: dict[tuple[str, str], int] = {}
        self.labels: list[dict[str, str]] = []
        self.open: dict[int, OpenWindow] = {}
        self.late = self.invalid = 0

    def _cell(self, server: str, region: str) -> int:
        cell = self.cells.get((server, region))
        if cell is None:
            cell = self.cells[(server, region)] = len(self.labels)
            self.labels.append({"server": server, "region": region})
        return cell

    def add(self, events: list[dict], now_ms: int) -> None:
        by_window: dict[int, list[tuple[int, int, float, bool]]] = {}
        w = self.policy.window_ms
        for e in events:
            try:
                pseudonym = hmac.new(self.key, e["account_id"].encode(), hashlib.sha256).digest()
                start = int(e["event_time_ms"]) // w * w
                row = (self._cell(str(e["server"]), str(e["region"])),
                       float(e["latency_ms"]), bool(e["error"]))
            except (KeyError, TypeError, ValueError, AttributeError):
                self.invalid += 1
                continue
            if start + w + self.policy.grace_ms <= now_ms and start not in self.open:
                self.late += 1
                continue
            window = self.open.setdefault(start, OpenWindow(ContributionTable(self.policy)))
            account = window.accounts.setdefault(pseudonym, len(window.accounts))
            by_window.setdefault(start, []).append((account, *row))
        for start, rows in by_window.items():
            a, c, lat, err = (np.array(x) for x in zip(*rows, strict=True))
            self.open[start].table.add(a, c, {"latency_ms": lat, "error": err})
            self.open[start].events += len(rows)

    def close_due(self, now_ms: int) -> list[tuple[int, int, WindowRelease]]:
        """Release every window whose end + grace has passed (even with no new events)."""
        out = []
        for start in sorted(self.open):
            if start + self.policy.window_ms + self.policy.grace_ms > now_ms:
                break
            window = self.open.pop(start)
            totals = acc.add(acc.initialize(self.policy),
                             window.table.bounded_rows(np.random.default_rng()))
            out.append((start, window.events, release_window(
                totals, self.policy, window_start_ms=start, cell_labels=self.labels.__getitem__,
            )))
        return out


def _print_release(start_ms: int, events: int, rel: WindowRelease, k: int) -> None:
    t0 = time.strftime("%H:%M:%S", time.localtime(start_ms / 1000))
    print(f"\nwindow {t0} (+{rel.records[0].window_end_ms - start_ms if rel.records else 0} ms): "
          f"{events:,} events in, {rel.cells_total} cells, {len(rel.records)} released, "
          f"{rel.suppressed_under_k} under k={k}, {rel.suppressed_by_selection} held back by DP "
          "selection")
    print(f"  {'server':8} {'region':11} {'accounts':>12} {'events':>13} "
          f"{'error rate [95% CI]':>24} {'p95 latency ms [95% CI]':>26}")
    for r in sorted(rel.records, key=lambda r: (r.cell["region"], r.cell["server"])):
        m = r.metrics
        er, p95 = m["errors.rate"], m["latency_hist.p95"]
        flag = "  <- error rate above 5% with 95% confidence" if er.ci95_low > 0.05 else ""
        print(f"  {r.cell['server']:8} {r.cell['region']:11} "
              f"{m['accounts'].value:7.0f} ±{m['accounts'].ci95_high - m['accounts'].value:<4.0f}"
              f"{m['events'].value:8.0f} ±{m['events'].ci95_high - m['events'].value:<4.0f}"
              f"{er.value:9.1%} [{er.ci95_low:6.1%},{er.ci95_high:6.1%}]"
              f"{p95.value:9.0f} [{p95.ci95_low:5.0f},{p95.ci95_high:6.0f}]{flag}")


async def _produce(bootstrap: str, args: argparse.Namespace, stop: asyncio.Event,
                   counters: dict[str, int]) -> None:
    from aiokafka import AIOKafkaProducer

    now_ms = int(time.time() * 1000)
    gen = TelemetryGenerator(accounts=args.accounts, incident=Incident(
        server="fra-03", start_ms=now_ms + int(args.incident_after_s * 1000)))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        tick_s = 0.1
        while not stop.is_set():
            t = int(time.time() * 1000)
            n = int(gen.rng.poisson(args.rate * tick_s))
            events = gen.events(n, start_ms=t - int(tick_s * 1000), end_ms=t)
            for i in range(0, len(events), 100):  # batch envelopes of up to 100 events
                chunk = events[i:i + 100]
                await producer.send(RAW_TOPIC, key=chunk[0]["account_id"].encode(),
                                    value=json.dumps({"events": chunk}).encode())
            counters["produced"] += n
            await asyncio.sleep(tick_s)
    finally:
        await producer.stop()


async def _consume(bootstrap: str, policy: StreamPolicy, stop: asyncio.Event,
                   counters: dict[str, int]) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    agg = DemoAggregator(policy)
    accountant = Accountant([policy])
    consumer = AIOKafkaConsumer(RAW_TOPIC, bootstrap_servers=bootstrap,
                                group_id=f"privmon-demo-{secrets.token_hex(4)}",
                                auto_offset_reset="latest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            now_ms = int(time.time() * 1000)
            for records in batches.values():
                for record in records:
                    try:
                        events = json.loads(record.value)["events"]
                    except (ValueError, KeyError, TypeError):
                        agg.invalid += 1
                        continue
                    counters["consumed"] += len(events)
                    agg.add(events, now_ms)
            for start, n_events, rel in agg.close_due(now_ms):
                accountant.record(policy, window_start_ms=start, cells_released=len(rel.records))
                for r in rel.records:
                    await producer.send(OUT_TOPIC, value=r.to_json())
                counters["released"] += len(rel.records)
                _print_release(start, n_events, rel, policy.k)
            counters["late"], counters["invalid"] = agg.late, agg.invalid
    finally:
        await consumer.stop()
        await producer.stop()


async def _main(bootstrap: str, args: argparse.Namespace, policy: StreamPolicy) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(args.duration_s, stop.set)
    counters = dict.fromkeys(("produced", "consumed", "released", "late", "invalid"), 0)
    tasks = [asyncio.create_task(_consume(bootstrap, policy, stop, counters)),
             asyncio.create_task(_produce(bootstrap, args, stop, counters))]
    started = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(5)
        print(f"[{time.monotonic() - started:5.0f}s] produced {counters['produced']:,} events, "
              f"consumed {counters['consumed']:,}, released {counters['released']} cells, "
              f"late {counters['late']}, invalid {counters['invalid']}", flush=True)
    await asyncio.gather(*tasks)


def run(args: argparse.Namespace) -> int:
    policy = demo_policy(args.window_s * 1000)
    check_policies([policy])
    day = horizon_guarantee([policy], policy.horizon_caps[0])
    print(f"privmon demo: {args.window_s}s windows per (server, region); per window "
          f"epsilon={policy.budget.epsilon}, delta={policy.budget.delta}, k={policy.k}; "
          f"an account is in at most {policy.participation.max_windows} windows a day, so "
          f"over 24 h epsilon<={day.epsilon:g}, delta<={day.delta:.1g}.")
    cluster = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        from streams.localkafka.cluster import LocalKafka

        cluster = LocalKafka(name="demo", num_partitions=4)
        print("starting local Apache Kafka (first run downloads it with Maven) ...", flush=True)
        bootstrap = cluster.start()
        print(f"Kafka up at {bootstrap}")
    print(f"generator -> {RAW_TOPIC} at ~{args.rate:.0f} events/s; incident on fra-03 after "
          f"{args.incident_after_s:.0f}s; releases -> {OUT_TOPIC}. Ctrl-C to stop.", flush=True)
    try:
        asyncio.run(_main(bootstrap, args, policy))
    finally:
        if cluster is not None and not args.keep_kafka:
            cluster.stop()
            print("local Kafka stopped")
    print("demo finished", file=sys.stderr)
    return 0
