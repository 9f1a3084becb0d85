"""Command-line options shared by the commands that talk to a privmon deployment."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path

from privmon.streams import kafka_client
from privmon.streams.config import DEFAULT_PATH

BOOTSTRAP_ENV = kafka_client.BOOTSTRAP_ENV


def add_deployment_options(p: argparse.ArgumentParser) -> None:
    """--bootstrap, --config, --topic-prefix and the connection options."""
    p.add_argument("--bootstrap", default=kafka_client.default_bootstrap(os.environ),
                   help=f"Kafka bootstrap servers (default ${BOOTSTRAP_ENV} or 127.0.0.1:9092; "
                   "now %(default)s)")
    p.add_argument("--config", type=Path, default=DEFAULT_PATH,
                   help="pipeline config naming the streams and topics (TOML; default "
                   "%(default)s)")
    p.add_argument("--topic-prefix", default="", help="prefix of the pipeline's topics, if any")
    add_connection_options(p)


def add_connection_options(p: argparse.ArgumentParser, *, sasl_user_help: str | None = None
                           ) -> None:
    """How to connect (streams/kafka_client.py): PLAINTEXT by default; --sasl-user for
    SASL; --tls, --tls-ca or a client certificate for TLS; both for SASL_SSL."""
    g = p.add_argument_group(
        "connection", "PLAINTEXT unless told otherwise. Secrets come from the environment "
        "only, never from flags.")
    g.add_argument("--sasl-user", default=None, help=sasl_user_help or (
        f"authenticate with SASL as this user; password in ${kafka_client.PASSWORD_ENV}"))
    g.add_argument("--sasl-mechanism", default="SCRAM-SHA-256",
                   choices=kafka_client.MECHANISMS, help="SASL mechanism (default %(default)s)")
    g.add_argument("--tls", action="store_true",
                   help="connect with TLS, verifying the broker against the system's CAs")
    g.add_argument("--tls-ca", default=None, metavar="PEM",
                   help=f"CA certificate(s) to verify the broker with (implies TLS; default "
                   f"${kafka_client.CA_ENV})")
    g.add_argument("--tls-cert", default=None, metavar="PEM",
                   help=f"client certificate for mutual TLS (default ${kafka_client.CERT_ENV}); "
                   "needs --tls-key")
    g.add_argument("--tls-key", default=None, metavar="PEM",
                   help=f"its private key (default ${kafka_client.KEY_ENV}; passphrase in "
                   f"${kafka_client.KEY_PASSWORD_ENV})")


def client_security(args: argparse.Namespace) -> kafka_client.ClientSecurity:
    """The connection the flags and the environment ask for (raises ClientSecurityError,
    a ValueError: exit 2, naming the flag)."""
    return kafka_client.from_settings(
        sasl_user=args.sasl_user, sasl_mechanism=args.sasl_mechanism, tls=args.tls,
        ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key,
        environ=os.environ)


def kafka_options(args: argparse.Namespace) -> dict[str, object]:
    """Client keyword arguments for the connection options (see client_security)."""
    return client_security(args).options()


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


class _RetriedKafkaErrors(logging.Filter):
    """Drops aiokafka's ERROR lines about errors it retries itself (a coordinator not
    yet elected, a leader moving while a topic is new): transient at every start, not
    something to act on. aiokafka raises what it gives up on; that is still shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiokafka") or record.levelno < logging.ERROR:
            return True
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        return not any(getattr(a, "retriable", False) for a in args)


def quiet_retried_kafka_errors() -> None:
    """Install the filter on the root handlers (a logger's own filters do not reach the
    records of its children, e.g. aiokafka.consumer.group_coordinator)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in root.handlers:
        if not any(isinstance(f, _RetriedKafkaErrors) for f in handler.filters):
            handler.addFilter(_RetriedKafkaErrors())
