"""docker/kafka-secure.sh (the compose file's broker entry point) on a real broker.

There is no Docker engine here, so the script runs directly: ``KAFKA_HOME``
points at a directory whose ``bin/kafka-storage.sh`` and
``bin/kafka-server-start.sh`` run the same Kafka classes from privmon's cached
jars, as the apache/kafka image's scripts do from /opt/kafka/libs. What is
tested is the script's broker configuration and SCRAM users: after
``privmon kafka acl apply`` (what compose's acl-init service runs) each
principal may do exactly its part.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from kafka import KafkaProducer

from privmon.streams.kafka_client import KafkaOptions
from privmon.streams.localkafka import jars
from privmon.streams.localkafka.procs import free_port, port_answers
from privmon.streams.localkafka.security import client_options
from tests.integration.pipeline_harness import REPO, can_read, make_setup, wait_for, worker_env

SCRIPT = REPO / "docker" / "kafka-secure.sh"
PASSWORDS = {
    "KAFKA_ADMIN_PASSWORD": ("admin", "admin-pass-0123"),
    "PRIVMON_PRODUCER_PASSWORD": ("telemetry-producer", "producer-pass-0123"),
    "PRIVMON_WORKER_PASSWORD": ("privmon-worker", "worker-pass-0123"),
    "PRIVMON_ANALYST_PASSWORD": ("analyst", "analyst-pass-0123"),
    "PRIVMON_ALERTS_PASSWORD": ("privmon-alerts", "alerts-pass-0123"),
}
USERS = dict(PASSWORDS.values())


def _fake_kafka_home(home) -> None:
    """bin/ scripts like the image's, running the classes from the cached jars."""
    lib = jars.ensure_jars(quiet=True)
    java = jars.require_java()
    bin_dir = home / "bin"
    bin_dir.mkdir(parents=True)
    run = (f'exec "{java}" -Xms128m -Xmx512m -Dlog4j2.configurationFile={jars.LOG_CONFIG_PATH} '
           f'-Dkafka.logs.dir={home} -cp "{lib}/*"')
    (bin_dir / "kafka-storage.sh").write_text(
        f'#!/bin/sh\n{run} kafka.tools.StorageTool "$@"\n')
    (bin_dir / "kafka-server-start.sh").write_text(f'#!/bin/sh\n{run} kafka.Kafka "$1"\n')
    for script in bin_dir.iterdir():
        script.chmod(0o755)


class _Broker:
    def __init__(self, port: int) -> None:
        self.bootstrap_servers = f"127.0.0.1:{port}"

    def client_options(self, user: str = "admin") -> KafkaOptions:
        return client_options(user, USERS[user])


def _env(tmp_path, port: int, controller: int, **overrides) -> dict[str, str]:
    env = {**os.environ, "KAFKA_HOME": str(tmp_path / "home"),
           "KAFKA_LISTEN_HOST": "127.0.0.1", "KAFKA_ADVERTISED_HOST": "127.0.0.1",
           "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(controller),
           "KAFKA_DATA_DIR": str(tmp_path / "data"), "KAFKA_CONFIG_DIR": str(tmp_path / "cfg"),
           **{var: pw for var, (_, pw) in PASSWORDS.items()}}
    env.update(overrides)
    return env


@pytest.fixture(scope="module")
def docker_broker(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("docker-broker")
    _fake_kafka_home(tmp_path / "home")
    port, controller = free_port(), free_port()
    log = open(tmp_path / "broker.log", "wb")
    proc = subprocess.Popen(["sh", str(SCRIPT)], env=_env(tmp_path, port, controller),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not port_answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("docker/kafka-secure.sh did not start a broker:\n"
                                     + (tmp_path / "broker.log").read_text()[-3000:])
            time.sleep(0.5)
        yield _Broker(port), tmp_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_compose_broker_enforces_each_principals_acls(docker_broker, tmp_path):
    broker, state = docker_broker
    assert (state / "data" / "meta.properties").exists()
    assert oct((state / "cfg" / "server.properties").stat().st_mode & 0o777) == "0o600"
    setup = make_setup(tmp_path, broker.bootstrap_servers, "compose")
    env = {**worker_env(), "PRIVMON_KAFKA_PASSWORD": USERS["admin"]}
    apply = subprocess.run(
        [sys.executable, "-m", "privmon.agents.cli", "kafka", "acl", "apply", "--bootstrap",
         broker.bootstrap_servers, "--config", str(setup.config), "--sasl-user", "admin"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert apply.returncode == 0, apply.stderr[-2000:]

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all",
                             **broker.client_options("telemetry-producer"))
    producer.send(setup.raw, key=b"a", value=b"{}").get(timeout=30)
    producer.close()
    # ACLs reach the authorizer asynchronously; the worker's right shows when they have.
    wait_for(lambda: can_read(broker, "privmon-worker", setup.raw), timeout_s=30,
             what="the worker's ACLs")
    for topic in ("telemetry.raw", "telemetry.dlq", "privmon.partials", "privmon.ledger",
                  "privmon.progress", "privmon.participation"):
        assert not can_read(broker, "analyst", setup.topic(topic)), topic
        assert not can_read(broker, "privmon-alerts", setup.topic(topic)), topic
    assert can_read(broker, "analyst", setup.topic("aggregates.monitoring"))
    assert can_read(broker, "privmon-alerts", setup.topic("aggregates.monitoring"))
    assert not can_read(broker, "telemetry-producer", setup.raw)


def test_the_compose_broker_refuses_to_start_without_good_passwords(tmp_path):
    env = _env(tmp_path, free_port(), free_port(), PRIVMON_ANALYST_PASSWORD="")
    out = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2
    assert "set PRIVMON_ANALYST_PASSWORD (the password of Kafka user analyst)" in out.stderr
    env = _env(tmp_path, free_port(), free_port(), PRIVMON_WORKER_PASSWORD='x"y]' * 4)
    out = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2 and "PRIVMON_WORKER_PASSWORD: use only" in out.stderr
    assert not (tmp_path / "data").exists()  # stopped before writing anything
