"""Retention as code on a real broker: topic creation sets it, and a topic that
already existed with the broker's default retention gets it on the next start."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition

from privmon.streams.config import load_config
from privmon.streams.topics import create_missing, ensure_topics, retention_configs, topic_configs
from tests.integration.pipeline_harness import (
    all_released,
    first_window_after,
    known_input,
    make_setup,
    produce,
    start_worker,
    stop_worker,
    wait_for,
)


def test_topics_get_their_retention_and_keep_it(kafka_cluster, bootstrap, tmp_path):
    setup = make_setup(tmp_path, bootstrap, "retention")
    config = load_config(setup.config)
    t = config.topics
    # The raw topic exists already, made by someone else with the broker default.
    create_missing(bootstrap, {t.raw: (4, {})})
    assert topic_configs(bootstrap, [t.raw])[t.raw]["retention.ms"] == "604800000"  # 7 d

    ensure_topics(bootstrap, config, partitions=4)
    wanted = retention_configs(config)
    got = topic_configs(bootstrap, list(wanted) + [t.ledger, t.progress])
    for topic, configs in wanted.items():
        for key, value in configs.items():
            assert got[topic][key] == value, (topic, key, got[topic][key])
    assert got[t.raw]["retention.ms"] == str(config.retention.raw_ms)
    assert got[t.participation]["cleanup.policy"] == "compact,delete"
    assert got[t.ledger]["cleanup.policy"] == "compact"  # what was spent: kept
    assert got[t.progress]["cleanup.policy"] == "compact"


def test_partials_of_released_windows_are_deleted(kafka_cluster, bootstrap, tmp_path):
    """With deletion on (the default), the partials topic's first offset moves past
    the partials of released windows soon after they are committed."""
    setup = make_setup(tmp_path, bootstrap, "cleanup")
    text = setup.config.read_text().replace(
        "delete_released_partials = false", "delete_released_partials = true\n"
        "delete_every_s = 1")
    setup.config.write_text(text)
    log = tmp_path / "worker.log"
    worker = start_worker(setup, "w1", log)
    try:
        first = first_window_after(int(time.time() * 1000), lead_ms=4000)
        truth = known_input(first, 2)
        produce(bootstrap, setup.raw, truth.messages)
        wait_for(all_released(setup, truth), timeout_s=90, what="the releases",
                 procs=[worker], log=log)
        topic = setup.topic("privmon.partials")

        def deleted() -> bool:
            consumer = KafkaConsumer(bootstrap_servers=bootstrap)
            try:
                tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
                return sum(consumer.beginning_offsets(tps).values()) > 0
            finally:
                consumer.close()

        wait_for(deleted, timeout_s=60, what="deleted partials", procs=[worker], log=log)
    finally:
        stop_worker(worker)
    assert "could not delete released partials" not in log.read_text()
