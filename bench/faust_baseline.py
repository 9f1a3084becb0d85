"""Two Faust baselines, picked by BENCH_MODE:

- ``naive`` (default): what a Faust user writes first, an agent updating a windowed
  Table per event (tumbling windows, per (server, region): events, errors, latency
  sum), no bounding, no thresholds, no noise;
- ``batched``: the fair one, a Faust agent taking batches
  (``stream.noack().take_events(n, within=...)``) and feeding them to privmon's own
  columnar stage 1 (``Stage1Partition.ingest``, per partition, on BENCH_CONFIG's
  streams), acking each event after its batch: what Faust's machinery costs beside
  the same stage-1 work privmon's worker does (not its close, stage 2 or release).

Run by bench/pipeline.py as ``python bench/faust_baseline.py worker``; configured
by environment: BENCH_BOOTSTRAP, BENCH_TOPIC, BENCH_DATADIR, BENCH_WINDOW_S,
BENCH_EXPECT (events to count before reporting), BENCH_REPORT (file written with
``{"events": n, "first_s": t0, "last_s": t1}`` when done), and for ``batched``
BENCH_CONFIG and PRIVMON_PSEUDONYM_KEYS.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import faust

app = faust.App(
    f"bench-faust-{os.environ.get('BENCH_MODE', 'naive')}-{os.environ['BENCH_TOPIC']}",
    broker=f"kafka://{os.environ['BENCH_BOOTSTRAP']}",
    datadir=os.environ["BENCH_DATADIR"],
    web_enabled=False,
    web_port=int(os.environ.get("BENCH_WEB_PORT", "6066")),  # (it binds one all the same)
    store="memory://",
    topic_partitions=int(os.environ.get("BENCH_PARTITIONS", "4")),
    consumer_auto_offset_reset="earliest",
)
source = app.topic(os.environ["BENCH_TOPIC"], value_serializer="raw")
window_s = float(os.environ.get("BENCH_WINDOW_S", "60"))
cells = app.Table("cells", default=lambda: [0, 0, 0.0]).tumbling(
    timedelta(seconds=window_s), expires=timedelta(seconds=10 * window_s))
expect = int(os.environ["BENCH_EXPECT"])
seen = {"n": 0, "first": 0.0}


def _report() -> None:
    with open(os.environ["BENCH_REPORT"], "w") as f:
        json.dump({"events": seen["n"], "first_s": seen["first"], "last_s": time.time()}, f)


async def naive(stream: faust.Stream) -> None:
    async for value in stream:
        if not seen["n"]:
            seen["first"] = time.time()
        doc = json.loads(value)
        for event in doc["events"] if "events" in doc else [doc]:
            key = f"{event['server']}|{event['region']}"
            row = list(cells[key].value())
            row[0] += 1
            row[1] += int(event["error"])
            row[2] += event["latency_ms"]
            cells[key] = row
            seen["n"] += 1
        if seen["n"] >= expect:
            _report()


async def batched(stream: faust.Stream) -> None:
    from privmon.agents.stage1 import Stage1Partition
    from privmon.streams.config import load_config
    from privmon.streams.pseudonym import Pseudonymizer

    policies = load_config(os.environ["BENCH_CONFIG"]).policies
    pseudonymizer = Pseudonymizer.from_env()
    parts: dict[int, Stage1Partition] = {}
    manual = stream.noack()
    async for events in manual.take_events(5000, within=0.2):
        if not seen["n"]:
            seen["first"] = time.time()
        now = int(time.time() * 1000)
        by_partition: dict[int, list] = {}
        for event in events:
            m = event.message
            by_partition.setdefault(m.partition, []).append((m.offset, m.key, m.value))
        for p, records in by_partition.items():
            part = parts.get(p)
            if part is None:
                part = parts[p] = Stage1Partition(partition=p, policies=policies,
                                                  pseudonymizer=pseudonymizer,
                                                  idle_lag_ms=5000)
            before = part.counts["accepted"]
            part.ingest(records, now_ms=now)
            seen["n"] += part.counts["accepted"] - before
        for event in events:
            await manual.ack(event)
        if seen["n"] >= expect:
            _report()


MODES = {"naive": naive, "batched": batched}
app.agent(source, name="aggregate")(MODES[os.environ.get("BENCH_MODE", "naive")])


if __name__ == "__main__":
    app.main()
