"""The baseline a Faust user would write first: an agent updating a windowed Table
per event (tumbling windows, per (server, region): events, errors, latency sum),
no bounding, no thresholds, no noise.

Run by bench/pipeline.py as ``python bench/faust_baseline.py worker``; configured
by environment: BENCH_BOOTSTRAP, BENCH_TOPIC, BENCH_DATADIR, BENCH_WINDOW_S,
BENCH_EXPECT (events to count before reporting), BENCH_REPORT (file written with
``{"events": n, "first_s": t0, "last_s": t1}`` when done).
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import faust

app = faust.App(
    "bench-faust-" + os.environ["BENCH_TOPIC"],
    broker=f"kafka://{os.environ['BENCH_BOOTSTRAP']}",
    datadir=os.environ["BENCH_DATADIR"],
    web_enabled=False,
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


@app.agent(source)
async def aggregate(stream: faust.Stream) -> None:
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
            with open(os.environ["BENCH_REPORT"], "w") as f:
                json.dump({"events": seen["n"], "first_s": seen["first"],
                           "last_s": time.time()}, f)


if __name__ == "__main__":
    app.main()
