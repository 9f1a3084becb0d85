"""Command-line options shared by the commands that talk to a privmon deployment."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from privmon.streams.config import DEFAULT_PATH
from privmon.streams.localkafka import security

BOOTSTRAP_ENV = "PRIVMON_BOOTSTRAP"


def add_deployment_options(p: argparse.ArgumentParser) -> None:
    """--bootstrap, --config, --topic-prefix and --sasl-user."""
    p.add_argument("--bootstrap", default=os.environ.get(BOOTSTRAP_ENV, "127.0.0.1:9092"),
                   help=f"Kafka bootstrap servers (default ${BOOTSTRAP_ENV} or 127.0.0.1:9092; "
                   "now %(default)s)")
    p.add_argument("--config", type=Path, default=DEFAULT_PATH,
                   help="pipeline config naming the streams and topics (TOML; default "
                   "%(default)s)")
    p.add_argument("--topic-prefix", default="", help="prefix of the pipeline's topics, if any")
    p.add_argument("--sasl-user", default=None,
                   help=f"authenticate as this user; password in ${security.PASSWORD_ENV}")


def kafka_options(args: argparse.Namespace) -> dict[str, str]:
    """Client security settings for --sasl-user (raises ValueError without a password)."""
    return security.options_for(args.sasl_user, os.environ)


def stop_event(duration_s: float | None = None) -> asyncio.Event:
    """An event set on SIGINT/SIGTERM or after ``duration_s`` (call inside a loop): how
    every long-running command stops cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration_s is not None:
        loop.call_later(duration_s, stop.set)
    return stop
