"""Poison-pill soak: a million messages, valid telemetry amid mutated and random ones,
through a real `privmon worker` on a real broker (started and stopped here).

    python -m tests.soak.poison_soak [--messages 1000000] [--rate 4000] [--kills 0]
                                     [--extra DIR ...] [--seed 1]

Input, in one interleaved stream: valid telemetry (single events and envelopes,
each account in one home cell), mutations of valid messages (a byte flipped,
inserted or deleted at any position, truncation, a field replaced by a hostile
fragment: NaN, lone surrogates, deep nesting, huge numbers, duplicate or
escaped keys; a wrong key), random bytes and random JSON, the hostile corpus
of tests/corpus, and any files of ``--extra`` directories (e.g. the fuzzers'
corpora and findings). ``--kills N`` SIGKILLs the worker N times at random
points and restarts it.

Afterwards it checks, and prints as ``soak-summary {...}``:
- the worker never exited on its own (with --kills: only when killed);
- every raw message is accounted for: per (partition, offset), the dead
  letters in the DLQ have exactly the reasons stage 1's own per-message logic
  gives offline (``MessageReader.message``), and the hostile corpus entries
  exactly the hand-written reasons of tests/corpus/hostile.py; no message was
  dead-lettered twice; accepted + dead-lettered = what the messages hold;
- no event is late, and the exact partials of the valid telemetry's cells
  equal what was sent (nothing lost, nothing counted twice);
- no (window, cell) released twice, releases went on throughout (largest gap);
- the worker's RSS (sampled every 2 s) stayed bounded.
Exit 0 if every check holds.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from privmon.agents.stage1 import Stage1Partition
from privmon.streams.config import load_config
from privmon.streams.localkafka.cluster import LocalKafka
from privmon.streams.partials import cell_rows
from privmon.streams.pseudonym import Pseudonymizer
from tests.corpus.hostile import corpus as hostile_corpus
from tests.integration.pipeline_harness import (
    WINDOW_MS,
    make_setup,
    read_topic,
    start_worker,
    stop_worker,
    trusted_status,
)

SERVERS = [f"{c}-{i:02d}" for c in ("fra", "nyc", "sin", "syd") for i in range(1, 4)]
REGIONS = {"fra": "eu", "nyc": "us", "sin": "ap", "syd": "au"}
ACCOUNTS = 20_000
FRAGMENTS = ['NaN', 'Infinity', '-Infinity', '1e999', '"\\ud800"', '"\\udfff x"',
             '1' + '0' * 400, '-1', '1.5', 'null', 'true', '[]', '{}', '{"a": 1, "a": 2}',
             '[' * 3000 + ']' * 3000, '[' * 300 + ']' * 300, '"' + 'x' * 70 + '"', '""',
             '"\\u0000"', '{"events": []}', '12345678901234567890123']


def _home(i: int) -> tuple[str, str]:
    server = SERVERS[i % len(SERVERS)]
    return server, REGIONS[server[:3]]


def _event(account: str, cell: tuple[str, str], t: int, rng: random.Random) -> dict:
    return {"account_id": account, "server": cell[0], "region": cell[1],
            "client_version": rng.choice(["5.2.1", "5.3.0"]), "platform": "chrome",
            "latency_ms": round(rng.uniform(1, 400), 1), "bytes": rng.randrange(1, 10**6),
            "error": rng.random() < 0.02, "session_s": round(rng.uniform(1, 600), 1),
            "event_time_ms": t}


def _valid(rng: random.Random, now: int, *, prefix: str = "acct-s", region: str | None = None
           ) -> tuple[bytes, bytes, int]:
    i = rng.randrange(ACCOUNTS)
    account = f"{prefix}-{i:05d}"
    cell = _home(i) if region is None else (_home(i)[0], region)
    if rng.random() < 0.6:
        value = json.dumps(_event(account, cell, now, rng)).encode()
        n = 1
    else:
        n = rng.randint(2, 8)
        value = json.dumps({"events": [_event(account, cell, now, rng) for _ in range(n)]}
                           ).encode()
    return account.encode(), value, n


def _mutate(rng: random.Random, now: int) -> tuple[bytes | None, bytes]:
    key, value, _ = _valid(rng, now, prefix="acct-m", region="mut")
    b = bytearray(value)
    kind = rng.randrange(7)
    pos = rng.randrange(len(b))
    if kind == 0:
        b[pos] ^= 1 << rng.randrange(8)
    elif kind == 1:
        b.insert(pos, rng.randrange(256))
    elif kind == 2:
        del b[pos]
    elif kind == 3:
        del b[pos:]
    elif kind == 4:  # a field's value replaced by a hostile fragment
        text = b.decode()
        field = rng.choice(["server", "latency_ms", "bytes", "error", "event_time_ms",
                            "account_id"])
        at = text.find(f'"{field}": ')
        end = min(x for x in (text.find(",", at), text.find("}", at)) if x > 0)
        b = bytearray((text[:at + len(field) + 4] + rng.choice(FRAGMENTS) + text[end:]
                       ).encode())
    elif kind == 5:  # a key twice, or spelled with an escape
        text = b.decode()
        extra = rng.choice(['"server": "x-01"', '"\\u0073erver": "x-01"', '"pad": 1, "pad": 2'])
        b = bytearray((text[:-1] + ", " + extra + text[-1:]).encode())
    else:
        return rng.choice([None, b"", b"acct-someone-else"]), bytes(b)
    return key, bytes(b)


def _random(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return rng.randbytes(rng.randrange(0, 300))
    parts = [rng.choice(FRAGMENTS + ['{', '}', '[', ']', ',', ':', '"events"', '"a"'])
             for _ in range(rng.randrange(1, 12))]
    return "".join(parts).encode()


def build(n: int, seed: int, now: int, extra: list[Path]) -> tuple[list, list]:
    """(messages, kinds): (key, value) pairs and what each is."""
    rng = random.Random(seed)
    hostile = hostile_corpus(now)
    extras = [p.read_bytes() for d in extra for p in sorted(d.iterdir()) if p.is_file()]
    messages: list[tuple[bytes | None, bytes]] = []
    kinds: list[str] = []
    h = x = 0
    while len(messages) < n:
        r = rng.random()
        if len(messages) % 997 == 0 and h < len(hostile):
            e = hostile[h]
            h += 1
            if len(e.value) > 900_000:  # over the broker's 1 MB message limit
                continue
            messages.append((e.key, e.value))
            kinds.append(f"hostile:{h - 1}")
        elif extras and len(messages) % 101 == 0:
            messages.append((b"acct-x", extras[x % len(extras)]))
            kinds.append("extra")
            x += 1
        elif r < 0.5:
            key, value, _ = _valid(rng, now)
            messages.append((key, value))
            kinds.append("valid")
        elif r < 0.8:
            messages.append(_mutate(rng, now))
            kinds.append("mutated")
        else:
            messages.append((rng.choice([b"acct-r", None]), _random(rng)))
            kinds.append("random")
    return messages, kinds


def _retime(value: bytes, old: int, new: int) -> bytes:
    return value.replace(str(old).encode(), str(new).encode())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.soak.poison_soak", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--rate", type=int, default=4000, help="messages per second produced")
    ap.add_argument("--kills", type=int, default=0, help="SIGKILL the worker this many times")
    ap.add_argument("--extra", type=Path, action="append", default=[],
                    help="a directory of extra messages (e.g. a fuzzer corpus)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="privmon-soak-"))
    cluster = LocalKafka(name="soak", state_root=tmp / "kafka", nodes=1, port=0,
                         num_partitions=4)
    print(f"[soak] starting a local Kafka broker in {tmp} ...", flush=True)
    bootstrap = cluster.start(timeout_s=180)
    try:
        return _soak(args, tmp, bootstrap)
    finally:
        cluster.stop(purge=True)
        print("[soak] broker stopped", flush=True)


PLACEHOLDER = 1_700_000_000_000  # event time in generated messages, set at send time


SOAK_CONFIG: list[Path] = []


def _soak(args: argparse.Namespace, tmp: Path, bootstrap: str) -> int:
    setup = make_setup(tmp, bootstrap, "soak")
    SOAK_CONFIG.append(setup.config)
    # Grace long enough that a worker behind by < 30 s counts nothing late.
    setup.config.write_text(setup.config.read_text().replace("grace_ms = 1_000",
                                                             "grace_ms = 30_000"))
    messages, kinds = build(args.messages, args.seed, PLACEHOLDER, args.extra)
    print(f"[soak] {len(messages)} messages: {dict(Counter(k.split(':')[0] for k in kinds))}",
          flush=True)
    log = tmp / "worker.log"
    worker = start_worker(setup, "w1", log)
    exits: list[int] = []
    rss: list[float] = []
    sent: list[tuple[int, int, int] | None] = [None] * len(messages)  # (partition, offset, t)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss.append(int(line.split()[1]) / 1024)
            except OSError:
                pass
            stop.wait(2.0)

    threading.Thread(target=sample, daemon=True).start()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10,
                             batch_size=256 * 1024, max_request_size=4 << 20)
    rng = random.Random(args.seed + 1)
    kill_at = sorted(rng.sample(range(len(messages) // 10, len(messages)), args.kills))
    started = time.monotonic()
    ledger_times: list[float] = []
    for i, (key, value) in enumerate(messages):
        if i % 1000 == 0:
            behind = started + i / args.rate - time.monotonic()
            if behind > 0:
                time.sleep(behind)
            if i % 100_000 == 0:
                print(f"[soak] {i} sent, {time.monotonic() - started:.0f} s", flush=True)
        if worker.poll() is not None:
            exits.append(worker.returncode)
            print(f"[soak] worker exited with {worker.returncode}", flush=True)
            worker = start_worker(setup, "w1", log)
        if kill_at and i == kill_at[0]:
            kill_at.pop(0)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            print(f"[soak] SIGKILL at message {i}", flush=True)
            worker = start_worker(setup, "w1", log)
        t = int(time.time() * 1000)
        future = producer.send(setup.raw, key=key, value=_retime(value, PLACEHOLDER, t))
        future.add_callback(lambda md, i=i, t=t: sent.__setitem__(i, (md.partition, md.offset,
                                                                      t)))
    producer.flush()
    producer.close()
    produced_s = time.monotonic() - started
    last_t = max(s[2] for s in sent if s)
    # Wait until the last window is released (window end + grace + idle lag).
    print(f"[soak] all sent in {produced_s:.0f} s; waiting for the last releases", flush=True)
    last_window = last_t - last_t % WINDOW_MS
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ledger = [json.loads(r.value) for r in read_topic(bootstrap,
                                                          setup.topic("privmon.ledger"))]
        if any(e["stream"] == "monitoring" and e["window_start_ms"] >= last_window
               for e in ledger):
            break
        if worker.poll() is not None:
            exits.append(worker.returncode)
            worker = start_worker(setup, "w1", log)
        time.sleep(2)
    time.sleep(3)
    alive = worker.poll() is None
    stop.set()
    stop_worker(worker)
    return _reconcile(args, setup, messages, kinds, sent, exits, alive, rss, produced_s, log,
                      ledger_times)


def _expected(messages: list, kinds: list, sent: list) -> tuple[dict, Counter, int]:
    """Per (partition, offset) the dead-letter reasons stage 1 gives offline."""
    part = Stage1Partition(partition=0, policies=load_config().policies,
                           pseudonymizer=Pseudonymizer({0: b"k" * 32}), idle_lag_ms=0)
    hostile = hostile_corpus(PLACEHOLDER)
    out: dict[tuple[int, int], tuple[str, ...]] = {}
    valid_cells: Counter = Counter()
    accepted = 0
    for (key, value), kind, where in zip(messages, kinds, sent, strict=True):
        p, o, t = where
        raw = _retime(value, PLACEHOLDER, t)
        evs, _, letters = part.reader.message(key, raw, t)
        reasons = tuple(d.reason for d in letters)
        if kind.startswith("hostile:"):
            assert reasons == hostile[int(kind.split(":")[1])].reasons, kind
        out[(p, o)] = reasons
        accepted += len(evs)
        if kind == "valid":
            assert not reasons
            for e in evs:
                valid_cells[(t - t % WINDOW_MS, (e.server, e.region), e.account_id)] += 1
    # What stage 1 keeps: at most max_events_per_cell events per account and cell.
    cap = next(p for p in load_config(SOAK_CONFIG[0]).policies if p.name == "monitoring"
               ).bounds.max_events_per_cell
    bounded: Counter = Counter()
    for (w, cell, _), n in valid_cells.items():
        bounded[(w, cell)] += min(n, cap)
    return out, bounded, accepted


def read_all(bootstrap: str, topic: str) -> list:
    """Every committed record of a topic (no time limit; stops if nothing moves for 60 s)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level="read_committed", max_poll_records=10_000)
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    out: list = []
    if tps:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        last_progress = time.monotonic()
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            batch = consumer.poll(timeout_ms=1000)
            if batch:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > 60:
                raise RuntimeError(f"reading {topic}: no progress for 60 s")
            for records in batch.values():
                out.extend(records)
    consumer.close()
    return out


