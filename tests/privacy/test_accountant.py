"""Accountant: exact composition arithmetic, refusal over caps, ledger persistence."""

from __future__ import annotations

import dataclasses
import math

import pytest

from privmon.privacy.accountant import (
    Accountant,
    BudgetExceeded,
    DuplicateRelease,
    WindowCost,
    check_policies,
    compose,
    horizon_guarantee,
    windows_per_horizon,
)
from privmon.privacy.params import HorizonCap
from tests.privacy.policies import DAY_MS, make_policy


def test_windows_per_horizon_uses_the_participation_cap():
    policy = make_policy(max_windows=24)  # 1-minute windows, <= 24 per day
    assert windows_per_horizon(policy, DAY_MS) == 24
    assert windows_per_horizon(policy, 30 * DAY_MS) == 720
    assert windows_per_horizon(policy, 10 * 60_000) == 10  # fewer windows than the cap


def test_basic_composition_is_exact():
    g = compose([(WindowCost(epsilon=0.5, delta=1e-6), 24),
                 (WindowCost(epsilon=2.0, delta=1e-7), 1)], target_delta=1e-3)
    assert g.epsilon == pytest.approx(14.0)
    assert g.delta == pytest.approx(24e-6 + 1e-7)
    assert g.rho == 0


def test_zcdp_composition_and_conversion_are_exact():
    g = compose([(WindowCost(epsilon=0.1, delta=1e-7, rho=0.01), 100)], target_delta=1e-4)
    rho, delta_left = 1.0, 1e-4 - 1e-5
    assert g.rho == pytest.approx(rho)
    assert g.epsilon == pytest.approx(10.0 + rho + 2 * math.sqrt(rho * math.log(1 / delta_left)))
    assert g.delta == pytest.approx(1e-4)


def test_zcdp_without_delta_left_is_infinite():
    g = compose([(WindowCost(epsilon=0.1, delta=1e-4, rho=0.01), 2)], target_delta=1e-4)
    assert g.epsilon == math.inf


def test_policy_over_cap_is_refused_with_the_numbers():
    policy = make_policy(epsilon=1.0, max_windows=24, max_epsilon=10.0)
    with pytest.raises(BudgetExceeded) as info:
        check_policies([policy])
    text = str(info.value)
    assert "{'test': 24} windows" in text and "epsilon=24" in text and "epsilon<=10" in text
    check_policies([make_policy(epsilon=1.0, max_windows=10, max_epsilon=10.0)])


def test_global_cap_covers_all_streams_together():
    a = make_policy(epsilon=1.0, max_windows=5)
    b = dataclasses.replace(a, name="other")
    cap = HorizonCap(horizon_ms=DAY_MS, max_epsilon=9.0, max_delta=1e-3)
    assert horizon_guarantee([a, b], cap).epsilon == pytest.approx(10.0)
    check_policies([a, b])  # each alone is fine
    with pytest.raises(BudgetExceeded, match="all streams"):
        check_policies([a, b], global_caps=[cap])


def test_ledger_refuses_duplicates_and_survives_reload():
    policy = make_policy(epsilon=0.5, max_windows=24)
    accountant = Accountant([policy])
    for minute in range(30):
        accountant.record(policy, window_start_ms=minute * 60_000, cells_released=3)
    with pytest.raises(DuplicateRelease, match="already released"):
        accountant.record(policy, window_start_ms=0, cells_released=3)

    reloaded = Accountant.from_entries([policy], accountant.entries)  # as from the topic
    assert reloaded.entries == accountant.entries
    assert ("test", 0) in reloaded
    with pytest.raises(DuplicateRelease):
        reloaded.record(policy, window_start_ms=60_000, cells_released=1)
    cap = policy.horizon_caps[0]
    spent = reloaded.spent(cap, now_ms=DAY_MS - 1)
    # 30 windows released, but one account is in at most 24 of them.
    assert spent.epsilon == pytest.approx(24 * 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reloaded.entries[0].epsilon = 0.0  # type: ignore[misc]
