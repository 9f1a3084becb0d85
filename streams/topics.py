"""Create the pipeline's topics if they do not exist (idempotent)."""

from __future__ import annotations

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


def ensure_topics(bootstrap: str, config: PipelineConfig, *, partitions: int,
                  replication: int | None = None,
                  options: dict[str, str] | None = None) -> dict[str, int]:
    """Create missing topics; return every pipeline topic's partition count.

    ``replication`` defaults to min(3, brokers). ``options``: client security
    settings (SASL), see streams/localkafka/security.py.
    """
    return create_missing(bootstrap, topic_specs(config, partitions=partitions),
                          replication=replication, options=options)


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
        described = admin.describe_topics(list(specs))
        return {d["name"]: len(d["partitions"]) for d in described}
    finally:
        admin.close()
