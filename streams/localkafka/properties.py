"""What a local Kafka node's server.properties say (streams/localkafka/cluster.py writes
them at every start)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from privmon.streams.localkafka import security
from privmon.streams.localkafka.procs import HOST
from privmon.streams.localkafka.tls import Pki
from privmon.streams.localkafka.tls import broker_properties as tls_broker_properties


@dataclass(frozen=True)
class NodeSpec:
    node_id: int
    port: int
    controller_port: int


def server_properties(spec: NodeSpec, specs: list[NodeSpec], *, data_dir: Path,
                      num_partitions: int, users: Mapping[str, str] | None,
                      tls: Pki | None) -> str:
    """One node's server.properties: combined broker and controller, replication as
    the cluster's size allows, listeners as its security mode wants."""
    n = len(specs)
    voters = ",".join(f"{s.node_id}@{HOST}:{s.controller_port}" for s in specs)
    replication = min(3, n)
    return "\n".join(
        [
            "# Written by privmon (streams/localkafka/cluster.py); regenerated at start.",
            "process.roles=broker,controller",
            f"node.id={spec.node_id}",
            f"controller.quorum.voters={voters}",
            *listener_properties(spec, users=users, tls=tls),
            f"log.dirs={data_dir}",
            f"num.partitions={num_partitions}",
            f"default.replication.factor={replication}",
            f"min.insync.replicas={1 if n == 1 else 2}",
            f"offsets.topic.replication.factor={replication}",
            "offsets.topic.num.partitions=8",
            f"transaction.state.log.replication.factor={replication}",
            f"transaction.state.log.min.isr={1 if n == 1 else 2}",
            "transaction.state.log.num.partitions=8",
            f"share.coordinator.state.topic.replication.factor={replication}",
            f"share.coordinator.state.topic.min.isr={1 if n == 1 else 2}",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "log.retention.hours=168",
            "",
        ]
    )


def listener_properties(spec: NodeSpec, *, users: Mapping[str, str] | None,
                        tls: Pki | None) -> list[str]:
    """PLAINTEXT, SASL/SCRAM (``users``, security.py) or mutual TLS (``tls``, tls.py)."""
    if tls is not None:
        return tls_broker_properties(HOST, spec.port, spec.controller_port, tls)
    if users is not None:
        return security.broker_properties(HOST, spec.port, spec.controller_port,
                                          users[security.ADMIN])
    return [
        f"listeners=PLAINTEXT://{HOST}:{spec.port},CONTROLLER://{HOST}:{spec.controller_port}",
        f"advertised.listeners=PLAINTEXT://{HOST}:{spec.port}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
    ]
