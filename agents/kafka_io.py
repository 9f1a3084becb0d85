"""Reading and sending for both stages: the latest value per key of a compacted topic,
records sent in one batch per topic partition with every answer awaited, and starting
a client that is closed again if it cannot start."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import ProducerFenced

from privmon.streams.kafka_client import KafkaOptions
from privmon.streams.partitioner import partitions_for_keys


async def start_or_close(
        client: AIOKafkaConsumer | AIOKafkaProducer | AIOKafkaAdminClient) -> None:
    """``client.start()``; if that fails (no broker reachable, refused), close it before
    raising, so that no "Unclosed AIOKafkaConsumer" follows the error."""
    try:
        await client.start()
    except BaseException:
        await (client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop())
        raise


async def read_compacted(
    bootstrap: str, topic: str, partitions: int, options: KafkaOptions
) -> dict[bytes, bytes]:
    """Latest committed value per key of a (small, compacted) topic."""
    out: dict[bytes, bytes] = {}
    for latest in (await read_latest(bootstrap, topic, range(partitions), options)).values():
        out.update(latest)
    return out


async def read_latest(
    bootstrap: str, topic: str, partitions: Iterable[int], options: KafkaOptions
) -> dict[int, dict[bytes, bytes]]:
    """Per partition, the latest committed value per key (tombstones remove keys)."""
    parts = [TopicPartition(topic, p) for p in partitions]
    out: dict[int, dict[bytes, bytes]] = {tp.partition: {} for tp in parts}
    if not parts:  # (and no consumer: stopping one right after its start raises
        return out  # CancelledError from aiokafka's not-yet-started no-group task)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False, **options)
    await start_or_close(consumer)
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in parts])

        while await behind():
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                latest = out[tp.partition]
                for r in records:
                    if r.key is None:
                        continue
                    if r.value is None:
                        latest.pop(r.key, None)
                    else:
                        latest[r.key] = r.value
        return out
    finally:
        await consumer.stop()


Records = list[tuple[bytes | None, bytes | None, int | None]]  # (key, value, partition)


async def send_many(producer: AIOKafkaProducer, topic: str, records: Records,
                    partitions: int) -> None:
    """``send_topics`` of one topic's records (``partitions``: the topic's count)."""
    await send_topics(producer, [(topic, records, partitions)])


async def send_topics(producer: AIOKafkaProducer,
                      sends: list[tuple[str, Records, int]]) -> None:
    """Send each (topic, records, partitions) entry's (key, value, partition) records
    in one batch per topic partition, not one coroutine per record (~10x less
    overhead for thousands of partials), and wait once for every answer: one round
    trip to the broker for all of them, not one per topic.

    ``partition`` None means by key, with Kafka's default (murmur2) partitioner:
    the partition ``producer.send`` would have chosen, so keyed records land
    where they always did. Inside a transaction like ``send``. Returns once the
    broker has the records (raises what it refused)."""
    sent: list[asyncio.Future] = []
    for topic, records, partitions in sends:
        builders: dict[int, object] = {}
        keys: list[bytes] = []  # of the records sent by key, in order
        for key, _, part in records:
            if part is None:
                if key is None:
                    raise ValueError(f"send_topics: a record for {topic} without key needs "
                                     "a partition")
                keys.append(key)
        by_key = iter(partitions_for_keys(keys, partitions).tolist() if keys else ())
        for key, value, part in records:
            if part is None:
                part = next(by_key)
            builder = builders.get(part)
            if builder is None:
                builder = builders[part] = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None) is None:  # full
                sent.append(await producer.send_batch(builder, topic, partition=part))
                builder = builders[part] = producer.create_batch()
                builder.append(key=key, value=value, timestamp=None)
        for part, builder in builders.items():
            if builder.record_count():
                sent.append(await producer.send_batch(builder, topic, partition=part))
    # Wait for the broker's answer: a refused batch (too large, not authorized, fenced)
    # must raise here, before the transaction commits, not vanish in an unread future;
    # every answer is read, so the others' errors are not logged as unread.
    await all_sent(sent)


async def all_sent(sends: list[asyncio.Future]) -> None:
    """Wait for every one of ``sends`` (the broker's answers to batches, or several
    ``send_topics`` in flight together), then raise what one of them raised, a
    ProducerFenced before anything else: past a fencing, the sends after it find no
    transaction and raise IllegalOperation, which is not recoverable, while the
    fencing is (the stage replays from committed state)."""
    answers = await asyncio.gather(*sends, return_exceptions=True)
    errors = [a for a in answers if isinstance(a, BaseException)]
    if errors:
        raise next((e for e in errors if isinstance(e, ProducerFenced)), errors[0])
