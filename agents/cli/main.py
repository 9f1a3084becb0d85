"""The `privmon` command: one entry point for the local Kafka, the pipeline, the demo
and the downstream tools.

Each command is a module of this package with ``register(sub)`` (its parser) and
``run(args) -> int``. Errors map to exit codes here, in one place: 2 for a bad
config, key or argument (the message names the field, the value and the fix) or
an unreachable Kafka (it says how to point at one), 3 when Kafka refused this
principal something, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys

from privmon.agents.alerts.rules import AlertConfigError
from privmon.agents.cli import (
    alerts,
    budget,
    demo,
    export,
    generate,
    kafka,
    policy,
    report,
    subscribe,
    worker,
)
from privmon.agents.cli.options import BOOTSTRAP_ENV
from privmon.agents.kafka_stage import FencedRepeatedly
from privmon.streams import kafka_errors
from privmon.streams.config import ConfigError
from privmon.streams.pseudonym import KeyConfigError
from privmon.streams.topics import TopicLayoutError

COMMANDS = (kafka, demo, worker, generate, subscribe, export, alerts, report, budget, policy)
# What a user can fix: exit 2 with "privmon <command>: <message>" (no traceback).
USAGE_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, AlertConfigError, KeyConfigError, TopicLayoutError, LookupError, ValueError,
    FencedRepeatedly,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="privmon",
        description=(
            "privmon: privacy-preserving monitoring. Raw telemetry in Kafka becomes "
            "only aggregate, k-thresholded, differentially private releases."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `privmon budget | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if kafka_errors.refused(exc):  # say which ACLs are missing, exit 3
            print(kafka_errors.refusal_message(args.command, exc), file=sys.stderr)
            return 3
        if kafka_errors.unreachable(exc):
            where = getattr(args, "bootstrap", None) or "the bootstrap servers"
            print(f"privmon {args.command}: cannot reach Kafka at {where} "
                  f"({type(exc).__name__}: {exc}). Start it (`privmon kafka start`), or pass "
                  f"--bootstrap HOST:PORT or set ${BOOTSTRAP_ENV}. A broker that wants TLS or "
                  "SASL needs --tls-ca (and --tls-cert/--tls-key for mutual TLS) or "
                  "--sasl-user.", file=sys.stderr)
            return 2
        if isinstance(exc, USAGE_ERRORS):
            print(f"privmon {args.command}: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
