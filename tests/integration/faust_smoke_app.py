"""A minimal Faust app for the smoke test: relays SMOKE_IN to SMOKE_OUT, upper-cased.

Run as `python tests/integration/faust_smoke_app.py worker`; configured by env.
"""

from __future__ import annotations

import os

import faust

app = faust.App(
    "privmon-smoke-" + os.environ["SMOKE_IN"],
    broker=f"kafka://{os.environ['SMOKE_BOOTSTRAP']}",
    datadir=os.environ["SMOKE_DATADIR"],
    web_enabled=False,
    store="memory://",
    topic_partitions=1,
)
source = app.topic(os.environ["SMOKE_IN"], value_serializer="raw")
sink = app.topic(os.environ["SMOKE_OUT"], value_serializer="raw")


@app.agent(source)
async def relay(stream: faust.Stream) -> None:
    async for value in stream:
        await sink.send(value=value.upper())


if __name__ == "__main__":
    app.main()