def _reconcile(args, setup, messages, kinds, sent, exits, alive, rss, produced_s, log,
               ledger_times) -> int:
    problems: list[str] = []
    if any(s is None for s in sent):
        problems.append(f"{sum(s is None for s in sent)} messages not acknowledged")
        sent = [s or (-1, -1, PLACEHOLDER) for s in sent]
    expected, valid_cells, accepted = _expected(messages, kinds, sent)
    letters = [json.loads(r.value) for r in read_all(setup.bootstrap,
                                                     setup.topic("telemetry.dlq"))]
    got: dict[tuple[int, int], list] = defaultdict(list)
    for d in letters:
        src = d["source"]
        got[(src["partition"], src["offset"])].append((src["index"], d["reason"]))
        if hashlib.sha256(base64.b64decode(d["payload_b64"])).hexdigest() != d[
                "payload_sha256"] and d["payload_bytes"] <= 65_536:
            problems.append(f"payload hash mismatch at {src}")
    twice = [k for k, v in got.items() if len(v) != len(set(v))]
    if twice:
        problems.append(f"{len(twice)} messages dead-lettered twice, e.g. {twice[:3]}")
    mismatched = [k for k, reasons in expected.items()
                  if Counter(r for _, r in got.get(k, [])) != Counter(reasons)]
    if mismatched:
        examples = [(k, expected[k], got.get(k)) for k in mismatched[:3]]
        problems.append(f"{len(mismatched)} messages whose dead letters differ from stage 1's "
                        f"own reasons, e.g. {examples}")
    unknown = set(got) - set(expected)
    if unknown:
        problems.append(f"{len(unknown)} dead letters for offsets never sent")
    sums: dict = defaultdict(lambda: [0, 0])
    for r in read_all(setup.bootstrap, setup.topic("privmon.partials")):
        for row in cell_rows(r.value):
            if row.stream == "monitoring":
                sums[(row.window_start_ms, row.cell)][1] += row.events
    lost = {k: n - sums.get(k, [0, 0])[1] for k, n in valid_cells.items()
            if sums.get(k, [0, 0])[1] != n}
    if lost:
        problems.append(f"valid cells whose exact partials differ from the input: "
                        f"{len(lost)}, e.g. {sorted(lost.items())[:3]}")
    records = [r for r in read_all(setup.bootstrap, setup.topic("aggregates.monitoring"))
               if json.loads(r.value).get("schema") == "privmon.release/1"]
    keys = Counter((json.loads(r.value)["window_start_ms"],
                    tuple(json.loads(r.value)["cell"].values())) for r in records)
    dup = sum(n - 1 for n in keys.values())
    if dup:
        problems.append(f"{dup} (window, cell) released more than once")
    ledger = read_all(setup.bootstrap, setup.topic("privmon.ledger"))
    times = sorted(r.timestamp / 1000 for r in ledger)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    statuses = [trusted_status(log)]  # input-side counts: the trusted status file only
    late = sum(s["late"] for s in statuses[-1:])
    if late and not args.kills:
        problems.append(f"{late} events counted late")
    if not args.kills:
        if exits:
            problems.append(f"the worker exited on its own: {exits}")
        last = statuses[-1]
        if last["messages"] != len(messages):
            problems.append(f"worker counted {last['messages']} messages, {len(messages)} sent")
        if last["dead_lettered"] != sum(len(v) for v in expected.values()):
            problems.append("dead-letter count differs")
        if last["accepted"] != accepted:
            problems.append(f"worker accepted {last['accepted']}, offline {accepted}")
    elif exits:
        problems.append(f"the worker exited on its own: {exits}")
    if not alive and not args.kills:
        problems.append("the worker was not running at the end")
    reasons = Counter(r for v in expected.values() for r in v)
    summary = {
        "messages": len(messages), "kinds": dict(Counter(k.split(":")[0] for k in kinds)),
        "kills": args.kills, "produced_s": round(produced_s), "worker_exits": exits,
        "accepted_events": accepted, "dead_letters": len(letters),
        "dead_letter_reasons": dict(reasons.most_common()), "late": late,
        "valid_cells_checked": len(valid_cells), "valid_events": sum(valid_cells.values()),
        "releases": len(ledger), "monitoring_records": len(records),
        "largest_release_gap_s": round(max(gaps), 1) if gaps else None,
        "rss_mib": {"first": round(rss[0]) if rss else None,
                    "max": round(max(rss)) if rss else None,
                    "last": round(rss[-1]) if rss else None},
        "problems": problems,
    }
    print("soak-summary " + json.dumps(summary), flush=True)
    return 0 if not problems else 1


if __name__ == "__main__":
    os.environ.setdefault("PRIVMON_PSEUDONYM_KEYS", "2026-01-01=" + "5a" * 32)
    sys.exit(main())
