"""Kafka's own access control: SASL/SCRAM users and ACLs on a real broker with an authorizer."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from kafka import KafkaProducer
from kafka.admin import (
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePatternFilter,
    ResourceType,
)

from privmon.streams.localkafka.cluster import LocalKafka
from tests.integration.pipeline_harness import (
    CELLS,
    REPO,
    all_released,
    can_read,
    first_window_after,
    known_input,
    make_setup,
    stop_worker,
    wait_for,
    worker_env,
)

USERS = {"admin": "admin-secret", "telemetry-producer": "producer-secret",
         "privmon-worker": "worker-secret", "analyst": "analyst-secret",
         "privmon-alerts": "alerts-secret"}


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    cluster = LocalKafka(name="secure", state_root=tmp_path_factory.mktemp("secure"),
                         users=USERS, num_partitions=4)
    cluster.start(timeout_s=180)
    yield cluster
    cluster.stop(purge=True)


def _privmon(args, password, **extra_env):
    env = {**worker_env(), "PRIVMON_KAFKA_PASSWORD": password, **extra_env}
    return subprocess.run([sys.executable, "-m", "privmon.agents.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def _acl_count(cluster) -> int:
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers,
                             **cluster.client_options())
    acls, error = admin.describe_acls(ACLFilter(
        principal=None, host="*", operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                               ACLResourcePatternType.ANY)))
    admin.close()
    return len(acls)


def test_acls_allow_each_role_only_its_topics(secure, tmp_path):
    setup = make_setup(tmp_path, secure.bootstrap_servers, "acl")
    apply = ["kafka", "acl", "apply", "--bootstrap", secure.bootstrap_servers,
             "--config", str(setup.config)]
    first = _privmon(apply, USERS["admin"])
    assert first.returncode == 0, first.stderr[-2000:]
    applied = int(re.search(r"(\d+) ACLs applied", first.stdout)[1])
    wait_for(lambda: _acl_count(secure) == applied, timeout_s=20, what="ACLs to propagate")
    second = _privmon(apply, USERS["admin"])
    assert second.returncode == 0, second.stderr[-2000:]
    time.sleep(2)
    assert _acl_count(secure) == applied  # applying again adds nothing

    start = first_window_after(int(time.time() * 1000), lead_ms=5000)
    truth = known_input(start, 1)
    producer = KafkaProducer(bootstrap_servers=secure.bootstrap_servers, acks="all",
                             **secure.client_options("telemetry-producer"))
    for key, value in truth.messages:
        producer.send(setup.raw, key=key, value=value)
    producer.flush()
    producer.close()

    log = tmp_path / "worker.log"
    env = {**worker_env(), "PRIVMON_KAFKA_PASSWORD": USERS["privmon-worker"]}
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "privmon.agents.cli", "worker", "--bootstrap",
             secure.bootstrap_servers, "--config", str(setup.config), "--idle-lag-ms", "2000",
             "--sasl-user", "privmon-worker", "--status-every-s", "2"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        setup_as_analyst = type(setup)(setup.config, setup.prefix, secure.bootstrap_servers)
        wait_for(all_released(setup_as_analyst, truth, secure.client_options("analyst")),
                 timeout_s=90, what="releases by the SASL worker", procs=[worker], log=log)
    finally:
        stop_worker(worker)

    for topic in ("telemetry.raw", "telemetry.dlq", "privmon.partials", "privmon.ledger",
                  "privmon.progress", "privmon.participation"):
        assert not can_read(secure, "analyst", setup.topic(topic)), topic
    assert can_read(secure, "analyst", setup.topic("aggregates.monitoring"))
    assert not can_read(secure, "telemetry-producer", setup.raw)
    assert can_read(secure, "privmon-worker", setup.raw)
    for topic in ("telemetry.raw", "telemetry.dlq", "privmon.partials", "privmon.ledger",
                  "privmon.participation"):
        assert not can_read(secure, "privmon-alerts", setup.topic(topic)), topic

    # The analysts' tools need nothing but read access to the aggregate topics.
    out = tmp_path / "m.csv"
    export = _privmon(["export", "monitoring", "--bootstrap", secure.bootstrap_servers,
                       "--config", str(setup.config), "--since", "1h", "-o", str(out),
                       "--sasl-user", "analyst"], USERS["analyst"])
    assert export.returncode == 0, export.stderr[-2000:]
    assert len(out.read_text().splitlines()) == 1 + len(CELLS)  # header + 4 cells
    budget = _privmon(["budget", "--bootstrap", secure.bootstrap_servers, "--config",
                       str(setup.config), "--sasl-user", "analyst"], USERS["analyst"])
    # The ledger is internal: the analyst cannot even see it.
    assert budget.returncode == 2 and "the ledger is internal" in budget.stderr
    # The alert agent runs as its own principal: reads aggregates, may write alerts.
    alerts = _privmon(["alerts", "--bootstrap", secure.bootstrap_servers, "--config",
                       str(setup.config), "--sasl-user", "privmon-alerts", "--duration-s", "6",
                       "--backlog-ms", "3600000"], USERS["privmon-alerts"])
    assert alerts.returncode == 0, alerts.stderr[-2000:]
    assert "Authorization" not in alerts.stderr
