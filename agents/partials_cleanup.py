"""Delete partials of released windows: exact per-cell totals kept no longer than needed.

Stage 2 commits, per partials partition, the offset of the first record of its
oldest pending window; every record below it belongs to a released (or ignored)
window and is never read again, so it is deleted (Kafka DeleteRecords, which
needs DELETE on the partials topic: ``configs/acls.toml``'s worker has it).
Retention (``streams/retention.py``) is the backstop if this cannot run.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from privmon.streams.kafka_client import KafkaOptions

log = logging.getLogger("privmon.worker")

EVERY_S = 30.0


async def delete_released_partials(bootstrap: str, options: KafkaOptions,
                                   done: dict[TopicPartition, int], stop: asyncio.Event,
                                   *, every_s: float = EVERY_S) -> None:
    """Until ``stop``: every ``every_s``, delete partials below the offsets in ``done``
    (which stage 2 updates after each commit). Failures are logged, never fatal."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="privmon-cleanup",
                                **options)
    deleted: dict[TopicPartition, int] = {}
    warned = False
    try:
        await admin.start()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=every_s)
            except TimeoutError:
                pass
            todo = {tp: RecordsToDelete(before_offset=off) for tp, off in list(done.items())
                    if off > deleted.get(tp, 0)}
            if not todo:
                continue
            try:
                await admin.delete_records(todo, timeout_ms=10_000)
                deleted.update({tp: r.before_offset for tp, r in todo.items()})
            except Exception as exc:  # e.g. no DELETE permission: retention still applies
                if not warned:
                    log.warning("could not delete released partials (%s: %s); they expire "
                                "with the topic's retention instead", type(exc).__name__, exc)
                    warned = True
    except Exception as exc:
        log.warning("partials cleanup stopped (%s: %s); partials expire with the topic's "
                    "retention instead", type(exc).__name__, exc)
    finally:
        await admin.close()
