"""The real programs on-call engineers run beside privmon, for the tests: Prometheus,
promtool, Alertmanager and headless Chromium, from Debian's packages (installed by
``make test`` through tests/install_system_packages.sh). A program that is missing
or does not start fails the test that needs it; nothing is skipped or stood in for."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from privmon.streams.localkafka.procs import free_port
from tests.integration.pipeline_harness import stop_worker

INSTALL = "run `make test` (or `bash tests/install_system_packages.sh` as root) to install it"


def program(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: {INSTALL}"
    return path


def version(name: str) -> str:
    out = subprocess.run([program(name), "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).splitlines()[0]


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _wait_ready(proc: subprocess.Popen, url: str, log: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{what} exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{what} did not answer {url} in 60 s:\n{log.read_text()[-3000:]}")


@contextmanager
def _serving(log: Path, what: str, port: int, cmd: list[str]) -> Iterator[str]:
    """Run ``cmd`` (logging to ``log``) until it answers /-/ready on ``port``; its base
    URL while the block runs; then stop it."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, f"{url}/-/ready", log, what)
        yield url
    finally:
        stop_worker(proc)  # (any process: SIGTERM, SIGKILL after 30 s)


@contextmanager
def alertmanager(workdir: Path) -> Iterator[str]:
    """A real Alertmanager on a free loopback port (no cluster gossip); its base URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    config.write_text("route:\n  receiver: 'null'\n  group_wait: 1s\n"
                      "receivers:\n  - name: 'null'\n")
    port = free_port()
    with _serving(workdir / "alertmanager.log", "Alertmanager", port, [
            program("prometheus-alertmanager"), f"--config.file={config}",
            f"--storage.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address="]) as url:
        yield url


@contextmanager
def prometheus(workdir: Path, targets: dict[str, list[str]], *,
               rules: Path | None = None, interval_ms: int = 1000) -> Iterator[str]:
    """A real Prometheus scraping ``targets`` (job -> host:port list) every
    ``interval_ms``, with ``rules`` if given; its base URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = "".join(f"  - job_name: {job}\n    static_configs:\n      - targets: {json.dumps(t)}\n"
                   for job, t in targets.items())
    rule_files = f"rule_files:\n  - {rules}\n" if rules else ""
    config = workdir / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: {interval_ms}ms\n  evaluation_interval: "
                      f"{interval_ms}ms\n{rule_files}scrape_configs:\n{jobs}")
    port = free_port()
    with _serving(workdir / "prometheus.log", "Prometheus", port, [
            program("prometheus"), f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}"]) as url:
        yield url


def promtool_check_metrics(scrape: str) -> subprocess.CompletedProcess:
    """``promtool check metrics`` on one scrape (exit 0: clean)."""
    return subprocess.run([program("promtool"), "check", "metrics"], input=scrape,
                          capture_output=True, text=True)


@contextmanager
def chromium() -> Iterator[object]:
    """Headless Debian Chromium driven by its chromedriver (selenium WebDriver), with
    the browser console captured (``driver.get_log("browser")``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = program("chromium")
    # As root, in a closed network: no sandbox, no GPU, no background connections.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(program("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()
