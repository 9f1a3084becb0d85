"""The `privmon` command: one entry point for the local Kafka, the demo and tools."""

from __future__ import annotations

import argparse
import sys

from agents import (
    alerts_cmd,
    budget_cmd,
    demo_cmd,
    kafka_cmd,
    pipeline_cmd,
    report_cmd,
    subscribe_cmd,
)
from streams import kafka_errors
from streams.topics import TopicLayoutError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="privmon",
        description=(
            "privmon: privacy-preserving monitoring. Raw telemetry in Kafka becomes "
            "only aggregate, k-thresholded, differentially private releases."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    kafka_cmd.add_parser(sub)
    demo_cmd.add_parser(sub)
    pipeline_cmd.add_parsers(sub)
    subscribe_cmd.add_parsers(sub)
    alerts_cmd.add_parser(sub)
    report_cmd.add_parser(sub)
    budget_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except TopicLayoutError as exc:
        print(f"privmon {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not kafka_errors.refused(exc):
            raise
        # Kafka refused this principal something: say which ACLs are missing, exit 3.
        print(kafka_errors.refusal_message(args.command, exc), file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
