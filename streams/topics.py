"""Create the pipeline's topics if they do not exist (idempotent)."""

from __future__ import annotations

import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.config import PipelineConfig
from streams.participation_state import MAX_RECORD_BYTES

COMPACTED = {"cleanup.policy": "compact"}


def topic_specs(config: PipelineConfig, *, partitions: int) -> dict[str, tuple[int, dict]]:
    t = config.topics
    specs: dict[str, tuple[int, dict]] = {
        t.raw: (partitions, {}),
        t.dlq: (partitions, {}),
        t.partials: (partitions, {}),
        t.progress: (1, COMPACTED),
        t.ledger: (1, COMPACTED),
        # one partition per raw partition: stage 1 restores only its own
        t.participation: (partitions, {**COMPACTED,
                                       "max.message.bytes": str(MAX_RECORD_BYTES + 64 * 1024)}),
    }
    for policy in config.policies:
        specs[t.aggregate(policy.name)] = (1, {})
    return specs


class TopicLayoutError(ValueError):
    """Existing topics whose layout privmon cannot work with (says how to fix it)."""


def ensure_topics(bootstrap: str, config: PipelineConfig, *, partitions: int,
                  replication: int | None = None,
                  options: dict[str, str] | None = None) -> dict[str, int]:
    """Create missing topics; return every pipeline topic's partition count.

    The participation-state topic gets as many partitions as the raw topic
    has (stage 1 writes raw partition p's state to its partition p), and an
    existing one with fewer is refused: the worker must not start without a
    place to keep the cap.

    ``replication`` defaults to min(3, brokers). ``options``: client security
    settings (SASL), see streams/localkafka/security.py.
    """
    t = config.topics
    specs = topic_specs(config, partitions=partitions)
    _, state_configs = specs.pop(t.participation)
    counts = create_missing(bootstrap, specs, replication=replication, options=options)
    raw = counts[t.raw]
    counts |= create_missing(bootstrap, {t.participation: (raw, state_configs)},
                             replication=replication, options=options)
    if counts[t.participation] < raw:
        raise TopicLayoutError(
            f"topic {t.participation}: expected at least {raw} partitions (one per partition "
            f"of {t.raw}), got {counts[t.participation]}; add partitions with "
            f"`kafka-topics.sh --alter --topic {t.participation} --partitions {raw}`")
    return counts


def create_missing(bootstrap: str, specs: dict[str, tuple[int, dict]], *,
                   replication: int | None = None,
                   options: dict[str, str] | None = None) -> dict[str, int]:
    """Create the topics of ``specs`` (name -> (partitions, configs)) that do not
    exist yet; return each one's partition count."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="privmon-topics",
                             **(options or {}))
    try:
        if replication is None:
            replication = min(3, len(admin.describe_cluster()["brokers"]))
        existing = set(admin.list_topics())
        new = [NewTopic(name, num_partitions=n, replication_factor=replication,
                        topic_configs=cfg)
               for name, (n, cfg) in specs.items() if name not in existing]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another worker created them at the same moment
        # A topic created a moment ago may be described without its partitions yet.
        deadline = time.monotonic() + 30
        while True:
            counts = {d["name"]: len(d["partitions"]) for d in admin.describe_topics(list(specs))}
            if all(counts.get(name) for name in specs) or time.monotonic() > deadline:
                return counts
            time.sleep(0.2)
    finally:
        admin.close()
