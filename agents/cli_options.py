"""Command-line options shared by the commands that talk to a privmon deployment."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from streams.config import DEFAULT_PATH
from streams.localkafka import security


def add_deployment_options(p: argparse.ArgumentParser) -> None:
    """--bootstrap, --config, --topic-prefix and --sasl-user."""
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    p.add_argument("--config", type=Path, default=DEFAULT_PATH,
                   help="pipeline config naming the streams and topics (TOML)")
    p.add_argument("--topic-prefix", default="", help="prefix of the pipeline's topics, if any")
    p.add_argument("--sasl-user", default=None,
                   help=f"authenticate as this user; password in ${security.PASSWORD_ENV}")


def kafka_options(args: argparse.Namespace) -> dict[str, str]:
    """Client security settings for --sasl-user (raises ValueError without a password)."""
    return security.options_for(args.sasl_user, os.environ)
