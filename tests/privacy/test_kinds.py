"""Metric kinds as one protocol: every kind answers it consistently, and a kind
defined here alone (no edit anywhere else) goes through bounding, accumulators,
release and the alert rules' names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from privmon.privacy import accumulators as acc
from privmon.privacy.bounding import ContributionTable, sensitivities
from privmon.privacy.columns import MetricColumn
from privmon.privacy.kinds import KINDS, BooleanMetric, HistogramMetric, ReleaseContext, ValueMetric
from privmon.privacy.mechanisms import IntegerNoise
from privmon.privacy.params import PrivacyBudget
from privmon.privacy.records import MetricValue
from privmon.privacy.release import noise_for, release_window
from tests.privacy.keyed import window_noise
from tests.privacy.policies import make_policy

EXAMPLES = {
    "value": ValueMetric(name="v", field="latency_ms", lower=0, upper=100),
    "boolean": BooleanMetric(name="b", field="error"),
    "histogram": HistogramMetric(name="h", field="latency_ms", edges=(0, 10, 100),
                                 publish_buckets=True),
}


def test_every_registered_kind_has_an_example_and_its_config_keys():
    assert set(KINDS) == set(EXAMPLES)
    for kind, cls in KINDS.items():
        assert cls.KIND == kind and isinstance(EXAMPLES[kind], cls)
        fields = {f.name for f in dataclasses.fields(cls)}
        assert cls.REQUIRED | cls.OPTIONAL == fields, kind


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_a_kind_answers_the_protocol_consistently(kind):
    m = EXAMPLES[kind]
    raw = np.array([0.0, 5.0, 50.0, 1e6])
    q = m.quantize(raw)
    assert q.dtype == np.int64 and q.shape == (4,)
    linf = 7
    col = m.sum_rows(np.array([0, 0, 1, 1]), q, 2)
    assert col.shape == (2, *m.buckets)
    # A row's column fits the declared type at the bound Linf gives.
    assert np.can_cast(np.min_scalar_type(m.per_cell_sensitivity(linf)),
                       m.column_dtype(linf)) or m.clamp_range is not None
    truth = m.true_result(col, np.array([2, 2]))
    noise = IntegerNoise.geometric(epsilon=1.0, sensitivity=m.per_cell_sensitivity(linf))
    ctx = ReleaseContext(events=np.array([2, 2]), events_std=1.0, noise=noise,
                         bootstrap_rng=lambda name: np.random.default_rng(0))
    released = m.release(col, ctx)
    assert set(released) == m.released_names()
    assert set(truth) <= m.released_names()
    assert all(isinstance(v, MetricColumn) and len(v) == 2
               and all(isinstance(x, MetricValue) for x in v.values())
               for v in released.values())


@dataclass(frozen=True, kw_only=True)
class OverThreshold:
    """A kind that exists only in this test: how many events exceed a threshold."""

    KIND: ClassVar[str] = "over_threshold"
    REQUIRED: ClassVar[frozenset[str]] = frozenset({"name", "field", "threshold"})
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()
    name: str
    field: str
    threshold: float

    clamp_range = None
    buckets: tuple[int, ...] = ()

    def quantize(self, raw):
        return (np.asarray(raw, np.float64) > self.threshold).astype(np.int64)

    def per_cell_sensitivity(self, max_events_per_cell):
        return max_events_per_cell

    def column_dtype(self, max_events_per_cell):
        return np.min_scalar_type(max_events_per_cell)

    def sum_rows(self, rows, values, size):
        return np.bincount(rows, weights=values, minlength=size).astype(np.int64)

    def true_result(self, column, events):
        return {f"{self.name}.count": column.astype(np.float64)}

    def released_names(self):
        return {f"{self.name}.count"}

    def release(self, noisy, ctx):
        s = ctx.noise.spread
        return {f"{self.name}.count": MetricColumn.around(noisy, s.std, s.ci95_half_width)}


def test_a_new_kind_needs_no_edit_outside_its_own_class():
    base = make_policy(histogram=False, epsilon=50.0)
    slow = OverThreshold(name="slow", field="latency_ms", threshold=500)
    shares = {**base.budget.shares}
    shares["slow"] = shares.pop("errors")
    policy = dataclasses.replace(
        base, metrics=(base.metrics[0], slow),
        budget=PrivacyBudget(mechanism="geometric", epsilon=50.0, delta=1e-6, shares=shares))
    assert sensitivities(policy)["slow"].per_cell == policy.bounds.max_events_per_cell
    assert noise_for(policy, "slow").kind == "geometric"

    rng = np.random.default_rng(3)
    n = 20_000
    accounts = rng.integers(0, 4000, n)
    cells = rng.integers(0, 3, n)
    latency = rng.uniform(0, 1000, n)
    table = ContributionTable(policy)
    table.add(accounts, cells, {"latency_ms": latency, "error": np.zeros(n)})
    totals = acc.add(acc.initialize(policy), table.bounded_rows(rng))
    truth = acc.result(totals, policy)["slow.count"]
    rel = release_window(totals, policy, window_start_ms=0,
                         cell_labels=lambda c: {"server": str(c)}, noise=window_noise("kind"))
    assert len(rel.records) == 3
    for i, record in enumerate(rel.records):
        value = record.metrics["slow.count"]
        # Discrete Laplace tails: P(|Z| > 10 × its 95% half-width) < 0.05^10 per cell.
        assert abs(value.value - truth[i]) <= 10 * (value.ci95_high - value.value) + 1


def test_intervals_are_clipped_to_each_quantitys_domain_consistently():
    """Counts, bucket counts and sums of a non-negative field never have an interval
    below zero, as means and rates never leave their range; the noisy value itself is
    kept (clipping it would bias sums of many cells)."""
    from types import MappingProxyType

    policy = make_policy(k=2, epsilon=0.5, max_events_per_cell=5)
    n = 200
    many = np.full(n, 1000, np.int64)  # accounts: past selection
    small = np.full(n, 20, np.int64)  # events: small against their noise
    zeros = np.zeros(n, np.int64)
    cols = {"latency": zeros, "errors": zeros,
            "latency_hist": np.zeros((n, len(policy.metrics[2].edges) - 1), np.int64)}
    totals = acc.CellTotals(cells=np.arange(n, dtype=np.int64), accounts=many,
                            events=small, columns=MappingProxyType(cols))
    rel = release_window(totals, policy, window_start_ms=0,
                         cell_labels=lambda c: {"server": str(c)}, noise=window_noise("clip"))
    assert len(rel.records) > 100
    nonneg = ("accounts", "events", "errors.count", "latency.sum")  # (latency >= 0)
    below_zero_values = 0
    for r in rel.records:
        for name, v in r.metrics.items():
            if name in nonneg or ".bucket." in name:
                assert v.ci95_low >= 0, (name, v)
                below_zero_values += v.value < 0
                low, high = v.raw_interval  # the unclipped interval is kept
                assert high == v.ci95_high and low <= v.ci95_low
                assert (low < 0) == (v.ci95_half is not None), v
                if v.ci95_half is not None:
                    assert high - v.value == v.value - low == v.ci95_half
    assert below_zero_values > 0  # the noise did draw below zero: the check saw the case
