"""`privmon kafka ...`: fetch, start, stop and inspect the local Apache Kafka."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from privmon.agents.cli.options import add_connection_options, client_security
from privmon.streams.localkafka import jars
from privmon.streams.localkafka.cluster import (
    BrokerFailedToStart,
    LocalKafka,
    PortInUse,
    default_state_root,
)

DEFAULT_PORT = 9092


def register(sub: argparse._SubParsersAction) -> None:
    kafka = sub.add_parser(
        "kafka",
        help="run a real local Apache Kafka (KRaft) without Docker",
        description=(
            "Resolve Apache Kafka from Maven Central (cached), then start, stop or "
            "inspect a local KRaft cluster on 127.0.0.1. Needs Java 17+ and Maven. "
            f"State lives in {default_state_root()} (override with $PRIVMON_STATE); "
            "jars in $PRIVMON_CACHE or ~/.cache/privmon."
        ),
    )
    ksub = kafka.add_subparsers(dest="kafka_cmd", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--name", default="dev", help="cluster name (default: dev)")

    fetch = ksub.add_parser("fetch", help="resolve and cache the broker jars only")
    fetch.set_defaults(func=_fetch)

    start = ksub.add_parser("start", help="start the cluster (no-op if running)")
    common(start)
    start.add_argument(
        "--port", type=int, default=None,
        help=f"client port of the first node (default {DEFAULT_PORT} for a new "
        "cluster, its old port for an existing one; 0 = any free port)",
    )
    start.add_argument("--nodes", type=int, choices=(1, 3), default=1,
                       help="1 broker, or a 3-node cluster for fault tests")
    start.add_argument("--partitions", type=int, default=4,
                       help="default partitions of auto-created topics (default 4)")
    start.add_argument("--timeout-s", type=float, default=120.0,
                       help="seconds to wait for the cluster to answer")
    start.set_defaults(func=_start)

    stop = ksub.add_parser("stop", help="stop every node of the cluster")
    common(stop)
    stop.add_argument("--purge", action="store_true", help="also delete its data")
    stop.set_defaults(func=_stop)

    status = ksub.add_parser("status", help="show nodes, ports and pids")
    common(status)
    status.set_defaults(func=_status)

    acl = ksub.add_parser(
        "acl", help="create privmon's topics and ACLs (idempotent)",
        description="Create the pipeline's topics and the ACLs of configs/acls.toml "
        "(producer: write raw; worker: its topics, groups and transactional ids; analyst: "
        "read aggregates only; alerter: read aggregates, write alerts). Needs a broker "
        "with an authorizer and an admin login.",
    )
    acl.add_argument("action", choices=["apply"])
    acl.add_argument("--bootstrap", default=f"127.0.0.1:{DEFAULT_PORT}")
    acl.add_argument("--config", type=Path, default=None, help="pipeline config (TOML)")
    acl.add_argument("--acls", type=Path, default=None, help="principals (TOML)")
    acl.add_argument("--partitions", type=int, default=4)
    add_connection_options(acl, sasl_user_help=(
        "admin user for SASL (default admin, unless a client certificate identifies the "
        "admin; password in $PRIVMON_KAFKA_PASSWORD)"))
    acl.set_defaults(func=_acl)


def _fetch(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        lib = jars.ensure_jars()
    except (jars.PrerequisiteMissing, RuntimeError) as exc:
        print(f"privmon kafka fetch: {exc}", file=sys.stderr)
        return 2
    print(f"Kafka {jars.kafka_version()} jars in {lib} ({time.monotonic() - started:.1f}s)")
    return 0


def _start(args: argparse.Namespace) -> int:
    cluster = LocalKafka(name=args.name, nodes=args.nodes, num_partitions=args.partitions)
    if cluster.is_running():
        if args.port not in (None, 0) and args.port != cluster.specs()[0].port:
            print(
                f"local Kafka {args.name!r} is already running on "
                f"{cluster.bootstrap_servers}, not on port {args.port}; stop it first",
                file=sys.stderr,
            )
            return 2
        print(f"already running: {cluster.bootstrap_servers}")
        return 0
    if cluster.specs():
        cluster.requested_port = args.port or None
    else:
        cluster.requested_port = DEFAULT_PORT if args.port is None else (args.port or None)
    started = time.monotonic()
    try:
        bootstrap = cluster.start(timeout_s=args.timeout_s)
    except (PortInUse, BrokerFailedToStart, jars.PrerequisiteMissing, RuntimeError) as exc:
        print(f"privmon kafka start: {exc}", file=sys.stderr)
        return 2
    print(f"started local Kafka {args.name!r} ({args.nodes} node(s)) in "
          f"{time.monotonic() - started:.1f}s: bootstrap servers {bootstrap}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    cluster = LocalKafka(name=args.name)
    if not cluster.specs():
        print(f"no local Kafka named {args.name!r}")
        return 0
    was_running = any(s.running for s in cluster.status())
    cluster.stop(purge=args.purge)
    purged = ", data purged" if args.purge else ""
    print(("stopped" if was_running else "was not running") + purged)
    return 0


def _status(args: argparse.Namespace) -> int:
    cluster = LocalKafka(name=args.name)
    statuses = cluster.status()
    if not statuses:
        print(f"no local Kafka named {args.name!r} (state {cluster.dir})")
        return 1
    for s in statuses:
        state = f"running (pid {s.pid})" if s.running else "stopped"
        print(f"node {s.node_id}: 127.0.0.1:{s.port} {state}")
    return 0 if all(s.running for s in statuses) else 1


def _acl(args: argparse.Namespace) -> int:
    from privmon.streams.acls import DEFAULT_ACLS, apply_acls, load_principals
    from privmon.streams.config import DEFAULT_PATH, ConfigError, load_config
    from privmon.streams.topics import create_missing, ensure_topics

    try:
        config = load_config(args.config or DEFAULT_PATH)
        who = load_principals(args.acls or DEFAULT_ACLS)
        security = client_security(args)
        if args.sasl_user is None and security.cert_file is None:
            security = client_security(argparse.Namespace(**{**vars(args),
                                                              "sasl_user": "admin"}))
        options = security.options()
    except (ConfigError, ValueError) as exc:
        print(f"privmon kafka acl: {exc}", file=sys.stderr)
        return 2
    topics = ensure_topics(args.bootstrap, config, partitions=args.partitions, options=options)
    # The alert agent's output topic (its principal may write, not create, topics).
    topics |= create_missing(args.bootstrap, {config.topics.alerts: (args.partitions, {})},
                             options=options)
    count = apply_acls(args.bootstrap, config, who, options)
    print(f"{len(topics)} topics present, {count} ACLs applied (existing ones unchanged) for "
          f"{who.producer}, {who.worker}, {who.analyst}, {who.alerter}")
    return 0
