"""The live release-latency run of bench.pipeline: a worker on a local broker under a
steady load over N public cells, and per window the time from its end + grace to
its ledger entry being visible to a read_committed reader.

  # load thread (librdkafka) -> raw -> privmon worker -> ledger, aggregates
  #   -> per window: visible - (end + grace); the worker's debug step timings
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from bench.shared import REPO, hwm_mib, worker_env

LATENCY_TOML = """
policy_version = "bench-latency"
app_id = "{prefix}privmon"
[topics]
raw = "{prefix}raw"
dlq = "{prefix}dlq"
partials = "{prefix}partials"
ledger = "{prefix}ledger"
progress = "{prefix}progress"
participation = "{prefix}participation"
aggregate_prefix = "{prefix}aggregates."
[streams.monitoring]
window_ms = {window_ms}
grace_ms = {grace_ms}
dimensions = ["server", "region"]
k = 5
public_cells = "{prefix}inventory.toml"  # every cell released in every window
[streams.monitoring.bounds]
max_cells = 1
max_events_per_cell = 10
[streams.monitoring.budget]
mechanism = "geometric"
epsilon = 1.0
delta = 0
shares = {{ selection = 0.2, events = 0.2, latency = 0.2, errors = 0.4 }}
[streams.monitoring.participation]
max_windows = {max_windows}
period_ms = 86_400_000
[[streams.monitoring.horizon_caps]]
horizon_ms = 86_400_000
max_epsilon = 100000.0
max_delta = 0.5
[[streams.monitoring.metrics]]
name = "latency"
kind = "value"
field = "latency_ms"
lower = 0
upper = 5000
[[streams.monitoring.metrics]]
name = "errors"
kind = "boolean"
field = "error"
[[global_caps]]
horizon_ms = 86_400_000
max_epsilon = 100000.0
max_delta = 0.5
"""


def run_latency(bootstrap: str, workdir: Path, *, cells: int, rate: float, seconds: float,
                window_ms: int = 2000, grace_ms: int = 1000, prefix: str = "lat.",
                warmup_s: float = 120, stages: str = "both", workers: int = 1) -> dict:
    """Live load over ``cells`` cells; per window, ledger visible - (end + grace).
    ``stages``: "both" (one process per worker) or "split" (stage 1 and stage 2 in a
    process each, ``privmon worker --stages``); ``workers``: how many workers (of one
    group: the raw and partials partitions are shared out among them)."""
    import threading

    import numpy as np
    from kafka import KafkaConsumer, TopicPartition

    from privmon.streams.generator import TelemetryGenerator

    config = workdir / f"{prefix}latency.toml"
    config.write_text(LATENCY_TOML.format(prefix=prefix, window_ms=window_ms, grace_ms=grace_ms,
                                          max_windows=min(40_000, 86_400_000 // window_ms)))
    # The load's servers are the inventory (public cells, like the shipped monitoring
    # stream): every cell is released in every window, so each window costs its
    # full release work whatever the noise does.
    (workdir / f"{prefix}inventory.toml").write_text("".join(
        f'[[cells]]\nserver = "s{i:05d}"\nregion = "r{i % 4}"\n' for i in range(cells)))
    env = worker_env()
    log = workdir / f"privmon-{prefix}latency.log"
    # BENCH_PROFILE=<file>: the worker runs under pyinstrument, its text profile to <file>
    # (stopped by SIGINT, so the profile is written), to find where release time goes.
    profile = os.environ.get("BENCH_PROFILE")
    # stages "both": one worker process; "split": '--stages 1' and '--stages 2', two
    # processes of one worker (the release then has a core of its own), logging to one file.
    procs: list[subprocess.Popen] = []
    # (if this run raises, its workers must not outlive it and skew the next benchmark)
    atexit.register(lambda: [w.kill() for w in procs if w.poll() is None])
    out = open(log, "wb")
    for worker, stage in [(w, s) for w in range(workers)
                          for s in (("both",) if stages == "both" else ("1", "2"))]:
        name = "lat" if workers == 1 else f"lat{worker}"
        under = (["-m", "pyinstrument", "-r", "text", "-o",
                  f"{profile}.{cells}.{name}.{stage}"] if profile else [])
        procs.append(subprocess.Popen(
            [sys.executable, *under, "-m", "privmon.agents.cli", "worker", "--bootstrap",
             bootstrap, "--config", str(config), "--worker-id", name, "--stages", stage,
             "--idle-lag-ms", "1000", "--status-every-s", "5",
             "--log-level", "debug"],  # (debug: the step timings)
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT))
    time.sleep(4)  # topics
    gen = TelemetryGenerator(accounts=cells * 5, seed=3)
    gen.servers = [(f"s{i:05d}", f"r{i % 4}") for i in range(cells)]
    gen.home = np.arange(cells * 5) % cells  # every cell has 5 home accounts
    gen.account_p = np.full(cells * 5, 1 / (cells * 5))
    stop = threading.Event()

    def load() -> None:
        # The load shares the 2 cores with the worker and the broker: librdkafka's producer
        # (confluent-kafka) sends it for ~1/10 of kafka-python's CPU per message, which
        # took ~3/4 of a core at 20k messages/s (measured), more than the worker itself.
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10})
        tick = 0.1
        while not stop.is_set():
            t = int(time.time() * 1000)
            by_account: dict[str, list] = {}
            for e in gen.events(int(rate * tick), start_ms=t - int(tick * 1000), end_ms=t):
                by_account.setdefault(e["account_id"], []).append(e)
            for account, own in by_account.items():
                value = json.dumps({"events": own}).encode()
                while True:
                    try:
                        producer.produce(f"{prefix}raw", key=account.encode(), value=value)
                        break
                    except BufferError:  # its queue is full: let it send
                        producer.poll(0.01)
            producer.poll(0)
            time.sleep(max(0.0, tick - (time.time() * 1000 - t) / 1000))
        producer.flush(30)

    loader = threading.Thread(target=load, daemon=True)
    load_from_ms = int(time.time() * 1000)
    loader.start()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap,
                             # (BENCH_ISOLATION=read_uncommitted: to tell a slow release
                             # from a transaction that stays open, when debugging)
                             isolation_level=os.environ.get("BENCH_ISOLATION", "read_committed"),
                             enable_auto_commit=False)
    deadline = time.monotonic() + 120
    while f"{prefix}ledger" not in consumer.topics():  # the worker creates it
        if any(w.poll() is not None for w in procs) or time.monotonic() > deadline:
            raise RuntimeError(f"the latency worker created no ledger topic; see {log}")
        time.sleep(0.5)
    tps = [TopicPartition(f"{prefix}ledger", p)
           for p in (consumer.partitions_for_topic(f"{prefix}ledger") or {0})]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    visible: dict[int, float] = {}
    released: dict[int, int] = {}
    hwm = 0.0
    # Warm-up: a fresh pipeline first releases stage 2's lookback (16 windows before its
    # first mark, every listed cell of each: once per deployment, the ledger says where a
    # restarted one goes on). Measuring starts once a window of the load is released
    # within a window length of its end + grace, or after warmup_s, whichever is first.
    began = time.time()
    measure_from: float | None = None
    end = began + warmup_s + seconds
    while time.time() < end:
        for records in consumer.poll(timeout_ms=100).values():
            now = time.time()
            for r in records:
                entry = json.loads(r.value)
                start = entry["window_start_ms"]
                visible[start] = now  # the last partition's entry makes the window complete
                # (released cells: the ledger no longer holds exact cell counts)
                released[start] = released.get(start, 0) + entry["cells_released"]
                due = (start + 2 * window_ms + grace_ms) / 1000
                if measure_from is None and start >= load_from_ms and now <= due:
                    measure_from = now
                    end = now + seconds
        if measure_from is None and time.time() >= began + warmup_s:
            measure_from = time.time()  # never caught up: measured all the same
            end = measure_from + seconds
        hwm = max(hwm, sum(hwm_mib(w.pid) for w in procs))
    stop.set()
    for w in procs:
        w.send_signal(signal.SIGINT) if profile else w.terminate()
    for w in procs:
        w.wait(timeout=120)
    out.close()
    consumer.close()
    first = min(visible) if visible else 0
    # Windows that ended before the load began are stage 2's lookback (every window of
    # the 16 before the first mark gets its entry, and a public stream a record for
    # every listed cell): released at start-up, long after their end by construction,
    # so not a release latency. Of the load's windows those ending before the measuring
    # began are warm-up; the last may be incomplete.
    lookback = [s for s in visible if s + window_ms <= load_from_ms]
    assert measure_from is not None
    starts = sorted(s for s in visible if s + window_ms > load_from_ms
                    and (s + window_ms + grace_ms) / 1000 >= measure_from)[:-1]
    lat = [visible[s] - (s + window_ms + grace_ms) / 1000 for s in starts]
    if not lat:  # reported as such: a finding, not a crash of the whole run
        return {"windows": 0, "rss_mib": hwm, "seconds": seconds}
    return {"windows": len(lat), "p50_s": float(np.percentile(lat, 50)),
            "steps": step_timings(log, since=measure_from),
            "p99_s": float(np.percentile(lat, 99)), "max_s": max(lat),
            "cells_released_per_window": int(np.median([released[s] for s in starts])),
            "window_ms": window_ms, "lookback_windows": len(lookback),
            "warmup_s": round(measure_from - began, 1),
            "caught_up": measure_from - began < warmup_s,
            "latencies_s": [round(x, 3) for x in lat],
            "rss_mib": hwm, "first_window": first, "stages": stages, "workers": workers}


_STEP = re.compile(r"^(\S+ \S+) DEBUG privmon\.worker stage (1 closed|2 released) windows: "
                   r"([\d.]+) s to compute and send, ([\d.]+) s to commit"
                   r"(?: \(([\d.]+) s computing(?:, [\d.]+ s waited for)?\))?")


def step_timings(log: Path, *, since: float) -> dict[str, dict[str, float]]:
    """p50/p99 of the worker's debug step timings logged after ``since`` (epoch s):
    stage 1's window close and stage 2's release, each its compute-and-send and its
    commit, i.e. where a window's latency goes."""
    import numpy as np

    found: dict[str, list[tuple[float, ...]]] = {"stage1_close": [], "stage2_release": []}
    for line in log.read_text(errors="replace").splitlines():
        m = _STEP.match(line)
        if m is None:
            continue
        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if at >= since:
            found["stage1_close" if m.group(2) == "1 closed" else "stage2_release"].append(
                tuple(float(g) for g in m.groups()[2:] if g is not None))
    out = {}
    for step, rows in found.items():
        if rows:
            cols = np.array([r[:2] for r in rows]).T
            out[step] = {"n": len(rows), "work_p50_s": float(np.percentile(cols[0], 50)),
                         "work_p99_s": float(np.percentile(cols[0], 99)),
                         "commit_p50_s": float(np.percentile(cols[1], 50))}
            computing = [r[2] for r in rows if len(r) == 3]  # stage 2's time computing
            if computing:
                out[step].update(compute_p50_s=float(np.percentile(computing, 50)),
                                 compute_p99_s=float(np.percentile(computing, 99)))
    return out


