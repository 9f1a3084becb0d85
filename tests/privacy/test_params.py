"""Privacy settings are validated at construction and fail closed."""

from __future__ import annotations

import dataclasses

import pytest

from privmon.privacy.checks import PrivacyConfigError
from privmon.privacy.kinds import HistogramMetric, ValueMetric
from privmon.privacy.params import ContributionBounds, PrivacyBudget
from tests.privacy.policies import make_policy


def test_objects_are_frozen_and_keyword_only():
    bounds = ContributionBounds(max_cells=2, max_events_per_cell=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        bounds.max_cells = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        ContributionBounds(2, 5)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("build", "fragments"),
    [
        (lambda: ContributionBounds(max_cells=0, max_events_per_cell=5),
         ["ContributionBounds.max_cells = 0", "expected an integer >= 1"]),
        (lambda: ValueMetric(name="lat", field="l", lower=10, upper=5),
         ["ValueMetric('lat').upper = 5", "expected upper > lower (10"]),
        (lambda: ValueMetric(name="lat", field="l", lower=0, upper=10.5, resolution=1),
         ["upper = 10.5", "multiple of resolution"]),
        (lambda: HistogramMetric(name="h", field="l", edges=(0, 5, 5)),
         ["HistogramMetric('h').edges", "strictly increasing"]),
        (lambda: PrivacyBudget(mechanism="geometric", epsilon=0, delta=1e-6, shares={"a": 1}),
         ["PrivacyBudget.epsilon = 0", "expected > 0"]),
        (lambda: PrivacyBudget(mechanism="geometric", epsilon=1, delta=-1e-9, shares={"a": 1}),
         ["PrivacyBudget.delta = -1e-09", "partition selection needs a delta"]),
        (lambda: make_policy(delta=0), ["budget.delta = 0", "needs a delta > 0",
                                        "public_cells"]),
        (lambda: make_policy(public_cells=(("a",),)),
         ["budget.delta = 1e-06", "public cells selects none", "delta = 0"]),
        (lambda: make_policy(delta=0, public_cells=(("a", "b"),)),
         ["public_cells", "expected tuples of 1 non-empty strings"]),
        (lambda: make_policy(delta=0, public_cells=(("b",), ("a",))),
         ["public_cells", "sorted, without duplicates"]),
        (lambda: make_policy(delta=0, public_cells=(("(unlisted)",),)),
         ["(unlisted)", "rename that cell"]),
        (lambda: PrivacyBudget(mechanism="gaussian", epsilon=1, delta=1e-6, shares={"a": 1}),
         ["PrivacyBudget.rho = None", "needs rho > 0"]),
        (lambda: PrivacyBudget(mechanism="laplace", epsilon=1, delta=1e-6, shares={"a": 1}),
         ["PrivacyBudget.mechanism = 'laplace'", "geometric", "gaussian"]),
        (lambda: PrivacyBudget(mechanism="geometric", epsilon=1, delta=1e-6,
                               shares={"a": 0.5, "b": 0.6}),
         ["PrivacyBudget.shares", "sum to 1.1", "expected 1"]),
        (lambda: make_policy(k=1), ["StreamPolicy('test').k = 1", "expected an integer >= 2"]),
        (lambda: make_policy(max_windows=10_000),
         ["participation.max_windows = 10000", "more than the 1440 windows"]),
    ],
)
def test_bad_settings_name_field_value_and_fix(build, fragments):
    with pytest.raises(PrivacyConfigError) as info:
        build()
    for fragment in fragments:
        assert fragment in str(info.value)


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match=r"max_cells = '2'"):
        ContributionBounds(max_cells="2", max_events_per_cell=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"epsilon = '1'"):
        PrivacyBudget(mechanism="geometric", epsilon="1", delta=1e-6, shares={"a": 1})


def test_shares_must_cover_exactly_the_noisy_quantities():
    policy = make_policy()
    shares = dict(policy.budget.shares)
    shares["events"] += shares.pop("errors")
    budget = PrivacyBudget(mechanism="geometric", epsilon=1, delta=1e-6, shares=shares)
    with pytest.raises(PrivacyConfigError, match=r"missing \['errors'\]"):
        dataclasses.replace(policy, budget=budget)


def test_missing_horizon_cap_is_refused():
    with pytest.raises(PrivacyConfigError, match="horizon_caps"):
        dataclasses.replace(make_policy(), horizon_caps=())


def test_budget_shares_are_read_only():
    policy = make_policy()
    with pytest.raises(TypeError):
        policy.budget.shares["events"] = 1.0  # type: ignore[index]
