"""`privmon kafka start|stop|status` behave as the README says, on real brokers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from privmon.streams.localkafka.cluster import LocalKafka

PRIVMON = [sys.executable, "-m", "privmon.agents.cli"]
REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        PRIVMON + args, env=env, cwd=REPO, capture_output=True, text=True, timeout=240
    )


def _kafka_pids(state: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"kafka.Kafka.*{state}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_start_twice_runs_one_broker_and_stop_leaves_nothing(tmp_path):
    env = {**os.environ, "PRIVMON_STATE": str(tmp_path)}
    first = _run(["kafka", "start", "--port", "0"], env)
    assert first.returncode == 0, first.stderr
    assert "started local Kafka" in first.stdout
    try:
        pids = _kafka_pids(tmp_path)
        assert len(pids) == 1

        second = _run(["kafka", "start"], env)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stdout
        assert _kafka_pids(tmp_path) == pids

        status = _run(["kafka", "status"], env)
        assert status.returncode == 0 and f"pid {pids[0]}" in status.stdout
    finally:
        stop = _run(["kafka", "stop", "--purge"], env)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert _kafka_pids(tmp_path) == []
    assert _run(["kafka", "status"], env).returncode == 1


def test_port_in_use_is_refused_with_a_clear_message(tmp_path):
    env = {**os.environ, "PRIVMON_STATE": str(tmp_path)}
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = _run(["kafka", "start", "--port", str(port)], env)
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use by another process" in result.stderr
    assert "--port" in result.stderr
    assert _kafka_pids(tmp_path) == []


def test_three_node_cluster_survives_losing_one_node(tmp_path):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    cluster = LocalKafka(name="three", state_root=tmp_path, nodes=3)
    try:
        bootstrap = cluster.start(timeout_s=180)
        assert len(bootstrap.split(",")) == 3
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic("replicated", num_partitions=2, replication_factor=3)])
        admin.close()

        cluster.stop_node(2, kill=True)
        assert [s.running for s in cluster.status()] == [True, False, True]
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=10)
        for i in range(50):
            producer.send("replicated", value=str(i).encode())
        producer.flush(timeout=60)
        producer.close()
        cluster.start_node(2)

        consumer = KafkaConsumer(
            "replicated", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
            consumer_timeout_ms=30000,
        )
        got = sorted(int(m.value) for _, m in zip(range(50), consumer, strict=False))
        consumer.close()
        assert got == list(range(50))
    finally:
        cluster.stop(purge=True)
    assert _kafka_pids(tmp_path) == []


def test_missing_java_names_what_to_install(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "PRIVMON_CACHE": str(tmp_path / "cache")}
    result = _run(["kafka", "fetch"], env)
    assert result.returncode == 2
    assert "java not found on PATH" in result.stderr
    assert "openjdk-17" in result.stderr


def test_missing_maven_names_what_to_install(tmp_path):
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = shutil.which("java")
    assert java is not None
    (bin_dir / "java").symlink_to(java)
    env = {**os.environ, "PATH": str(bin_dir), "PRIVMON_CACHE": str(tmp_path / "cache")}
    result = _run(["kafka", "fetch"], env)
    assert result.returncode == 2
    assert "mvn not found on PATH" in result.stderr
    assert "apt-get install maven" in result.stderr