def _steps_text(steps: dict[str, dict[str, float]]) -> str:
    names = {"stage1_close": "stage 1's close", "stage2_release": "stage 2's release"}
    def split(v: dict[str, float]) -> str:
        if "compute_p50_s" not in v:
            return ""
        return (f" (of which computing {v['compute_p50_s']:.2f} s p50 / "
                f"{v['compute_p99_s']:.2f} s p99)")
    return "; ".join(f"{names[k]} {v['work_p50_s']:.2f} s p50 / {v['work_p99_s']:.2f} s p99 "
                     f"to compute and send{split(v)}, {v['commit_p50_s']:.2f} s to commit "
                     f"({v['n']} steps)" for k, v in steps.items())


# ------------------------------------------------------------------- main


def _processes(lat: dict) -> int:
    return lat.get("workers", 1) * (2 if lat.get("stages") == "split" else 1)


def _layout(lat: dict) -> str:
    """How the run's workers were laid out, for its sentence."""
    workers = lat.get("workers", 1)
    split = lat.get("stages") == "split"
    if workers == 1:
        return ", stage 1 and stage 2 in a process each" if split else ""
    return (f", {workers} workers" + (", each with stage 1 and stage 2 in a process of its own"
                                      if split else ""))


def latency_text(lat: dict, cells: int, rate: float) -> str:
    """The RESULTS.md sentence of one latency run."""
    if not lat["windows"]:
        return (f"\nRelease latency, live load: {rate:,.0f} events/s over "
                f"{cells:,} cells: no window's ledger entry became visible to a "
                f"read_committed reader within {lat['seconds']:.0f} s.\n")
    return (f"\nRelease latency, live load: {rate:,.0f} events/s over "
            f"{cells:,} cells "
            f"({lat['cells_released_per_window']:,} released per window), "
            f"{lat['window_ms'] / 1000:g} s windows, "
            f"1 s grace, {lat['windows']} windows after a warm-up of "
            f"{lat['warmup_s']:.0f} s"
            f"{'' if lat['caught_up'] else ' (it never caught up)'}"
            f"{_layout(lat)}"
            f": p50 "
            f"{lat['p50_s']:.2f} s, p99 {lat['p99_s']:.2f} s, max {lat['max_s']:.2f} s "
            f"after window end + grace; worker peak RSS {lat['rss_mib']:.0f} MiB"
            f"{' (the peaks added)' if _processes(lat) > 1 else ''}."
            + (f" Steps: {_steps_text(lat['steps'])}." if lat.get("steps") else "")
            + "\n")
