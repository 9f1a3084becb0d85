"""Topic set-up on the real broker: the participation-state topic follows the raw topic."""

from __future__ import annotations

import subprocess
import sys

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from privmon.streams.config import load_config
from privmon.streams.topics import ensure_topics
from tests.integration.pipeline_harness import REPO, make_setup, worker_env


def _create(bootstrap: str, topics: dict[str, int], configs: dict | None = None) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(t, num_partitions=n, replication_factor=1,
                                  topic_configs=configs or {}) for t, n in topics.items()])
    admin.close()


def test_the_state_topic_gets_the_raw_topics_partitions(bootstrap, tmp_path):
    setup = make_setup(tmp_path, bootstrap, "layout")
    _create(bootstrap, {setup.raw: 6})  # made by someone else, with more than --partitions
    counts = ensure_topics(bootstrap, load_config(setup.config), partitions=4)
    assert counts[setup.raw] == 6
    assert counts[setup.topic("privmon.participation")] == 6
    assert counts[setup.topic("privmon.partials")] == 4


def test_a_worker_refuses_a_state_topic_with_too_few_partitions(bootstrap, tmp_path):
    setup = make_setup(tmp_path, bootstrap, "layout-bad")
    _create(bootstrap, {setup.raw: 6, setup.topic("privmon.participation"): 2})
    out = subprocess.run(
        [sys.executable, "-m", "privmon.agents.cli", "worker", "--bootstrap", bootstrap, "--config",
         str(setup.config)], cwd=REPO, env=worker_env(), capture_output=True, text=True,
        timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    state = setup.topic("privmon.participation")
    assert (f"privmon worker: topic {state}: expected at least 6 partitions (one per "
            f"partition of {setup.raw}), got 2; add partitions with `kafka-topics.sh --alter "
            f"--topic {state} --partitions 6`") in out.stderr


def test_large_and_deleted_state_records_round_trip(bootstrap, topic_name):
    """send_many and send_topics (two topics in one round trip, one record placed by
    key) with records far over a producer batch (16 KB) and tombstones, in a
    transaction; read_latest gives per partition the latest value of each key. A
    record the broker refuses raises, and its transaction (with the other topic's
    record of the same call) is not committed."""
    import asyncio

    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import MessageSizeTooLargeError

    from privmon.agents.kafka_io import read_latest, send_many, send_topics
    from privmon.streams.participation_state import MAX_RECORD_BYTES
    from privmon.streams.topics import topic_specs

    state_configs = topic_specs(load_config(), partitions=2)["privmon.participation"][1]
    _create(bootstrap, {topic_name: 2}, state_configs)
    _create(bootstrap, {topic_name + ".small": 1})  # Kafka's default limit: ~1 MB
    big = bytes(range(256)) * 4096  # 1 MiB
    records = [(b"a", big, 0), (b"b", b"small", 0), (b"a", big[::-1], 1), (b"c", b"x", 1)]

    async def run() -> dict:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=topic_name,
                                    enable_idempotence=True,
                                    max_request_size=MAX_RECORD_BYTES + 64 * 1024)
        await producer.start()
        try:
            async with producer.transaction():
                await send_topics(producer, [(topic_name, records, 2),
                                             (topic_name + ".small", [(b"k", b"v", None)], 1)])
            async with producer.transaction():
                await send_many(producer, topic_name, [(b"c", None, 1)], 2)  # tombstone
            with pytest.raises(MessageSizeTooLargeError):
                async with producer.transaction():
                    await send_topics(producer, [(topic_name, [(b"d", b"y", 0)], 2),
                                                 (topic_name + ".small", [(b"a", big, 0)], 1)])
        finally:
            await producer.stop()
        return (await read_latest(bootstrap, topic_name, [0, 1], {}),
                await read_latest(bootstrap, topic_name + ".small", [0], {}))

    latest, small = asyncio.run(run())
    assert latest == {0: {b"a": big, b"b": b"small"}, 1: {b"a": big[::-1]}}
    assert small == {0: {b"k": b"v"}}
