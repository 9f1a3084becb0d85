"""Alert rules on released records with known noise: real incidents fire, noise
alone fires no more often than the documented bound.

Records come from the real release path (privacy.release.release_window) on
cell totals we choose, so the noise is the pipeline's own. Statistical checks
use a binomial bound with false-failure rate 1e-4 each; seeds are fixed so a
run is reproducible.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from privmon.agents.alerts.rules import (
    AlertConfig,
    AlertConfigError,
    AlertRule,
    Evaluator,
    critical_z,
    load_alert_config,
)
from privmon.privacy.accumulators import CellTotals
from privmon.privacy.records import MetricValue, PrivacyMetadata, ReleaseRecord
from privmon.privacy.release import release_window
from privmon.streams.config import load_config
from tests.privacy.keyed import window_noise
from tests.privacy.policies import make_policy

FALSE_FAILURE = 1e-4
CELLS = 400


def policy_for(mechanism: str):
    base = make_policy(mechanism=mechanism, epsilon=1.0, rho=0.5 if mechanism == "gaussian"
                       else None, histogram=False, max_events_per_cell=4, max_cells=1,
                       max_epsilon=1e6)
    return dataclasses.replace(base, name="monitoring", dimensions=("server", "region"))


def labels(n_regions: int = 1):
    return lambda c: {"server": f"s{c:04d}", "region": f"r{c % n_regions}"}


def totals(n: int, *, accounts: int, events: int, errors: int) -> CellTotals:
    return CellTotals(
        cells=np.arange(n, dtype=np.int64),
        accounts=np.full(n, accounts, np.int64),
        events=np.full(n, events, np.int64),
        columns={"latency": np.zeros(n, np.int64), "errors": np.full(n, errors, np.int64)},
    )


def releases(policy, t: CellTotals, draws: int, seed: int, n_regions: int = 1):
    for i in range(draws):
        rel = release_window(t, policy, window_start_ms=i * policy.window_ms,
                             cell_labels=labels(n_regions),
                             noise=window_noise(seed, i * policy.window_ms))
        assert len(rel.records) == len(t)  # far above the selection threshold
        yield i * policy.window_ms, rel.records


def fire_bound(n: int, alpha: float) -> int:
    """Largest number of fires that a correct rule exceeds with probability < 1e-4."""
    return int(stats.binom.ppf(1 - FALSE_FAILURE, n, alpha))


def rate_rule(**kw) -> AlertRule:
    return AlertRule(name="err", stream="monitoring", metric="errors.rate",
                     condition="above", threshold=0.05, confidence=0.99, **kw)


def count_fires(policy, rule: AlertRule, t: CellTotals, draws: int, seed: int) -> tuple[int, int]:
    ev = Evaluator(AlertConfig(topic="a", rules=(rule,)), [policy])
    fired = evaluated = 0
    for start, records in releases(policy, t, draws, seed):
        fired += len(ev.evaluate("monitoring", start, records))
        evaluated += len(records)
    return fired, evaluated


@pytest.mark.parametrize("mechanism", ["geometric", "gaussian"])
def test_noise_alone_fires_at_most_alpha_at_the_threshold(mechanism):
    # Worst case for a one-sided test: the true error rate is exactly 5%.
    policy = policy_for(mechanism)
    t = totals(CELLS, accounts=1000, events=2000, errors=100)
    draws = 25
    fired, n = count_fires(policy, rate_rule(), t, draws=draws, seed=11)
    assert n == draws * CELLS
    assert fired <= fire_bound(n, 0.01), f"{fired} of {n} fired; bound alpha = 0.01"


@pytest.mark.parametrize("mechanism", ["geometric", "gaussian"])
def test_naive_threshold_alerting_fails_the_same_check(mechanism):
    # Comparing the noisy value with the threshold (no confidence) fires about
    # half of the time at the boundary: the check above must catch that.
    policy = policy_for(mechanism)
    t = totals(CELLS, accounts=1000, events=2000, errors=100)
    naive = dataclasses.replace(rate_rule(), confidence=0.51)  # z ~ 0.02
    fired, n = count_fires(policy, naive, t, draws=1, seed=12)
    assert fired > fire_bound(n, 0.01)


def test_count_rule_noise_rate_is_exact_distribution_bound():
    # A count is one geometric draw: the Laplace-tail z must hold without approximation.
    policy = policy_for("geometric")
    t = totals(CELLS, accounts=1000, events=2000, errors=100)
    rule = AlertRule(name="ev", stream="monitoring", metric="events", condition="below",
                     threshold=2000, confidence=0.95)
    fired, n = count_fires(policy, rule, t, draws=25, seed=13)
    assert fired <= fire_bound(n, 0.05)


@pytest.mark.parametrize("mechanism", ["geometric", "gaussian"])
def test_a_real_incident_fires(mechanism):
    # 27% errors in 580-account cells (the demo's incident): the value is > 15 noise
    # std above 5% + z std, so missing one is not a plausible noise outcome.
    policy = policy_for(mechanism)
    t = totals(50, accounts=580, events=1250, errors=340)
    fired, n = count_fires(policy, rate_rule(), t, draws=2, seed=14)
    assert fired == n == 100


def test_drop_rule_fires_on_a_real_drop_and_rarely_on_noise():
    policy = policy_for("geometric")
    rule = AlertRule(name="halved", stream="monitoring", metric="events", condition="drop",
                     group_by=("region",), ratio=0.5, baseline_ms=policy.window_ms,
                     confidence=0.99)
    draw = itertools.count()

    def window(i: int, events: int):
        t = totals(CELLS, accounts=1000, events=events, errors=0)
        return release_window(t, policy, window_start_ms=i * policy.window_ms,
                              cell_labels=labels(n_regions=40),
                              noise=window_noise((15, next(draw)))).records

    # Noise only: each window has exactly half the events of the one before (boundary).
    ev = Evaluator(AlertConfig(topic="a", rules=(rule,)), [policy])
    fired = evaluated = 0
    events = 4096
    for i in range(12):
        fired += len(ev.evaluate("monitoring", i * policy.window_ms, window(i, events)))
        evaluated += 40 if i else 0
        events //= 2
    assert fired <= fire_bound(evaluated, 0.01)
    # A real drop: 2000 -> 400 events per server, every one of the 40 regions fires.
    ev = Evaluator(AlertConfig(topic="a", rules=(rule,)), [policy])
    assert ev.evaluate("monitoring", 0, window(0, 2000)) == []  # no baseline yet
    alerts = ev.evaluate("monitoring", policy.window_ms, window(1, 400))
    assert sorted(a.cell["region"] for a in alerts) == sorted(f"r{i}" for i in range(40))
    a = alerts[0]
    assert a.baseline is not None and a.baseline.value > 2 * a.value.value
    assert set(a.cell) == {"region"}


def _record(start: int, server: str, rate: float, std: float = 0.01) -> ReleaseRecord:
    meta = PrivacyMetadata(unit="account", mechanism="geometric", epsilon=1.0, delta=1e-6,
                           rho=None, k=10, max_cells=1, max_events_per_cell=4, ranges={},
                           selection_threshold=20, policy_version="t")
    mv = MetricValue(value=rate, noise_std=std, ci95_low=rate - 2 * std, ci95_high=rate + 2 * std)
    return ReleaseRecord(stream="monitoring", window_start_ms=start, window_end_ms=start + 60_000,
                         cell={"server": server, "region": "eu"}, metrics={"errors.rate": mv},
                         privacy=meta)


def test_for_windows_needs_consecutive_released_windows():
    policy = policy_for("geometric")
    ev = Evaluator(AlertConfig(topic="a", rules=(rate_rule(for_windows=2),)), [policy])
    w = policy.window_ms
    assert ev.evaluate("monitoring", 0, [_record(0, "a", 0.30)]) == []
    fired = ev.evaluate("monitoring", w, [_record(w, "a", 0.30)])
    assert [(a.cell["server"], a.window_start_ms) for a in fired] == [("a", w)]
    # The cell is missing (not released) in window 3: the streak restarts at window 4.
    assert ev.evaluate("monitoring", 3 * w, [_record(3 * w, "b", 0.0)]) == []
    assert ev.evaluate("monitoring", 4 * w, [_record(4 * w, "a", 0.30)]) == []
    assert len(ev.evaluate("monitoring", 5 * w, [_record(5 * w, "a", 0.30)])) == 1
    # Just above the threshold but within the noise: no alert.
    assert ev.evaluate("monitoring", 6 * w, [_record(6 * w, "a", 0.07)]) == []


def test_a_cell_that_was_not_released_cannot_fire():
    # Cell 0 has 5 accounts (under k = 10) and every event an error; the others are healthy.
    policy = policy_for("geometric")
    t = CellTotals(cells=np.arange(3, dtype=np.int64), accounts=np.array([5, 900, 900]),
                   events=np.array([20, 1800, 1800]),
                   columns={"latency": np.zeros(3, np.int64),
                            "errors": np.array([20, 0, 900])})
    ev = Evaluator(AlertConfig(topic="a", rules=(rate_rule(),)), [policy])
    rel = release_window(t, policy, window_start_ms=0, cell_labels=labels(),
                         noise=window_noise(3))
    assert "s0000" not in {r.cell["server"] for r in rel.records}  # under k
    fired = ev.evaluate("monitoring", 0, rel.records)
    assert [a.cell["server"] for a in fired] == ["s0002"]
    d = fired[0].to_dict()
    assert d["schema"] == "privmon.alert/1" and d["false_alarm_bound"] == pytest.approx(0.01)
    assert d["value"]["ci95_low"] > 0.05 and "confidence 0.99" in d["description"]


def test_critical_values():
    assert critical_z("gaussian", 0.025) == pytest.approx(1.959964, abs=1e-6)
    # Laplace: P(X > z sd) = exp(-sqrt(2) z) / 2 = alpha
    z = critical_z("geometric", 0.01)
    assert 0.5 * np.exp(-np.sqrt(2) * z) == pytest.approx(0.01)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(text)
    return path


RULE = '''[[rules]]
name = "r"
stream = "monitoring"
metric = "{metric}"
condition = "{condition}"
{extra}
'''


@pytest.mark.parametrize(("metric", "condition", "extra", "message"), [
    ("errors.ratio", "above", "threshold = 0.05", "metric = 'errors.ratio': stream monitoring"),
    ("errors.rate", "over", "threshold = 0.05", "condition = 'over': expected 'above'"),
    ("errors.rate", "above", "threshold = 0.05\nconfidence = 1.5", "confidence = 1.5"),
    ("events", "drop", "baseline_ms = 60000", "ratio = None: a drop rule needs ratio"),
    ("errors.rate", "above", "threshold = 0.05\ngroup_by = ['region']",
     "needs an additive metric"),
    ("events", "above", "threshold = 5\nwhere = { host = 'x' }", "dimension 'host'"),
    ("events", "above", "threshold = 5\nthreshhold = 4", "unknown key(s) ['threshhold']"),
])
def test_bad_rule_files_name_the_field_and_the_fix(tmp_path, metric, condition, extra, message):
    path = write(tmp_path, RULE.format(metric=metric, condition=condition, extra=extra))
    with pytest.raises(AlertConfigError) as err:
        load_alert_config(path, load_config())
    assert message in str(err.value)


def test_shipped_rule_files_load():
    assert len(load_alert_config("configs/alerts.toml", load_config()).rules) == 2
    demo = load_alert_config("configs/demo_alerts.toml", load_config("configs/demo.toml"))
    assert demo.streams == ("monitoring",)


def test_a_fired_rule_resolves_in_the_first_window_it_no_longer_holds():
    """Exact (far from the threshold: the noise cannot flip it with any practical
    probability at these counts): 3 failing windows fire from the 2nd, the 4th is
    healthy and resolves it, once; a healthy cell never fires nor resolves."""
    policy = policy_for("geometric")
    ev = Evaluator(AlertConfig(topic="a", rules=(rate_rule(for_windows=2),)), [policy])
    failing = totals(2, accounts=1000, events=2000, errors=1000)  # 50% errors
    healthy = totals(2, accounts=1000, events=2000, errors=0)
    fired, resolved = [], []
    for i, t in enumerate([failing, failing, failing, healthy, healthy]):
        start = i * policy.window_ms
        rel = release_window(t, policy, window_start_ms=start, cell_labels=labels(),
                             noise=window_noise(5, start))
        fired.append(len(ev.evaluate("monitoring", start, rel.records)))
        resolved.append([(r.alert.window_start_ms, r.window_start_ms, r.alert.cell["server"])
                         for r in ev.resolved])
    assert fired == [0, 2, 2, 0, 0]
    w = policy.window_ms
    assert resolved == [[], [], [], [(2 * w, 3 * w, "s0000"), (2 * w, 3 * w, "s0001")], []]
    assert ev.firing == {}
