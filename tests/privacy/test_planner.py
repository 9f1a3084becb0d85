"""The planner (privmon policy explain): its figures against the real release path."""

from __future__ import annotations

import dataclasses
import json
import math
from types import MappingProxyType

import numpy as np
import pytest

from privmon.agents.cli.main import main
from privmon.privacy.accumulators import CellTotals
from privmon.privacy.planner import (
    accounts_for_relative_error,
    accounts_for_release,
    explain,
    release_probability,
    spreads,
)
from privmon.privacy.release import release_window
from privmon.streams.config import load_config
from tests.privacy.keyed import window_noise

CONFIG = load_config()
DRAWS = 1500
# |observed - p| > 4.42 binomial sd: false-failure rate 1e-5 per check (normal approx.).
Z = 4.42


def _full_rate(policy, accounts: int) -> float:
    cell = policy.public_cells[0] if policy.public_cells else ("eu-central", "5.2.1", "chrome")
    totals = CellTotals(
        cells=np.zeros(1, np.int64), accounts=np.array([accounts], np.int64),
        events=np.array([accounts * 10], np.int64),
        columns=MappingProxyType({m.name: np.zeros((1, *m.buckets), np.int64)
                                  for m in policy.metrics}))
    full = 0
    for seed in range(DRAWS):
        rel = release_window(totals, policy, window_start_ms=0,
                             cell_labels=lambda _: dict(zip(policy.dimensions, cell, strict=True)),
                             noise=window_noise(seed, 0, policy.name))
        full += sum(1 for r in rel.records if not r.under_k)
    return full / DRAWS


@pytest.mark.parametrize(("stream", "accounts"), [("monitoring", 20), ("monitoring", 80),
                                                  ("research", 131), ("research", 135)])
def test_release_probability_is_what_the_release_path_does(stream: str, accounts: int):
    policy = CONFIG.policy(stream)
    p = release_probability(policy, accounts)
    observed = _full_rate(policy, accounts)
    assert abs(observed - p) <= Z * math.sqrt(p * (1 - p) / DRAWS) + 1e-9, (observed, p)


def test_accounts_for_release_is_the_smallest_such_size():
    for policy in CONFIG.policies:
        for target in (0.5, 0.95):
            n = accounts_for_release(policy, target)
            assert release_probability(policy, n) >= target > release_probability(policy, n - 1)
    research = CONFIG.policy("research")
    assert (accounts_for_release(research, 0.5), accounts_for_release(research, 0.95)) == (
        131, 142)  # PipelineDP's truncated geometric selection at these parameters
    noisy = dataclasses.replace(research, selection="noisy_threshold")
    assert (accounts_for_release(noisy, 0.5), accounts_for_release(noisy, 0.95)) == (140, 151)
    monitoring = CONFIG.policy("monitoring")  # public cells: the noisy count against k
    assert accounts_for_release(monitoring, 0.5) == monitoring.k


def test_relative_error_size_is_the_smallest_that_meets_the_target():
    policy = CONFIG.policy("monitoring")
    for name in ("events", "latency.sum", "errors.rate", "accounts"):
        n = accounts_for_relative_error(policy, name, target=0.1, events_per_account=10,
                                        rate=0.1)
        at = spreads(policy, n, events_per_account=10, rate=0.1, only=name)[name]
        before = spreads(policy, n - 1, events_per_account=10, rate=0.1, only=name)[name]
        assert at.half <= 0.1 * abs(at.true) and before.half > 0.1 * abs(before.true), name
    # a count's half-width is the noise's: events = 10 n, so n = half / (0.1 * 10)
    ev = spreads(policy, 1, events_per_account=10, rate=0.1)["events"]
    assert accounts_for_relative_error(policy, "events", target=0.1, events_per_account=10,
                                       rate=0.1) == math.ceil(ev.half / 1.0)


def test_the_whole_system_guarantee_is_within_the_issue_target():
    rep = explain(CONFIG.policies, CONFIG.global_caps)
    day = next(h for h in rep["all_streams"] if h["horizon_ms"] == 86_400_000)
    assert day["delta"] <= 1e-6 and day["epsilon"] <= 20 and day["within_cap"]
    assert day["basic_epsilon"] > 3 * day["epsilon"]


def test_policy_explain_prints_text_and_json(capsys):
    assert main(["policy", "explain"]) == 0
    text = capsys.readouterr().out
    assert "monitoring: 1 min windows by server, region" in text
    assert "published in full in 50% / 95% of windows from 20 /" in text
    assert "all streams together:" in text and "basic composition" in text
    assert main(["policy", "explain", "research", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [s["stream"] for s in rep["streams"]] == ["research"]
    assert rep["streams"][0]["accounts_for_release"] == {"50%": 131, "95%": 142}
    assert main(["policy", "explain", "nope"]) == 2
    assert "no release stream 'nope'" in capsys.readouterr().err
