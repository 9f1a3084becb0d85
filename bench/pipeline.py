"""Pipeline benchmark: the limit, the naive Faust baseline and privmon, side by side.

    python -m bench.pipeline [--events-single N] [--events-envelope N] [--write]

One run starts one local Kafka broker (streams/localkafka), generates the same
telemetry into two topics (single-event messages; envelopes of --envelope
events per message, keyed by account), and measures on each, one after the
other, each in its own process (peak RSS = that process's VmHWM):

- limit:    raw aiokafka consume + privmon's validating decode as stage 1 runs it
            (the batch path for single events), no processing, with the worker's
            garbage-collector settings (agents/cli/worker.py quiet_gc), run before and
            after privmon: every "of limit" ratio is to the faster of the two; beside
            it the same with confluent-kafka (librdkafka), and Kafka's own Java
            consumer (consume only, no decode: kafka-consumer-perf-test's class);
- faust:    bench/faust_baseline.py, a Faust agent updating a windowed Table per
            event (same 1-minute windows, per (server, region)), no privacy; and
            the batched Faust agent feeding privmon's stage 1 (the fair baseline);
- privmon:  `privmon worker` on configs/streams.toml (monitoring, research and
            capacity: bounding, aggregation, selection, noise, release), 1 and
            (envelopes) 2 workers.

events/s is events / (last event processed - first message read): for the limits,
in their own loop; for privmon, by the workers' own stamps (first raw records
ingested, start-up done, to the last ingest; agents/stats.py), where a status
line every 0.25 s, refreshed at each close, missed up to ~1 s of the start. Then a live
run measures release latency: --latency-rate events/s over --latency-cells
public cells with --latency-window-ms windows (2 s), and over
--latency-cells-large cells with --latency-window-ms-large windows (10 s: a
window must outlast its own release work, or every later one waits behind it);
latency = the window's ledger entry visible to a read_committed reader minus
(window end + grace). Figures go to stdout and, with
--write, to bench/RESULTS.md. Nothing here is asserted: benchmarks report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.latency import latency_text, run_latency
from bench.shared import KEYS, REPO, hwm_mib, worker_env


# --------------------------------------------------------------- measured parts
async def _limit(bootstrap: str, topic: str, expect: int) -> dict:
    """Consume everything and decode it with privmon's decoder; nothing else."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or
             (await _partitions(bootstrap, topic))]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    n, first = 0, None
    now = int(time.time() * 1000)
    while n < expect:
        batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
        if first is None and batch:
            first = time.perf_counter()
        for msgs in batch.values():
            n += decode_all([m.value for m in msgs], now)
        await asyncio.sleep(0)  # let the fetcher ask for drained partitions (as the worker)
    last = time.perf_counter()
    await consumer.stop()
    return {"events": n, "seconds": last - (first or last)}


def decode_all(values: list[bytes], now_ms: int) -> int:
    """Events in ``values``, decoded as stage 1 decodes them (the batch path for
    single events, then one message at a time), with nothing else done."""
    from privmon.streams.decode import decode_message, decode_singles

    n = 0
    for value, single in zip(values, decode_singles(values, now_ms=now_ms), strict=True):
        n += 1 if single is not None else len(decode_message(value, now_ms=now_ms).events)
    return n


async def _partitions(bootstrap: str, topic: str) -> set[int]:
    from privmon.agents.releases import topic_partitions

    return (await topic_partitions(bootstrap, [topic]))[topic]


