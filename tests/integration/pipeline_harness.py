"""Helpers for pipeline tests: isolated configs, worker processes, known input."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from privmon.privacy.records import SCHEMA, WINDOW_SCHEMA, WindowComplete
from privmon.streams.kafka_errors import refused
from privmon.streams.partials import cell_rows

REPO = Path(__file__).resolve().parents[2]
FAST = Path(__file__).with_name("fast_streams.toml")
WINDOW_MS = 4_000  # monitoring window of fast_streams.toml


@dataclass
class Setup:
    config: Path
    prefix: str
    bootstrap: str

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def raw(self) -> str:
        return self.topic("telemetry.raw")

    def all_topics(self) -> list[str]:
        names = ["telemetry.raw", "telemetry.dlq", "privmon.partials", "privmon.ledger",
                 "privmon.progress", "privmon.participation", "aggregates.monitoring",
                 "aggregates.capacity"]
        return [self.topic(n) for n in names]


def make_setup(tmp_path: Path, bootstrap: str, name: str) -> Setup:
    """A copy of fast_streams.toml whose topics and groups are unique to this test."""
    prefix = f"{name}-{secrets.token_hex(3)}."
    text = FAST.read_text().replace('app_id = "privmon"', f'app_id = "{prefix}privmon"')
    for value in ("telemetry.raw", "telemetry.dlq", "privmon.partials", "privmon.ledger",
                  "privmon.progress", "privmon.alerts", "privmon.participation"):
        text = text.replace(f'"{value}"', f'"{prefix}{value}"')
    text = text.replace('aggregate_prefix = "aggregates."',
                        f'aggregate_prefix = "{prefix}aggregates."')
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return Setup(path, prefix, bootstrap)


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PRIVMON_PSEUDONYM_KEYS"] = "2026-01-01=" + "5a" * 32
    env["PRIVMON_NOISE_KEYS"] = "2026-01-01=" + "6b" * 32
    env["PYTHONPATH"] = str(REPO)
    return env


def start_worker(
    setup: Setup, worker_id: str, log: Path, extra: tuple[str, ...] = (), *,
    module: str = "privmon.agents.cli", env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """``module``: the CLI, or a wrapper of it (tests/integration/faulty_worker.py)."""
    out = open(log, "ab")
    if "--crash-file" not in extra:  # the crash guard's note beside the log, not in ~/.cache
        extra = (*extra, "--crash-file", str(log.parent / f"{worker_id}.crashguard.json"))
    if "--trusted-status" not in extra:
        extra = (*extra, "--trusted-status", str(log.parent / f"{worker_id}.status.json"))
    return subprocess.Popen(
        [sys.executable, "-m", module, "worker", "--bootstrap", setup.bootstrap,
         "--config", str(setup.config), "--worker-id", worker_id, "--idle-lag-ms", "2000",
         "--status-every-s", "2", *extra],
        cwd=REPO, env={**worker_env(), **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
    )


def trusted_status(log: Path, worker_id: str = "w1") -> dict:
    """Every counter of the worker's last status (its trusted status file)."""
    return json.loads((log.parent / f"{worker_id}.status.json").read_text())


def public_status(log: Path) -> dict:
    """The worker's last public status line."""
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("status ")]
    return json.loads(lines[-1].removeprefix("status "))


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ input
CELLS = [("fra-01", "eu"), ("fra-02", "eu"), ("nyc-01", "us"), ("sin-01", "ap")]
SMALL_CELL = ("tiny-01", "xx")  # 3 accounts < k = 5: must never be released
ACCOUNTS_PER_CELL = 80
EVENTS_PER_WINDOW = 3


@dataclass
class Truth:
    """Exact aggregates of the generated input, per (window start, cell)."""

    accounts: dict[tuple[int, tuple[str, str]], int]
    events: dict[tuple[int, tuple[str, str]], int]
    errors: dict[tuple[int, tuple[str, str]], int]
    latency_sum: dict[tuple[int, tuple[str, str]], float]
    messages: list[tuple[bytes, bytes]]

    @property
    def windows(self) -> list[int]:
        return sorted({w for w, _ in self.events})


