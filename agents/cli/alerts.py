"""`privmon alerts`: the on-call agent (noise-aware alerts + Prometheus gauges)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

from privmon.agents.alerts.agent import AlertAgent
from privmon.agents.alerts.rules import DEFAULT_ALERTS, load_alert_config
from privmon.agents.alerts.sinks import HttpSink
from privmon.agents.cli.options import (
    add_deployment_options,
    kafka_options,
    quiet_retried_kafka_errors,
    stop_event,
)
from privmon.streams.config import ConfigError, load_config, with_prefix


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "alerts", help="run the alert agent: noise-aware alerts and Prometheus gauges",
        description=(
            "Read released aggregates (read_committed) and fire the rules of --rules only "
            "when they hold beyond the DP noise with the rule's confidence (see "
            "agents/alerts/rules.py for the test and its false-alarm bound). Alerts go to "
            "the alerts topic and, if given, to a webhook and an Alertmanager. With "
            "--metrics-port the latest released values, their noise std and 95% intervals "
            "are served as Prometheus gauges. Stops on SIGINT/SIGTERM."
        ),
    )
    add_deployment_options(p)
    p.add_argument("--rules", type=Path, default=DEFAULT_ALERTS, help="alert rules (TOML)")
    p.add_argument("--webhook", default=None, help="also POST alerts as JSON to this URL")
    p.add_argument("--alertmanager", default=None,
                   help="also post alerts to this Alertmanager (base URL, e.g. "
                   "http://alertmanager:9093; uses /api/v2/alerts)")
    p.add_argument("--alertmanager-hold-windows", type=float, default=3.0,
                   help="while a rule holds, each post to Alertmanager ends this many of the "
                   "stream's windows later (re-posted every window; default %(default)s); "
                   "when it stops holding, the agent resolves it at once")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve the latest released values on --metrics-host:PORT/metrics")
    p.add_argument("--metrics-host", default="127.0.0.1",
                   help="address the metrics endpoint listens on (default %(default)s; "
                   "0.0.0.0 for a Prometheus in another container: it serves only "
                   "released, public figures)")
    p.add_argument("--export-streams", default="monitoring",
                   help="streams whose latest values are exported (comma-separated)")
    p.add_argument("--backlog-ms", type=int, default=120_000,
                   help="at start, also evaluate windows that ended this long ago (default 2 min)")
    p.add_argument("--duration-s", type=float, default=None, help="stop after this long")
    p.set_defaults(func=run)


def build_agent(args: argparse.Namespace) -> AlertAgent:
    pipeline = load_config(args.config)
    rules = load_alert_config(args.rules, pipeline)
    if args.topic_prefix:
        pipeline, rules = with_prefix(pipeline, args.topic_prefix), rules.with_prefix(
            args.topic_prefix)
    sinks = []
    if args.webhook:
        sinks.append(HttpSink("webhook", args.webhook))
    if args.alertmanager:
        if args.alertmanager_hold_windows <= 1:
            raise ConfigError(f"--alertmanager-hold-windows {args.alertmanager_hold_windows:g}: "
                              "expected more than 1 (each post must last until the next "
                              "window's)")
        sinks.append(HttpSink("alertmanager", args.alertmanager,
                              hold_windows=args.alertmanager_hold_windows))
    exported = [s.strip() for s in args.export_streams.split(",") if s.strip()]
    names = [p.name for p in pipeline.policies]
    for s in exported:
        if s not in names:
            raise ConfigError(f"--export-streams {s!r}: expected some of {names}")
    return AlertAgent(pipeline=pipeline, alerts=rules, bootstrap=args.bootstrap, sinks=sinks,
                      export_streams=exported, backlog_ms=args.backlog_ms,
                      kafka_options=kafka_options(args))


async def _main(agent: AlertAgent, args: argparse.Namespace) -> None:
    await agent.run(stop_event(args.duration_s))


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python's connection chatter
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    quiet_retried_kafka_errors()
    agent = build_agent(args)
    agent.on_alert = lambda a: print(
        f"ALERT window {datetime.fromtimestamp(a.window_start_ms / 1000, UTC):%Y-%m-%d %H:%M:%S}"
        f" UTC: {a.describe()}", flush=True)
    if args.metrics_port is not None:
        agent.metrics.serve(args.metrics_port, args.metrics_host)
    print(f"privmon alerts: {len(agent.alerts.rules)} rule(s) on {agent.streams}; alerts -> "
          f"{agent.alerts.topic}" + "".join(f", {s.kind} {s.url}" for s in agent.sinks)
          + (f"; metrics on :{args.metrics_port}/metrics" if args.metrics_port else ""),
          flush=True)
    asyncio.run(_main(agent, args))
    return 0
