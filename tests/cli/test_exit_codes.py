"""The CLI maps errors to exit codes in one place (agents/cli/main.py) and says what
to do; no traceback and no unclosed client for a user's mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOWHERE = "127.0.0.1:1"  # nothing listens on port 1: the connection is refused at once


def _privmon(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "privmon.agents.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("command", [["budget"], ["export", "monitoring", "--since", "1h"],
                                     ["subscribe", "monitoring", "--duration-s", "5"],
                                     ["report", "capacity", "--days", "1"],
                                     ["alerts", "--duration-s", "5"],
                                     ["generate", "--duration-s", "5"],
                                     ["worker"], ["worker", "--stages", "1"],
                                     ["worker", "--stages", "2"]])
def test_an_unreachable_broker_says_how_to_point_at_one(command):
    keys = {"PRIVMON_PSEUDONYM_KEYS": "2026-01-01=" + "5a" * 32,
            "PRIVMON_NOISE_KEYS": "2026-01-01=" + "6b" * 32}  # (the worker checks them first)
    out = _privmon(*command, "--bootstrap", NOWHERE, env={**os.environ, **keys})
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"privmon {command[0]}: cannot reach Kafka at {NOWHERE}" in out.stderr
    assert "--bootstrap HOST:PORT or set $PRIVMON_BOOTSTRAP" in out.stderr
    assert "Traceback" not in out.stderr and "Unclosed" not in out.stderr


def test_the_bootstrap_default_comes_from_the_environment():
    import os

    out = _privmon("budget", env={**os.environ, "PRIVMON_BOOTSTRAP": NOWHERE})
    assert out.returncode == 2 and f"cannot reach Kafka at {NOWHERE}" in out.stderr


def test_a_bad_config_names_the_file_and_exits_2(tmp_path):
    out = _privmon("worker", "--config", str(tmp_path / "none.toml"))
    assert out.returncode == 2
    assert out.stderr.startswith(f"privmon worker: {tmp_path / 'none.toml'}: not found")


def test_every_deployment_command_takes_the_same_options():
    for command in ("worker", "generate", "subscribe", "export", "alerts", "report", "budget"):
        text = _privmon(command, "--help").stdout
        for option in ("--bootstrap", "--config", "--topic-prefix", "--sasl-user"):
            assert option in text, (command, option)


def test_every_default_config_path_exists():
    """The defaults are found from one place (streams/config.py CONFIG_DIR); a module
    that moved must not look for configs/ beside itself."""
    from privmon.agents.alerts.rules import DEFAULT_ALERTS
    from privmon.agents.cli.demo import DEMO_ALERTS, DEMO_CONFIG
    from privmon.streams.acls import DEFAULT_ACLS
    from privmon.streams.config import DEFAULT_PATH

    for path in (DEFAULT_PATH, DEMO_CONFIG, DEMO_ALERTS, DEFAULT_ALERTS, DEFAULT_ACLS):
        assert path.is_file(), path


def test_privmon_config_names_the_default_config_file_or_directory(tmp_path):
    """$PRIVMON_CONFIG: a pipeline config file is every command's default --config; a
    directory of configs replaces the shipped ones."""
    demo = REPO / "configs" / "demo.toml"
    wide = {**os.environ, "COLUMNS": "1000"}  # (argparse would wrap the paths at hyphens)
    out = subprocess.run([sys.executable, "-m", "privmon.agents.cli", "export", "--help"],
                         cwd=tmp_path, env={**wide, "PRIVMON_CONFIG": str(demo)},
                         capture_output=True, text=True)
    assert out.returncode == 0 and f"default {demo})" in " ".join(out.stdout.split())
    (tmp_path / "streams.toml").write_text(demo.read_text())
    out = subprocess.run([sys.executable, "-m", "privmon.agents.cli", "budget", "--help"],
                         cwd=tmp_path, env={**wide, "PRIVMON_CONFIG": str(tmp_path)},
                         capture_output=True, text=True)
    assert f"default {tmp_path / 'streams.toml'})" in " ".join(out.stdout.split())


def test_the_demo_says_when_a_run_outlasts_the_participation_cap():
    """configs/demo.toml caps monitoring at 60 windows of 10 s a day: a run longer than
    10 minutes is told so (it used to stop releasing most accounts silently)."""
    from privmon.agents.cli.demo import DEMO_CONFIG, cap_notes
    from privmon.streams.config import load_config

    config = load_config(DEMO_CONFIG)
    assert cap_notes(config, 90) == []
    notes = cap_notes(config, 3600)
    assert any(n.startswith("note: monitoring counts an account in at most 60 windows per "
                            "24 h") and "after 600 s" in n for n in notes), notes


def test_errors_aiokafka_retries_itself_are_not_shown_others_are():
    import logging

    from aiokafka.errors import GroupCoordinatorNotAvailableError, TopicAuthorizationFailedError

    from privmon.agents.cli.options import _RetriedKafkaErrors

    def record(name: str, err: Exception, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, "Group Coordinator Request failed: "
                                 "%s", (err,), None)

    f = _RetriedKafkaErrors()
    assert not f.filter(record("aiokafka.consumer.group_coordinator",
                               GroupCoordinatorNotAvailableError()))
    assert f.filter(record("aiokafka.consumer.group_coordinator",
                           TopicAuthorizationFailedError()))  # not retried: shown
    assert f.filter(record("privmon.worker", GroupCoordinatorNotAvailableError()))


def test_a_worker_runs_stage_1_stage_2_or_both_and_nothing_else():
    from privmon.agents.worker import Worker
    from privmon.privacy.noise_keys import NoiseKeys
    from privmon.streams.config import load_config
    from privmon.streams.pseudonym import Pseudonymizer

    made = dict(config=load_config(), bootstrap=NOWHERE, worker_id="w1",
                pseudonymizer=Pseudonymizer({0: b"k" * 32}), noise_keys=NoiseKeys({0: b"n" * 32}))
    for stages in ({1}, {2}, {1, 2}):
        assert Worker(**made, stages=frozenset(stages)).stages == stages
    for stages in (set(), {3}, {1, 3}):
        with pytest.raises(ValueError, match=r"stages: expected a non-empty subset of \{1, 2\}"):
            Worker(**made, stages=frozenset(stages))
    out = _privmon("worker", "--stages", "3")
    assert out.returncode == 2 and "invalid choice: '3'" in out.stderr
