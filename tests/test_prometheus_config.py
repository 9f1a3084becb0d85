"""The shipped Prometheus configuration (configs/prometheus/), checked by the real
promtool: the config, the rules, and the rules' unit tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.oncall_programs import program

DIR = Path(__file__).resolve().parents[1] / "configs" / "prometheus"


@pytest.mark.parametrize("args", [
    ["check", "config", "prometheus.yml"],
    ["check", "rules", "privmon_rules.yml"],
    ["test", "rules", "privmon_rules_test.yml"],
])
def test_promtool_accepts_the_shipped_configuration(args):
    out = subprocess.run([program("promtool"), *args], cwd=DIR, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_the_rule_tests_can_fail(tmp_path):
    """Negative control: the same unit tests against a wrong expectation fail."""
    (tmp_path / "privmon_rules.yml").write_text((DIR / "privmon_rules.yml").read_text())
    wrong = (DIR / "privmon_rules_test.yml").read_text().replace(
        'summary: "error rate of fra-03 (eu) above 5% beyond the noise"',
        'summary: "error rate of fra-01 (eu) above 5% beyond the noise"')
    (tmp_path / "t.yml").write_text(wrong)
    out = subprocess.run([program("promtool"), "test", "rules", "t.yml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode != 0 and "FAILED" in out.stdout + out.stderr


def test_the_compose_files_prometheus_config_is_valid(tmp_path):
    """docker/prometheus-compose.yml (the compose services' names as targets) beside
    the same rules, as compose mounts them."""
    repo = DIR.parents[1]
    (tmp_path / "prometheus.yml").write_text((repo / "docker/prometheus-compose.yml").read_text())
    (tmp_path / "privmon_rules.yml").write_text((DIR / "privmon_rules.yml").read_text())
    out = subprocess.run([program("promtool"), "check", "config", "prometheus.yml"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
