"""Create the pipeline's topics if they do not exist (idempotent)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from privmon.streams.config import PipelineConfig
from privmon.streams.kafka_client import KafkaOptions
from privmon.streams.kafka_errors import connecting
from privmon.streams.participation_state import MAX_RECORD_BYTES

COMPACTED = {"cleanup.policy": "compact"}
log = logging.getLogger("privmon.topics")


def retention_configs(config: PipelineConfig) -> dict[str, dict[str, str]]:
    """Topic configs that limit storage (streams/retention.py): set at creation and
    on every start (``ensure_topics``), so a topic never keeps the broker default."""
    t, r = config.topics, config.retention
    return {
        t.raw: {"cleanup.policy": "delete", "retention.ms": str(r.raw_ms)},
        t.dlq: {"cleanup.policy": "delete", "retention.ms": str(r.dlq_ms)},
        t.partials: {"cleanup.policy": "delete", "retention.ms": str(r.partials_ms)},
        # a period's cap state expires with it: compacted, and deleted after the period
        t.participation: {"cleanup.policy": "compact,delete",
                          "retention.ms": str(r.participation_ms)},
    }


def topic_specs(config: PipelineConfig, *, partitions: int) -> dict[str, tuple[int, dict]]:
    t = config.topics
    keep = retention_configs(config)
    specs: dict[str, tuple[int, dict]] = {
        t.raw: (partitions, keep[t.raw]),
        t.dlq: (partitions, keep[t.dlq]),
        t.partials: (partitions, keep[t.partials]),
        t.progress: (1, COMPACTED),
        t.ledger: (1, COMPACTED),
        # one partition per raw partition: stage 1 restores only its own
        t.participation: (partitions, {**keep[t.participation],
                                       "max.message.bytes": str(MAX_RECORD_BYTES + 64 * 1024)}),
    }
    for policy in config.policies:
        specs[t.aggregate(policy.name)] = (1, {})
    return specs


@contextmanager
def _admin(bootstrap: str, options: KafkaOptions | None) -> Iterator[KafkaAdminClient]:
    with connecting(bootstrap):
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="privmon-topics",
                                 **(options or {}))
    try:
        yield admin
    finally:
        admin.close()


class TopicLayoutError(ValueError):
    """Existing topics whose layout privmon cannot work with (says how to fix it)."""


def ensure_topics(bootstrap: str, config: PipelineConfig, *, partitions: int,
                  replication: int | None = None,
                  options: KafkaOptions | None = None) -> dict[str, int]:
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
    try:
        apply_retention(bootstrap, config, options=options)
    except Exception as exc:  # e.g. a principal without ALTER_CONFIGS (the secured worker)
        log.warning("retention of existing topics not set (%s: %s); topics this process "
                    "created have it, and `privmon kafka acl apply` run as admin sets it "
                    "on all of them", type(exc).__name__, exc)
    return counts


def apply_retention(bootstrap: str, config: PipelineConfig, *,
                    options: KafkaOptions | None = None) -> None:
    """Set the retention configs on existing topics too (incrementally: other
    settings an operator made are left alone). Raises what the broker refused."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, topic, configs=dict(wanted))
                 for topic, wanted in retention_configs(config).items()]
    with _admin(bootstrap, options) as admin:
        result = admin.alter_configs(resources, incremental=True, raise_on_unknown=False)
    errors = [f"{name}: {err}" for by_name in result.values()
              for name, err in by_name.items() if err != "OK"]
    if errors:
        raise RuntimeError("; ".join(errors[:3]))


def topic_configs(bootstrap: str, topics: list[str], *,
                  options: KafkaOptions | None = None) -> dict[str, dict[str, str]]:
    """The broker's current configs of ``topics`` (name -> key -> value)."""
    with _admin(bootstrap, options) as admin:
        found = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics], config_filter="All")
    # {resource type: {name: {key: {"value": ..., ...}}}}
    return {name: {key: (v.get("value") if isinstance(v, dict) else v)
                   for key, v in configs.items()}
            for by_name in found.values() for name, configs in by_name.items()}


def create_missing(bootstrap: str, specs: dict[str, tuple[int, dict]], *,
                   replication: int | None = None,
                   options: KafkaOptions | None = None) -> dict[str, int]:
    """Create the topics of ``specs`` (name -> (partitions, configs)) that do not
    exist yet; return each one's partition count."""
    with _admin(bootstrap, options) as admin:
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