def known_input(first_window_ms: int, windows: int, *, extra: dict | None = None) -> Truth:
    """Each account sends EVENTS_PER_WINDOW events a window to its one home cell,
    so no bound binds and the true aggregates are plain sums."""
    acc, ev, err, lat = (defaultdict(int), defaultdict(int), defaultdict(int),
                         defaultdict(float))
    messages = []
    homes = [(c, i) for c in CELLS for i in range(ACCOUNTS_PER_CELL)]
    homes += [(SMALL_CELL, i) for i in range(3)]
    for w in range(windows):
        start = first_window_ms + w * WINDOW_MS
        for cell, i in homes:
            account = f"acct-{cell[0]}-{i:03d}"
            events = []
            for j in range(EVENTS_PER_WINDOW):
                latency = float(10 + (i * 7 + j * 13) % 200)
                error = (i + j + w) % 10 == 0
                event = {
                    "account_id": account, "server": cell[0], "region": cell[1],
                    "client_version": "5.2.1", "platform": "chrome",
                    "latency_ms": latency, "bytes": 1000 * (1 + i % 5), "error": error,
                    "session_s": 60.0, "event_time_ms": start + 500 + j * 1000 + i % 400,
                    **(extra or {}),
                }
                events.append(event)
                key = (start, cell)
                ev[key] += 1
                err[key] += error
                lat[key] += latency
            acc[(start, cell)] += 1
            messages.append((account.encode(), json.dumps({"events": events}).encode()))
    return Truth(dict(acc), dict(ev), dict(err), dict(lat), messages)


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]], *,
            options: dict | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             **(options or {}))
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def produce_releases(bootstrap: str, topic: str, records: list, *, partitions: int) -> None:
    """Release records as the worker writes them: each window's records (by cell key),
    then its completion record on every partition (one partials partition)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    windows: dict[tuple[str, int], list] = defaultdict(list)
    for r in records:
        windows[(r.stream, r.window_start_ms)].append(r)
    for (stream, start), rs in sorted(windows.items(), key=lambda kv: kv[0][1]):
        for r in rs:
            producer.send(topic, key="|".join(r.cell.values()).encode(), value=r.to_json())
        done = WindowComplete(stream=stream, window_start_ms=start,
                              window_end_ms=rs[0].window_end_ms, partials_partition=0,
                              partials_partitions=1).to_json()
        for a in range(partitions):
            producer.send(topic, value=done, partition=a)
    producer.flush()
    producer.close()


# A read abandoned after this long is a wedged client, not a slow broker (a normal read
# ends by its own 30 s deadline).
READ_HANG_S = 60


def read_topic(bootstrap: str, topic: str, *, committed_only: bool = True,
               options: dict | None = None) -> list:
    """Every record of a topic, from the beginning (read_committed by default).

    kafka-python 3.0.12's consumer can wedge after a cluster restart: its IO thread
    dies and ``poll`` then waits forever, whatever its timeout (seen once in the
    cluster-restart fault test, which then ran into pytest's 600 s limit). So each
    read runs in a thread of its own; one that has not returned after READ_HANG_S
    is abandoned (a daemon thread) and the read is tried once more with a new
    consumer; a second hang raises TimeoutError, naming the topic."""
    def read(box: dict) -> None:
        try:
            box["records"] = _read_topic(bootstrap, topic, committed_only=committed_only,
                                         options=options)
        except BaseException as exc:  # (re-raised in the caller's thread)
            box["error"] = exc

    for _ in range(2):
        box: dict = {}
        thread = threading.Thread(target=read, args=(box,), daemon=True,
                                  name=f"read_topic {topic}")
        thread.start()
        thread.join(timeout=READ_HANG_S)
        if "error" in box:
            raise box["error"]
        if "records" in box:
            return box["records"]
    raise TimeoutError(f"reading {topic}: the Kafka client hung twice for {READ_HANG_S} s")


def _read_topic(bootstrap: str, topic: str, *, committed_only: bool,
                options: dict | None) -> list:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
        **(options or {}),
    )
    parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in parts]
    if not tps:
        consumer.close()
        return []
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    out = []
    deadline = time.monotonic() + 30
    while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            out.extend(records)
    consumer.close()
    return out


def release_records(records: list) -> list:
    """The release records among an aggregate topic's records (not the completion
    records of privacy/records.py)."""
    return [r for r in records if json.loads(r.value).get("schema") == SCHEMA]


def check_completions(records: list, windows: set[int], partials_partitions: int = 4) -> None:
    """Every window in ``windows`` has, on every partition that carries records, one
    completion record per partials partition, after every release record of it there."""
    by_partition: dict[int, list] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_partition[r.partition].append(json.loads(r.value))
    for partition, values in by_partition.items():
        for w in windows:
            done = [i for i, d in enumerate(values)
                    if d["schema"] == WINDOW_SCHEMA and d["window_start_ms"] == w]
            assert len(done) == partials_partitions, (partition, w, len(done))
            assert {values[i]["partials_partition"] for i in done} == set(
                range(partials_partitions))
            last = [i for i, d in enumerate(values)
                    if d["schema"] == SCHEMA and d["window_start_ms"] == w]
            assert not last or max(last) < max(done), f"a record of {w} after its completion"


def wait_for(check: Callable[[], bool], *, timeout_s: float, what: str,
             procs: list[subprocess.Popen] = (), log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        for proc in procs:
            if proc.poll() is not None:
                tail = log.read_text()[-4000:] if log else ""
                raise AssertionError(f"worker exited ({proc.returncode}) while waiting for "
                                     f"{what}:\n{tail}")
        time.sleep(0.5)
    tail = log.read_text()[-4000:] if log else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{tail}")


def released_windows(setup: Setup, stream: str = "monitoring", partitions: int = 4) -> set[int]:
    """Windows every stage-2 (partials) partition has released, per the ledger. (Each
    partition writes an entry for every window, with cells there or not.)"""
    ledger = read_topic(setup.bootstrap, setup.topic("privmon.ledger"))
    parts: dict[int, set[int]] = defaultdict(set)
    for r in ledger:
        d = json.loads(r.value)
        if d["stream"] == stream:
            parts[d["window_start_ms"]].add(d["partials_partition"])
    return {w for w, ps in parts.items() if len(ps) >= partitions}


def released_cells(setup: Setup, stream: str = "monitoring",
                   options: dict | None = None) -> set[tuple[int, tuple]]:
    """(window, cell) pairs on the aggregate topic (read_committed)."""
    out = set()
    for r in release_records(read_topic(setup.bootstrap, setup.topic(f"aggregates.{stream}"),
                                        options=options)):
        d = json.loads(r.value)
        out.add((d["window_start_ms"], tuple(d["cell"].values())))
    return out


def all_released(setup: Setup, truth: Truth, options: dict | None = None) -> Callable[[], bool]:
    expected = {(w, c) for w in truth.windows for c in CELLS}
    return lambda: expected <= released_cells(setup, options=options)


def partial_sums(setup: Setup, stream: str = "monitoring") -> dict:
    """Exact totals per (window, cell) as committed on the partials topic."""
    sums: dict = defaultdict(lambda: [0, 0, 0, 0])
    seen: set = set()
    for r in read_topic(setup.bootstrap, setup.topic("privmon.partials")):
        for row in cell_rows(r.value):
            if row.stream != stream:
                continue
            ident = (row.window_start_ms, row.cell, row.partition)
            assert ident not in seen, f"partial committed twice: {ident}"
            seen.add(ident)
            s = sums[(row.window_start_ms, row.cell)]
            s[0] += row.accounts
            s[1] += row.events
            s[2] += row.columns["errors"]
            s[3] += row.columns["latency"]
    return dict(sums)


def first_window_after(now_ms: int, lead_ms: int = 1000) -> int:
    start = now_ms + lead_ms
    return start - start % WINDOW_MS + WINDOW_MS


def can_read(cluster, user: str, topic: str) -> bool:
    """Whether ``user`` may read ``topic`` (``cluster``: bootstrap_servers, client_options)."""
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap_servers,
                             enable_auto_commit=False, **cluster.client_options(user))
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            consumer.poll(timeout_ms=500)
            if consumer.position(tp) is not None:
                return True
    except KafkaError as exc:
        if refused(exc):
            return False
        raise
    finally:
        consumer.close()
    return True
