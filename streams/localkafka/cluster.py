"""A real Apache Kafka cluster (1 or 3 KRaft nodes) on loopback, without Docker.

Each node runs ``kafka.Kafka`` in combined broker+controller mode from the jars
that ``jars.ensure_jars`` resolved. State lives under
``<state_root>/<name>/``: ``cluster.json`` (ports, pids, cluster id) and one
``node-<id>/`` directory per node (server.properties, data, logs). Starting a
running cluster is a no-op; stopping leaves no process behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from privmon.streams.kafka_client import KafkaOptions
from privmon.streams.localkafka import jars, security
from privmon.streams.localkafka.procs import (
    HOST,
    alive,
    free_port,
    kafka_uuid,
    port_answers,
    port_is_free,
    reap,
)
from privmon.streams.localkafka.properties import NodeSpec, server_properties
from privmon.streams.localkafka.tls import Pki


class PortInUse(RuntimeError):
    """A requested port is already bound by a process that is not this cluster."""


class BrokerFailedToStart(RuntimeError):
    """The broker process died or did not answer in time; carries the log tail."""


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    port: int
    pid: int | None
    running: bool


def default_state_root() -> Path:
    """$PRIVMON_STATE, else ~/.cache/privmon/run (shared by every checkout)."""
    env = os.environ.get("PRIVMON_STATE")
    return Path(env) if env else jars.cache_root() / "run"


class LocalKafka:
    """A named local Kafka cluster of ``nodes`` combined-mode KRaft nodes.

    ``port`` fixes the first node's client port (later nodes take free ports);
    ``None`` picks a free port. Ports are remembered in cluster.json so that a
    stopped cluster restarts on the same addresses.
    """

    def __init__(
        self,
        *,
        name: str = "dev",
        state_root: Path | None = None,
        nodes: int = 1,
        port: int | None = None,
        heap_mb: int = 512,
        num_partitions: int = 1,
        users: Mapping[str, str] | None = None,
        tls: Pki | None = None,
    ) -> None:
        """``users`` (name -> password, must include "admin") turns on SASL/SCRAM and
        the standard authorizer (streams/localkafka/security.py); ``tls`` (certificates
        from ``tls.make_pki``) turns on mutual TLS and the standard authorizer instead,
        each client's principal the CN of its certificate (streams/localkafka/tls.py)."""
        if nodes not in (1, 3):
            raise ValueError(f"nodes: expected 1 or 3, got {nodes!r}")
        self.name = name
        self.dir = (state_root or default_state_root()) / name
        self.nodes = nodes
        self.requested_port = port
        self.heap_mb = heap_mb
        self.num_partitions = num_partitions
        if users is not None and security.ADMIN not in users:
            raise ValueError(f"users: expected an {security.ADMIN!r} user, got {sorted(users)}")
        self.users = dict(users) if users is not None else None
        if tls is not None and users is not None:
            raise ValueError("users and tls: the local broker offers SASL or mutual TLS, "
                             "not both at once")
        self.tls = tls

    # ----------------------------------------------------------------- state
    @property
    def _state_file(self) -> Path:
        return self.dir / "cluster.json"

    def _load(self) -> dict | None:
        if not self._state_file.exists():
            return None
        return json.loads(self._state_file.read_text())

    def _save(self, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self._state_file)

    def node_dir(self, node_id: int) -> Path:
        return self.dir / f"node-{node_id}"

    def specs(self) -> list[NodeSpec]:
        state = self._load()
        if state is None:
            return []
        return [NodeSpec(**n["spec"]) for n in state["nodes"]]

    @property
    def bootstrap_servers(self) -> str:
        specs = self.specs()
        if not specs:
            raise RuntimeError(f"local Kafka {self.name!r} was never started ({self.dir})")
        return ",".join(f"{HOST}:{s.port}" for s in specs)

    def _pid(self, node_id: int) -> int | None:
        pidfile = self.node_dir(node_id) / "broker.pid"
        if not pidfile.exists():
            return None
        return int(pidfile.read_text().strip())

    def _is_our_broker(self, pid: int | None, node_id: int) -> bool:
        """True if pid is alive and is this node's kafka.Kafka (not a reused pid)."""
        if not alive(pid):
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return False
        return "kafka.Kafka" in cmdline and str(self.node_dir(node_id)) in cmdline

    def status(self) -> list[NodeStatus]:
        out = []
        for spec in self.specs():
            pid = self._pid(spec.node_id)
            running = self._is_our_broker(pid, spec.node_id)
            out.append(NodeStatus(spec.node_id, spec.port, pid if running else None, running))
        return out

    def is_running(self) -> bool:
        statuses = self.status()
        return bool(statuses) and all(s.running for s in statuses)

    # ------------------------------------------------------------- configure
    def _plan(self) -> dict:
        """Load the existing layout, or choose ports and a cluster id for a new one."""
        state = self._load()
        if state is not None:
            first = state["nodes"][0]["spec"]["port"]
            if len(state["nodes"]) != self.nodes:
                raise RuntimeError(
                    f"local Kafka {self.name!r} in {self.dir} has {len(state['nodes'])} "
                    f"node(s), {self.nodes} requested: run `privmon kafka stop --name "
                    f"{self.name} --purge` first, or use another --name"
                )
            if self.requested_port not in (None, first):
                raise RuntimeError(
                    f"local Kafka {self.name!r} was created on port {first}, port "
                    f"{self.requested_port} requested: use --port {first}, or run "
                    f"`privmon kafka stop --name {self.name} --purge` to recreate it"
                )
            return state
        specs = []
        taken: set[int] = set()
        for node_id in range(1, self.nodes + 1):
            port = self.requested_port if node_id == 1 and self.requested_port else None
            if port is None:
                port = free_port()
                while port in taken:
                    port = free_port()
            taken.add(port)
            controller_port = free_port()
            while controller_port in taken:
                controller_port = free_port()
            taken.add(controller_port)
            specs.append(NodeSpec(node_id, port, controller_port))
        state = {
            "name": self.name,
            "kafka_version": jars.kafka_version(),
            "cluster_id": kafka_uuid(),
            "nodes": [{"spec": asdict(s)} for s in specs],
        }
        self._save(state)
        return state

    def _server_properties(self, spec: NodeSpec, specs: list[NodeSpec]) -> str:
        return server_properties(spec, specs, data_dir=self.node_dir(spec.node_id) / "data",
                                 num_partitions=self.num_partitions, users=self.users,
                                 tls=self.tls)

    def client_options(self, user: str = security.ADMIN) -> KafkaOptions:
        """Options for kafka-python/aiokafka clients of this cluster, as ``user``."""
        if self.tls is not None:
            return self.tls.client_options(user)
        if self.users is None:
            return {}
        return security.client_options(user, self.users[user])

    def _format(self, spec: NodeSpec, cluster_id: str, java: str, lib: Path) -> None:
        node_dir = self.node_dir(spec.node_id)
        if (node_dir / "data" / "meta.properties").exists():
            return
        cmd = [
            java, "-cp", f"{lib}/*",
            f"-Dlog4j2.configurationFile={jars.LOG_CONFIG_PATH}",
            f"-Dkafka.logs.dir={node_dir}",
            "kafka.tools.StorageTool", "format", "--ignore-formatted",
            "-t", cluster_id, "-c", str(node_dir / "server.properties"),
            *(security.scram_format_args(self.users) if self.users is not None else []),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BrokerFailedToStart(
                f"formatting node {spec.node_id} storage failed (exit {proc.returncode}):\n"
                f"{proc.stdout}{proc.stderr}"
            )

    # ------------------------------------------------------------ lifecycle
    def start(self, *, timeout_s: float = 120.0) -> str:
        """Start every node that is not running and wait until the cluster answers.

        Returns the bootstrap servers. Idempotent: running nodes are left alone.
        """
        lib = jars.ensure_jars()
        java = jars.require_java()
        state = self._plan()
        specs = [NodeSpec(**n["spec"]) for n in state["nodes"]]
        for spec in specs:
            if self._is_our_broker(self._pid(spec.node_id), spec.node_id):
                continue
            for port in (spec.port, spec.controller_port):
                if not port_is_free(port):
                    raise PortInUse(
                        f"port {port} on {HOST} is in use by another process, not by "
                        f"privmon's local Kafka {self.name!r}. Stop that process, or "
                        "choose another port with `privmon kafka start --port N` "
                        "(--port 0 picks a free one)."
                    )
            node_dir = self.node_dir(spec.node_id)
            node_dir.mkdir(parents=True, exist_ok=True)
            (node_dir / "server.properties").write_text(self._server_properties(spec, specs))
            self._format(spec, state["cluster_id"], java, lib)
            self._launch(spec, java, lib)
        self.wait_ready(timeout_s=timeout_s)
        return self.bootstrap_servers

    def _launch(self, spec: NodeSpec, java: str, lib: Path) -> None:
        node_dir = self.node_dir(spec.node_id)
        cmd = [
            java, "-Xms128m", f"-Xmx{self.heap_mb}m", "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={node_dir}",
            f"-Dlog4j2.configurationFile={jars.LOG_CONFIG_PATH}",
            "-cp", f"{lib}/*",
            "kafka.Kafka", str(node_dir / "server.properties"),
        ]
        with open(node_dir / "stdout.log", "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=node_dir,
            )
        (node_dir / "broker.pid").write_text(f"{proc.pid}\n")

    def log_tail(self, node_id: int, lines: int = 40) -> str:
        chunks = []
        for log in ("stdout.log", "broker.log"):
            path = self.node_dir(node_id) / log
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                chunks.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(chunks)

    def wait_ready(self, *, timeout_s: float = 120.0) -> None:
        """Wait until every node accepts connections and the cluster lists them all."""
        from kafka import KafkaAdminClient  # imported here: the CLI's help stays fast

        deadline = time.monotonic() + timeout_s
        specs = self.specs()
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            for spec in specs:
                # Liveness only: while the java launcher execs, its cmdline can
                # briefly be empty, so the stricter _is_our_broker would misfire.
                if not alive(self._pid(spec.node_id)):
                    raise BrokerFailedToStart(
                        f"Kafka node {spec.node_id} exited during start-up.\n"
                        + self.log_tail(spec.node_id)
                    )
            if all(port_answers(s.port) for s in specs):
                try:
                    admin = KafkaAdminClient(
                        bootstrap_servers=self.bootstrap_servers,
                        request_timeout_ms=5000,
                        client_id="privmon-localkafka",
                        **self.client_options(),
                    )
                    try:
                        brokers = admin.describe_cluster()["brokers"]
                    finally:
                        admin.close()
                    if len(brokers) == len(specs):
                        return
                except Exception as exc:  # not ready yet: retried until the deadline
                    last_error = exc
            time.sleep(0.25)
        tails = "\n".join(self.log_tail(s.node_id) for s in specs)
        raise BrokerFailedToStart(
            f"local Kafka {self.name!r} did not answer within {timeout_s:.0f}s "
            f"(last error: {last_error!r}).\n{tails}"
        )

    def stop_node(self, node_id: int, *, kill: bool = False, timeout_s: float = 30.0) -> None:
        """Stop one node: SIGTERM (or SIGKILL with kill=True), SIGKILL after timeout."""
        pid = self._pid(node_id)
        if not self._is_our_broker(pid, node_id):
            return
        assert pid is not None
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self._is_our_broker(pid, node_id):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
            time.sleep(0.1)
        reap(pid)

    def start_node(self, node_id: int, *, timeout_s: float = 120.0) -> None:
        """Start one stopped node of an existing cluster and wait for the cluster."""
        specs = self.specs()
        spec = next(s for s in specs if s.node_id == node_id)
        if not self._is_our_broker(self._pid(node_id), node_id):
            self._launch(spec, jars.require_java(), jars.ensure_jars())
        self.wait_ready(timeout_s=timeout_s)

    def stop(self, *, purge: bool = False, timeout_s: float = 30.0) -> None:
        """Stop every node; purge=True also deletes all data.

        All nodes get SIGTERM at once (stopping combined-mode nodes one by one
        would take the controller quorum away from the last ones and stall
        their controlled shutdown); stragglers get SIGKILL after timeout_s.
        """
        pids = {s.node_id: self._pid(s.node_id) for s in self.specs()}
        live = {n: p for n, p in pids.items() if self._is_our_broker(p, n)}
        for pid in live.values():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while live:
            live = {n: p for n, p in live.items() if self._is_our_broker(p, n)}
            if live and time.monotonic() > deadline:
                for pid in live.values():
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
            time.sleep(0.1)
        for pid in pids.values():
            if pid is not None:
                reap(pid)
        if purge and self.dir.exists():
            shutil.rmtree(self.dir)