def _limit_confluent(bootstrap: str, topic: str, expect: int) -> dict:
    """The same as ``_limit`` with confluent-kafka (librdkafka): batch ``consume``."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-ck-{topic}",
                         "enable.auto.commit": False, "fetch.max.bytes": 64 << 20,
                         "max.partition.fetch.bytes": 8 << 20})
    meta = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                     for p in meta.topics[topic].partitions])
    n, first = 0, None
    now = int(time.time() * 1000)
    while n < expect:
        msgs = consumer.consume(num_messages=5000, timeout=1.0)
        if first is None and msgs:
            first = time.perf_counter()
        n += decode_all([m.value() for m in msgs if m.error() is None], now)
    last = time.perf_counter()
    consumer.close()
    return {"events": n, "seconds": last - (first or last)}


JAVA_TOOLS_POM = REPO / "bench" / "java" / "pom.xml"


def run_java_limit(bootstrap: str, topic: str, messages: int, events: int) -> dict:
    """Kafka's own Java consumer (kafka-consumer-perf-test's ConsumerPerformance) reading
    the topic: consume only, no decode. Its jars are resolved by Maven on first use."""
    from privmon.streams.localkafka.jars import cache_root, require_java, require_maven

    lib = cache_root() / "kafka-tools-4.1.1"
    if not (lib / "kafka-tools-4.1.1.jar").exists():
        staging = lib.with_name(lib.name + ".partial")
        subprocess.run([require_maven(), "-B", "-q", "-f", str(JAVA_TOOLS_POM),
                        "dependency:copy-dependencies", f"-DoutputDirectory={staging}"],
                       check=True, capture_output=True)
        staging.rename(lib)
    proc = subprocess.run(
        [require_java(), "-cp", f"{lib}/*", "org.apache.kafka.tools.ConsumerPerformance",
         "--bootstrap-server", bootstrap, "--topic", topic, "--messages", str(messages),
         "--timeout", "60000"],
        capture_output=True, text=True, timeout=600)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    rows = [ln for ln in proc.stdout.splitlines() if ln and ln[0].isdigit()]
    header = [h.strip() for h in next(ln for ln in proc.stdout.splitlines()
                                      if "nMsg" in ln).split(",")]
    if not rows:  # the summary: start.time, end.time, ..., fetch.time.ms, ...
        raise RuntimeError(f"ConsumerPerformance printed no figures:\n{proc.stdout[-2000:]}")
    values = dict(zip(header, (v.strip() for v in rows[-1].split(",")), strict=False))
    # fetch.time.ms: time spent fetching, after the group join (rebalance.time.ms)
    seconds = float(values.get("fetch.time.ms", "nan")) / 1000
    return {"events": events, "seconds": seconds, "messages": messages}


def run_limit(bootstrap: str, topic: str, expect: int, client: str = "aiokafka") -> dict:
    which = "_limit" if client == "aiokafka" else "_limit_confluent"
    proc = subprocess.run([sys.executable, "-m", "bench.pipeline", which, bootstrap, topic,
                           str(expect)], cwd=REPO, capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.splitlines()[-1])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_faust(bootstrap: str, topic: str, expect: int, workdir: Path, *, mode: str = "naive",
              config: Path | None = None) -> dict:
    """bench/faust_baseline.py in ``mode`` (naive, or batched into privmon's stage 1)."""
    tag = f"{mode}-{topic}"
    report = workdir / f"faust-{tag}.json"
    env = {**os.environ, "BENCH_BOOTSTRAP": bootstrap, "BENCH_TOPIC": topic,
           "BENCH_DATADIR": str(workdir / f"faust-{tag}"), "BENCH_EXPECT": str(expect),
           "BENCH_REPORT": str(report), "BENCH_WINDOW_S": "60", "PYTHONPATH": str(REPO),
           "BENCH_MODE": mode, "BENCH_CONFIG": str(config or ""),
           "PRIVMON_PSEUDONYM_KEYS": KEYS, "BENCH_WEB_PORT": str(_free_port())}
    log = open(workdir / f"faust-{tag}.log", "wb")
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "faust_baseline.py"),
                             "worker", "--loglevel", "warn"], env=env, cwd=workdir,
                            stdout=log, stderr=subprocess.STDOUT)
    hwm = 0.0
    deadline = time.monotonic() + 600
    try:
        while not report.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"faust baseline did not finish; see {log.name}")
            hwm = max(hwm, hwm_mib(proc.pid))
            time.sleep(0.2)
        time.sleep(0.2)
        hwm = max(hwm, hwm_mib(proc.pid))
        r = json.loads(report.read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    return {"events": r["events"], "seconds": r["last_s"] - r["first_s"], "rss_mib": hwm}


def run_privmon(bootstrap: str, config: Path, expect: int, workers: int, workdir: Path,
                tag: str, partitions: int, *, input_after_join: Callable[[], object] | None = None,
                profile: Path | None = None, tree: Path | None = None) -> dict:
    """`privmon worker` processes until every raw partition is read to its end.

    Done = the workers' trusted status files (every 0.25 s) report lag 0 for all
    ``partitions`` raw partitions after reading at least ``expect`` events
    (events re-read after a rebalance count again in "accepted": the re-read
    fraction is (accepted - expect) / expect). With ``input_after_join`` the
    topic starts empty: it is called (in a thread) once every worker holds raw
    partitions, and writes the input while they run. With ``profile`` (a directory)
    each worker runs under pyinstrument and its profile (main thread) goes there. With
    ``tree`` (bench.shared.extract_revision's) the workers run that revision's code."""
    import threading

    env = worker_env(tree)
    procs, logs, trusted = [], [], []
    for w in range(workers):
        log = workdir / f"privmon-{tag}-w{w}.log"
        logs.append(log)
        # Progress is an exact count: only the trusted status file has it.
        trusted.append(workdir / f"privmon-{tag}-w{w}.status.json")
        profiler = [] if profile is None else [
            "-m", "pyinstrument", "-r", "text", "-o", str(profile / f"privmon-{tag}-w{w}.txt")]
        procs.append(subprocess.Popen(
            [sys.executable, *profiler, "-m", "privmon.agents.cli", "worker",
             "--bootstrap", bootstrap,
             "--config", str(config), "--worker-id", f"bench{w}", "--status-every-s", "0.25",
             "--trusted-status", str(trusted[-1])],
            cwd=REPO, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT))
    hwm = [0.0] * workers
    stamps: list[tuple[float, float]] = [(0.0, 0.0)] * workers  # (first read, last ingest)
    per = [0] * workers  # accepted per worker
    per_first: list[float | None] = [None] * workers
    per_last: list[float | None] = [None] * workers
    first = last = None
    accepted = 0
    feeder: threading.Thread | None = None
    deadline = time.monotonic() + 1800
    try:
        while True:
            accepted, lag, owners = 0, {}, []
            now = time.perf_counter()
            for w, path in enumerate(trusted):
                try:
                    status = json.loads(path.read_text())
                except (OSError, ValueError):
                    status = None
                if status:
                    accepted += status["accepted"]
                    lag.update(status.get("raw_lag", {}))
                    owners.append(bool(status.get("raw_lag")))
                    stamps[w] = (status.get("first_read_s", 0.0),
                                 status.get("last_ingest_s", 0.0))
                    if status["accepted"] > per[w]:
                        per[w] = status["accepted"]
                        per_first[w] = per_first[w] or now
                        per_last[w] = now
                hwm[w] = max(hwm[w], hwm_mib(procs[w].pid))
            if input_after_join is not None and feeder is None:
                if len(owners) == workers and all(owners) and len(lag) == partitions:
                    feeder = threading.Thread(target=input_after_join, daemon=True)
                    feeder.start()
                time.sleep(0.05)
                continue
            if accepted and first is None:
                first = now
            if accepted >= expect and len(lag) == partitions and not any(lag.values()):
                last = now
                break
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise RuntimeError(f"privmon worker stopped early; see {logs[0]}")
            time.sleep(0.05)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
    # The workers' own clock: first raw records got to the last ingest returned (the
    # status lines are 0.25 s apart, and stage 1 refreshes its counts every close).
    # Before the stamps existed (a baseline tree): first status with accepted > 0 to
    # the one that showed all of it.
    seconds_status = last - first
    if all(a and b for a, b in stamps):
        seconds = max(b for _, b in stamps) - min(a for a, _ in stamps)
        per_first = [a for a, _ in stamps]  # type: ignore[misc]
        per_last = [b for _, b in stamps]  # type: ignore[misc]
    else:
        seconds = seconds_status
    return {"events": expect, "accepted": accepted, "seconds": seconds,
            "seconds_status": seconds_status,
            "rss_mib": max(hwm), "reread": (accepted - expect) / expect,
            "per_worker_events_s": [n / ((b - a) or float("nan")) if a and b else 0.0
                                    for n, a, b in zip(per, per_first, per_last, strict=True)],
            "per_worker_events": per}


# ------------------------------------------------------------------ set-up
def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    admin.close()


def encode_input(events: int, envelope: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """The (key, value) messages of ``events`` generated events, 1 or up to
    ``envelope`` per message (encoded before any timing starts)."""
    from privmon.streams.generator import TelemetryGenerator

    # Envelopes are one account's batch of reports: fewer, busier accounts, so that
    # a 100k-event chunk holds ~``envelope`` events per account.
    chunk = 100_000
    accounts = 100_000 if envelope == 1 else max(100, chunk // envelope)
    gen = TelemetryGenerator(accounts=accounts, seed=seed)
    now = int(time.time() * 1000)
    out: list[tuple[bytes, bytes]] = []
    done = 0
    while done < events:
        n = min(chunk, events - done)
        batch = gen.events(n, start_ms=now - 50_000, end_ms=now)
        if envelope == 1:
            out += [(e["account_id"].encode(), json.dumps(e).encode()) for e in batch]
        else:
            by_account: dict[str, list] = {}
            for e in batch:
                by_account.setdefault(e["account_id"], []).append(e)
            for account, own in by_account.items():
                out += [(account.encode(), json.dumps({"events": own[i:i + envelope]}).encode())
                        for i in range(0, len(own), envelope)]
        done += n
        print(f"  encoded {done:,}/{events:,} events", file=sys.stderr, flush=True)
    print(f"  {len(out):,} messages, {events / len(out):.1f} events per message",
          file=sys.stderr, flush=True)
    return out


def send_input(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Write the messages to ``topic``; the seconds it took. With librdkafka
    (confluent-kafka): kafka-python's producer took ~47 s for 500k messages here,
    most of a run's set-up. Partitioned by murmur2, as Kafka's Java client and
    kafka-python do (streams/partitioner.py), so every run places keys alike."""
    from confluent_kafka import KafkaException, Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50,
                         "batch.size": 1 << 20, "message.max.bytes": 8 << 20, "acks": 1,
                         "partitioner": "murmur2_random",
                         "queue.buffering.max.messages": 1_000_000})
    failed: list[str] = []

    def delivered(err, _msg) -> None:  # type: ignore[no-untyped-def]
        if err is not None:
            failed.append(str(err))

    t0 = time.perf_counter()
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120) or failed:
        raise KafkaException(f"bench input to {topic}: {len(failed)} failed "
                             f"({failed[:1]}), or not all delivered in 120 s")
    return time.perf_counter() - t0


def produce(bootstrap: str, topic: str, events: int, envelope: int, partitions: int,
            seed: int = 7) -> tuple[float, int]:
    """Create ``topic`` and write the events; (seconds the writing took, messages)."""
    create_topic(bootstrap, topic, partitions)
    messages = encode_input(events, envelope, seed)
    return send_input(bootstrap, topic, messages), len(messages)


def bench_config(workdir: Path, raw: str, prefix: str) -> Path:
    """configs/streams.toml on its own topics, reading ``raw``."""
    text = (REPO / "configs" / "streams.toml").read_text()
    text = text.replace('raw = "telemetry.raw"', f'raw = "{raw}"')
    # The bench's ~10k synthetic cells per window are not the inventory: private cells,
    # with partition selection (and its delta) as before public cells were the default.
    for before, after in [('public_cells = "inventory.toml"', ""),
                          ("delta = 0                        # public cells: no partition "
                           "selection", "delta = 2e-8"),
                          ("delta = 0\n", "delta = 1e-8\n"),
                          ("max_delta = 1e-6\n\n[[global_caps]]",
                           "max_delta = 1e-5\n\n[[global_caps]]"),
                          ("max_delta = 1e-5\n\n# --- monitoring",
                           "max_delta = 1e-4\n\n# --- monitoring")]:
        assert before in text, f"bench_config: {before!r} not in configs/streams.toml"
        text = text.replace(before, after)
    # Every topic a run writes is its own: a shared participation topic would let each
    # run restore (and save again at every close) the accounts of the runs before it.
    for name in ("telemetry.dlq", "privmon.partials", "privmon.ledger", "privmon.progress",
                 "privmon.alerts", "privmon.participation"):
        text = text.replace(f'"{name}"', f'"{prefix}{name}"')
    text = text.replace('aggregate_prefix = "aggregates."',
                        f'aggregate_prefix = "{prefix}aggregates."')
    text = text.replace('app_id = "privmon"', f'app_id = "{prefix}privmon"')
    path = workdir / f"{prefix}streams.toml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------- latency
def _row(name: str, r: dict, limit: dict | None = None, base: dict | None = None) -> str:
    eps = r["events"] / r["seconds"] if r["seconds"] else float("nan")
    vs_limit = f"{eps / (limit['events'] / limit['seconds']):.1%}" if limit else ""
    vs_base = f"{eps / (base['events'] / base['seconds']):.1f}x" if base else ""
    rss = f"{r['rss_mib']:.0f}" if "rss_mib" in r else ""
    return f"| {name} | {r['events']:,} | {r['seconds']:.2f} | {eps:,.0f} | {vs_limit} | " \
           f"{vs_base} | {rss} |"


def main(argv: list[str] | None = None) -> int:
    if argv and argv[0] == "_limit":
        from privmon.agents.cli.worker import quiet_gc

        quiet_gc()  # (the worker's garbage-collector settings: the limit gains what it gains)
        print(json.dumps(asyncio.run(_limit(argv[1], argv[2], int(argv[3])))))
        return 0
    if argv and argv[0] == "_limit_confluent":
        print(json.dumps(_limit_confluent(argv[1], argv[2], int(argv[3]))))
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.pipeline",
                                description=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events-single", type=int, default=500_000,
                   help="single-event messages (100k read in ~0.2 s: too short to time)")
    p.add_argument("--events-envelope", type=int, default=1_000_000)
    p.add_argument("--envelope", type=int, default=100, help="events per envelope message")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--latency-cells", type=int, default=10_000)
    p.add_argument("--latency-cells-large", type=int, default=100_000,
                   help="a second latency run over this many cells (0: none)")
    p.add_argument("--latency-window-ms", type=int, default=2_000)
    p.add_argument("--latency-window-ms-large", type=int, default=10_000,
                   help="the window of the --latency-cells-large run")
    p.add_argument("--latency-rate", type=float, default=20_000)
    p.add_argument("--latency-stages", choices=("both", "split"), default="split",
                   help="the latency runs' worker: one process for both stages, or "
                   "'privmon worker --stages 1' and '--stages 2' as two processes "
                   "(default %(default)s, as the README recommends where release latency matters)")
    p.add_argument("--latency-workers", type=int, default=1,
                   help="workers of the latency runs (one group, sharing the partitions)")
    p.add_argument("--latency-seconds", type=float, default=60)
    p.add_argument("--latency-warmup-s", type=float, default=240,
                   help="at most this long before measuring: a fresh pipeline first "
                        "releases stage 2's lookback windows (every listed cell of each)")
    p.add_argument("--skip-faust", action="store_true")
    p.add_argument("--modes", default="single,envelope",
                   help="comma-separated: which inputs to run (single, envelope)")
    p.add_argument("--latency-only", action="store_true", help="only the release-latency run")
    p.add_argument("--write", action="store_true", help="append the tables to bench/RESULTS.md")
    p.add_argument("--profile-workers", type=Path, metavar="DIR",
                   help="run the throughput rows' workers under pyinstrument (slower: not "
                        "for figures) and write their profiles to DIR")
    args = p.parse_args(argv)
    if args.profile_workers:  # (pyinstrument writes into it, and would not create it)
        args.profile_workers.mkdir(parents=True, exist_ok=True)

    from privmon.streams.localkafka.cluster import LocalKafka

    workdir = Path(tempfile.mkdtemp(prefix="privmon-bench-"))
    cluster = LocalKafka(name="bench", state_root=workdir / "kafka", port=None,
                         num_partitions=args.partitions)
    print(f"bench: starting Kafka (work dir {workdir}) ...", file=sys.stderr, flush=True)
    bootstrap = cluster.start()
    lines = []
    try:
        results: dict[str, dict] = {}
        modes = (("single", args.events_single, 1),
                 ("envelope", args.events_envelope, args.envelope))
        wanted = set(args.modes.split(","))
        for mode, events, env_size in () if args.latency_only else modes:
            if mode not in wanted:
                continue
            topic = f"bench-{mode}"
            secs, messages = produce(bootstrap, topic, events, env_size, args.partitions)
            print(f"bench: {mode}: produced {events:,} events in {secs:.1f}s", file=sys.stderr)
            r = results[mode] = {}
            r["limit"] = run_limit(bootstrap, topic, events)
            print(f"bench: {mode} limit: {r['limit']}", file=sys.stderr, flush=True)
            r["limit_confluent"] = run_limit(bootstrap, topic, events, client="confluent")
            print(f"bench: {mode} limit, confluent-kafka: {r['limit_confluent']}",
                  file=sys.stderr, flush=True)
            r["limit_java"] = run_java_limit(bootstrap, topic, messages, events)
            print(f"bench: {mode} Java consumer: {r['limit_java']}", file=sys.stderr, flush=True)
            if not args.skip_faust:
                r["faust"] = run_faust(bootstrap, topic, events, workdir)
                print(f"bench: {mode} faust: {r['faust']}", file=sys.stderr, flush=True)
                r["faust_batched"] = run_faust(bootstrap, topic, events, workdir,
                                               mode="batched",
                                               config=bench_config(workdir, topic, "fb."))
                print(f"bench: {mode} faust batched: {r['faust_batched']}", file=sys.stderr,
                      flush=True)
            for workers in (1, 2) if mode == "envelope" else (1,):
                cfg = bench_config(workdir, topic, f"{mode}{workers}.")
                r[f"privmon{workers}"] = run_privmon(bootstrap, cfg, events, workers, workdir,
                                                     f"{mode}{workers}", args.partitions,
                                                     profile=args.profile_workers)
                print(f"bench: {mode} privmon x{workers}: {r[f'privmon{workers}']}",
                      file=sys.stderr, flush=True)
            # The limit again, after privmon: it swings between runs (the broker's page
            # cache and its background work after the input was written), so every ratio is
            # to the faster of the two (the harder one to reach).
            again = run_limit(bootstrap, topic, events)
            print(f"bench: {mode} limit, again: {again}", file=sys.stderr, flush=True)
            r["limit_runs_s"] = [r["limit"]["seconds"], again["seconds"]]
            if again["seconds"] < r["limit"]["seconds"]:
                r["limit"] = again
            if mode == "envelope":  # the second worker joins before the input starts
                late = f"{topic}-after-join"
                create_topic(bootstrap, late, args.partitions)
                cfg = bench_config(workdir, late, "joined2.")
                fed: dict = {}
                messages = encode_input(events, env_size, seed=8)

                def feed(late: str = late, messages: list = messages, fed: dict = fed) -> None:
                    fed["seconds"] = send_input(bootstrap, late, messages)

                r["privmon2_joined"] = run_privmon(bootstrap, cfg, events, 2, workdir,
                                                   "joined2", args.partitions,
                                                   input_after_join=feed)
                r["privmon2_joined"]["produce_s"] = fed.get("seconds", float("nan"))
                print(f"bench: {mode} privmon x2, joined before input: "
                      f"{r['privmon2_joined']}", file=sys.stderr, flush=True)
        lats = []
        for cells, window_ms in ((args.latency_cells, args.latency_window_ms),
                                 (args.latency_cells_large, args.latency_window_ms_large)):
            if cells:
                lats.append((cells, run_latency(bootstrap, workdir, cells=cells,
                                                rate=args.latency_rate,
                                                # >= 15 windows: 12 measured
                                                seconds=max(args.latency_seconds,
                                                            15 * window_ms / 1000),
                                                window_ms=window_ms,
                                                warmup_s=args.latency_warmup_s,
                                                stages=args.latency_stages,
                                                workers=args.latency_workers,
                                                prefix=f"lat{cells}.")))
                print(f"bench: latency, {cells:,} cells: {lats[-1][1]}", file=sys.stderr,
                      flush=True)
    finally:
        cluster.stop(purge=True)

    import aiokafka
    import faust
    import numpy

    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip() or "unknown"
    lines.append(f"## Pipeline: limits, Faust and privmon ({time.strftime('%Y-%m-%d')}, "
                 f"commit {commit})\n")
    lines.append(f"{platform.machine()}, {os.cpu_count()} cores, Python "
                 f"{platform.python_version()}, Kafka 4.1.1 (local, 1 broker, "
                 f"{args.partitions} partitions), aiokafka {aiokafka.__version__}, "
                 f"faust-streaming {faust.__version__}, numpy {numpy.__version__}. "
                 f"`python -m bench.pipeline` (one run; each pipeline in its own process).\n")
    for mode, env_size in (("single", 1), ("envelope", args.envelope)):
        if mode not in results:
            continue
        r = results[mode]
        lines.append(f"\n{mode} ({'1 event' if env_size == 1 else f'<= {env_size} events'} "
                     "per message):\n")
        lines.append("| pipeline | events | seconds | events/s | of limit | vs Faust | "
                     "peak RSS MiB |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        runs = " and ".join(f"{t:.2f}" for t in r.get("limit_runs_s", []))
        lines.append(_row(f"limit: aiokafka + decode (faster of runs before and after privmon: "
                          f"{runs} s)" if runs else "limit: aiokafka + decode", r["limit"]))
        if "limit_confluent" in r:
            lines.append(_row("confluent-kafka (librdkafka) + decode", r["limit_confluent"],
                              r["limit"]))
        if "limit_java" in r:
            lines.append(_row("Kafka's Java consumer, consume only (perf test)",
                              r["limit_java"], r["limit"]))
        if "faust" in r:
            lines.append(_row("naive Faust windowed Table", r["faust"], r["limit"]))
        if "faust_batched" in r:
            lines.append(_row("batched Faust agent + privmon stage 1", r["faust_batched"],
                              r["limit"], r.get("faust")))
        for w in (1, 2):
            if f"privmon{w}" in r:
                lines.append(_row(f"privmon, {w} worker{'s' if w > 1 else ''}",
                                  r[f"privmon{w}"], r["limit"], r.get("faust")))
        if "privmon2_joined" in r:
            lines.append(_row("privmon, 2 workers, both joined before the input",
                              r["privmon2_joined"], r["limit"], r.get("faust")))
        scaling = [(k, r[k]) for k in ("privmon2", "privmon2_joined") if k in r]
        for k, x in scaling:
            per_worker = ", ".join(f"{v:,.0f}" for v in x["per_worker_events_s"])
            lines.append(f"\n{'2 workers' if k == 'privmon2' else '2 workers joined first'}: "
                         f"re-read {x['reread']:.1%} of the input; per worker "
                         f"{per_worker} events/s (its events over its own first to "
                         "last ingest)" + (f"; the input took {x['produce_s']:.1f} s to write"
                                      if "produce_s" in x else "") + ".")
    lines += [latency_text(lat, cells, args.latency_rate) for cells, lat in lats]
    text = "\n".join(lines)
    print(text)
    if args.write:  # newest run first: before the first pipeline table
        results_md = REPO / "bench" / "RESULTS.md"
        old = results_md.read_text()
        at = old.find("## Pipeline:")
        at = len(old) if at < 0 else at
        results_md.write_text(old[:at] + text + "\n\n" + old[at:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
