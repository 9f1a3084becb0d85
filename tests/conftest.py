"""Shared fixtures: one real local Kafka broker per test session.

Tests under tests/integration/ are marked `kafka` and run after all other
tests. The broker is started on first use; if it cannot start, the fixture
raises, so those tests error (they never skip).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from privmon.streams.localkafka.cluster import LocalKafka


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.kafka)
    # Fast tests first, then the ones needing the broker (sort is stable).
    items.sort(key=lambda item: item.get_closest_marker("kafka") is not None)


def _say(config: pytest.Config, line: str) -> None:
    """Print to the terminal even while pytest captures output (fd-level)."""
    reporter = config.pluginmanager.getplugin("terminalreporter")
    capture = config.pluginmanager.getplugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="session")
def kafka_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalKafka]:
    """A real single-node Apache Kafka (KRaft), shared by the whole session."""
    cluster = LocalKafka(
        name="pytest", state_root=tmp_path_factory.mktemp("kafka"), nodes=1, num_partitions=4
    )
    started = time.monotonic()
    _say(request.config, "\n[kafka] starting local Apache Kafka broker for this test session ...")
    bootstrap = cluster.start(timeout_s=180)
    _say(request.config, f"[kafka] broker up at {bootstrap} in {time.monotonic() - started:.1f}s")
    yield cluster
    cluster.stop(purge=True)
    _say(request.config, "\n[kafka] broker stopped")


@pytest.fixture(scope="session")
def bootstrap(kafka_cluster: LocalKafka) -> str:
    return kafka_cluster.bootstrap_servers


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name unique to the test (the broker is shared)."""
    safe = "".join(c if c.isalnum() else "-" for c in request.node.name)[:80]
    return f"t-{safe}-{time.monotonic_ns() % 10**9}"


FIGURES = pytest.StashKey[list[tuple[str, str]]]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record a measured figure (fault counts, recovery times, corpus size): listed
    under "privmon figures" at the end of every run, so CI logs carry them."""
    lines = request.config.stash.setdefault(FIGURES, [])
    return lambda text: lines.append((request.node.name, text))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("privmon figures")
        for test, text in lines:
            terminalreporter.write_line(f"{test}: {text}")
