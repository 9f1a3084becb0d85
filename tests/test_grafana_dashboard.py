"""The Grafana dashboard (docker/grafana/) queries only recording rules that the
promtool unit tests cover, so what it draws is tested without a Grafana here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "configs" / "prometheus"


def _exprs() -> list[str]:
    dash = json.loads((REPO / "docker/grafana/dashboards/privmon-monitoring.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def test_every_dashboard_query_is_a_tested_recording_rule():
    recorded = {r["record"] for g in yaml.safe_load((RULES / "privmon_rules.yml").read_text())
                ["groups"] for r in g["rules"] if "record" in r}
    tested = {t["expr"] for case in yaml.safe_load(
        (RULES / "privmon_rules_test.yml").read_text())["tests"]
        for t in case.get("promql_expr_test", [])}
    exprs = _exprs()
    assert exprs
    for expr in exprs:
        assert re.fullmatch(r"[a-z_:0-9]+", expr), f"not a plain recorded series: {expr}"
        assert expr in recorded, expr
        assert expr in tested, f"{expr}: no promql_expr_test in privmon_rules_test.yml"


def test_bands_are_drawn_between_the_interval_ends_and_gaps_stay_gaps():
    dash = json.loads((REPO / "docker/grafana/dashboards/privmon-monitoring.json").read_text())
    bands = [p for p in dash["panels"] if len(p["targets"]) == 3]
    assert len(bands) == 3
    for p in bands:
        assert [t["expr"].rsplit(":", 1)[1] for t in p["targets"]] == [
            "value", "ci95_low", "ci95_high"]
        assert p["fieldConfig"]["defaults"]["custom"]["spanNulls"] is False
        fill = [o for o in p["fieldConfig"]["overrides"]
                if {"id": "custom.fillBelowTo", "value": "B"} in o["properties"]]
        assert fill and fill[0]["matcher"]["options"] == "C"
