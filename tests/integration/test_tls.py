"""Mutual TLS on a real broker: certificates made by the test (streams/localkafka/tls.py),
the worker and an analyst connecting through streams/kafka_client.py, each principal
named by its certificate and held to its ACLs; clients without a valid certificate are
turned away."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from privmon.streams.localkafka.cluster import LocalKafka
from privmon.streams.localkafka.tls import make_pki
from tests.integration.pipeline_harness import (
    CELLS,
    REPO,
    all_released,
    can_read,
    first_window_after,
    known_input,
    make_setup,
    produce,
    start_worker,
    stop_worker,
    wait_for,
    worker_env,
)

PRINCIPALS = ["telemetry-producer", "privmon-worker", "analyst", "privmon-alerts"]


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    pki = make_pki(tmp_path_factory.mktemp("pki"), PRINCIPALS)
    cluster = LocalKafka(name="tls", state_root=tmp_path_factory.mktemp("tls"), tls=pki,
                         num_partitions=4)
    cluster.start(timeout_s=180)
    yield cluster
    cluster.stop(purge=True)


def _privmon(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "privmon.agents.cli", *args], cwd=REPO,
                          env={**worker_env(), **(env or {})}, capture_output=True,
                          text=True, timeout=120)


def _as(pki, name: str) -> list[str]:
    return ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.cert(name)),
            "--tls-key", str(pki.key(name))]


def test_worker_and_analyst_over_mutual_tls(tls_cluster, tmp_path, figures):
    pki, bootstrap = tls_cluster.tls, tls_cluster.bootstrap_servers
    setup = make_setup(tmp_path, bootstrap, "tls")
    applied = _privmon("kafka", "acl", "apply", "--bootstrap", bootstrap, "--config",
                       str(setup.config), *_as(pki, "admin"))
    assert applied.returncode == 0, applied.stderr[-2000:]

    start = first_window_after(int(time.time() * 1000), lead_ms=5000)
    truth = known_input(start, 2)
    produce(bootstrap, setup.raw, truth.messages,
            options=pki.client_options("telemetry-producer"))
    log = tmp_path / "worker.log"
    # The worker's certificate from the environment, as a deployment would pass it.
    worker = start_worker(setup, "w1", log, env={
        "PRIVMON_TLS_CA": str(pki.ca), "PRIVMON_TLS_CERT": str(pki.cert("privmon-worker")),
        "PRIVMON_TLS_KEY": str(pki.key("privmon-worker"))})
    try:
        wait_for(all_released(setup, truth, pki.client_options("analyst")), timeout_s=120,
                 what="releases by the mTLS worker", procs=[worker], log=log)
    finally:
        stop_worker(worker)

    # Each principal is its certificate's CN, held to configs/acls.toml.
    assert can_read(tls_cluster, "analyst", setup.topic("aggregates.monitoring"))
    for topic in ("telemetry.raw", "privmon.partials", "privmon.ledger"):
        assert not can_read(tls_cluster, "analyst", setup.topic(topic)), topic
    assert can_read(tls_cluster, "privmon-worker", setup.raw)

    out = tmp_path / "m.csv"
    export = _privmon("export", "monitoring", "--bootstrap", bootstrap, "--config",
                      str(setup.config), "--since", "1h", "-o", str(out), *_as(pki, "analyst"))
    assert export.returncode == 0, export.stderr[-2000:]
    rows = len(out.read_text().splitlines()) - 1
    assert rows == 2 * len(CELLS)

    # Turned away: no client certificate; a certificate of another CA; plaintext.
    stranger = make_pki(tmp_path / "stranger", ["analyst"])
    refused = {
        "no client certificate": ["--tls-ca", str(pki.ca)],
        "another CA's certificate": ["--tls-ca", str(pki.ca), "--tls-cert",
                                     str(stranger.cert("analyst")), "--tls-key",
                                     str(stranger.key("analyst"))],
        "a broker it cannot verify": _as(stranger, "analyst"),
        "plaintext": [],
    }
    for what, flags in refused.items():
        got = _privmon("export", "monitoring", "--bootstrap", bootstrap, "--config",
                       str(setup.config), "--since", "1h", "-o", str(tmp_path / "x.csv"),
                       *flags)
        assert got.returncode == 2 and "Traceback" not in got.stderr, (what, got.stderr[-2000:])
        assert not (tmp_path / "x.csv").exists(), what
    figures(f"mutual TLS: worker released {rows} cells in 2 windows; the analyst exported "
            f"them and was refused raw, partials and ledger; {len(refused)} clients without "
            "a valid certificate turned away (exit 2)")
