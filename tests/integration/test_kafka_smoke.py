"""Produce to and consume from the real local broker with both Python clients."""

from __future__ import annotations

import json

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic


def _create(bootstrap: str, topic: str, partitions: int = 3) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def test_kafka_python_roundtrip_with_consumer_group(bootstrap, topic_name):
    _create(bootstrap, topic_name)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    sent = [{"i": i} for i in range(100)]
    for record in sent:
        key = str(record["i"] % 7).encode()
        producer.send(topic_name, key=key, value=json.dumps(record).encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        topic_name,
        bootstrap_servers=bootstrap,
        group_id=f"{topic_name}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20000,
    )
    got = []
    for message in consumer:
        got.append(json.loads(message.value))
        if len(got) == len(sent):
            break
    consumer.commit()
    assignment = consumer.assignment()
    committed = {tp.partition: consumer.committed(tp) for tp in assignment}
    consumer.close()

    assert sorted(r["i"] for r in got) == list(range(100))
    # The group really joined and owns all three partitions, and its offsets
    # were committed to the broker (they add up to everything consumed).
    assert {tp.partition for tp in assignment} == {0, 1, 2}
    assert sum(committed.values()) == 100


async def test_aiokafka_roundtrip_with_consumer_group(bootstrap, topic_name):
    _create(bootstrap, topic_name)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(100):
            await producer.send(topic_name, key=str(i % 5).encode(), value=str(i).encode())
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic_name,
        bootstrap_servers=bootstrap,
        group_id=f"{topic_name}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[int] = []
    try:
        while len(got) < 100:
            batch = await consumer.getmany(timeout_ms=20000)
            assert batch, "no records within 20 s"
            for records in batch.values():
                got.extend(int(r.value) for r in records)
        await consumer.commit()
        partitions = consumer.assignment()
        committed = [await consumer.committed(tp) for tp in partitions]
    finally:
        await consumer.stop()
    assert sorted(got) == list(range(100))
    assert {tp.partition for tp in partitions} == {0, 1, 2}
    assert sum(committed) == 100
