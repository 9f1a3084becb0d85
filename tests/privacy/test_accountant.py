"""Accountant: tight and basic composition, refusal over caps, ledger persistence."""

from __future__ import annotations

import dataclasses
import math

import pytest

from privmon.privacy.accountant import (
    Accountant,
    BudgetExceeded,
    DuplicateRelease,
    LedgerEntry,
    WindowCost,
    check_policies,
    compose,
    compose_basic,
    horizon_guarantee,
    window_cost,
    windows_per_horizon,
)
from privmon.privacy.params import HorizonCap
from privmon.privacy.rdp import Part, curve_of, epsilon_for_delta
from tests.privacy.policies import DAY_MS, make_policy


def test_windows_per_horizon_uses_the_participation_cap():
    policy = make_policy(max_windows=24)  # 1-minute windows, <= 24 per day
    assert windows_per_horizon(policy, DAY_MS) == 24
    assert windows_per_horizon(policy, 30 * DAY_MS) == 720
    assert windows_per_horizon(policy, 10 * 60_000) == 10  # fewer windows than the cap


def test_basic_composition_is_exact():
    parts = [(WindowCost(epsilon=0.5, delta=1e-6), 24), (WindowCost(epsilon=2.0, delta=1e-7), 1)]
    assert compose_basic(parts, target_delta=1e-3) == pytest.approx(14.0)
    g = compose(parts, target_delta=1e-3)
    assert g.basic_epsilon == pytest.approx(14.0)
    assert g.rho == 0


def test_zcdp_basic_conversion_is_exact():
    parts = [(WindowCost(epsilon=0.1, delta=1e-7, rho=0.01), 100)]
    rho, delta_left = 1.0, 1e-4 - 1e-5
    assert compose_basic(parts, target_delta=1e-4) == pytest.approx(
        10.0 + rho + 2 * math.sqrt(rho * math.log(1 / delta_left)))
    assert compose(parts, target_delta=1e-4).rho == pytest.approx(rho)


def test_tight_composition_is_the_rdp_sum_converted_once():
    a = WindowCost(epsilon=0.5, delta=1e-6, parts=(Part(kind="pure", epsilon=0.25, times=2),))
    b = WindowCost(epsilon=0.1, delta=1e-7, rho=0.01,
                   parts=(Part(kind="pure", epsilon=0.1), Part(kind="zcdp", rho=0.01)))
    g = compose([(a, 24), (b, 100)], target_delta=1e-4)
    curve = curve_of([(Part(kind="pure", epsilon=0.25), 48), (Part(kind="pure", epsilon=0.1), 100),
                      (Part(kind="zcdp", rho=0.01), 100)])
    assert g.epsilon == pytest.approx(epsilon_for_delta(curve, 1e-4 - 24e-6 - 1e-5), rel=1e-12)
    assert g.delta == 1e-4
    assert g.epsilon < g.basic_epsilon / 2  # 124 windows: tight composition pays


def test_tight_composition_is_never_above_basic():
    for eps, n in [(0.01, 1), (1.0, 1), (3.0, 1), (0.5, 10), (0.1, 1000)]:
        cost = WindowCost(epsilon=eps, delta=1e-9)
        g = compose([(cost, n)], target_delta=1e-6)
        assert g.epsilon <= g.basic_epsilon * (1 + 1e-9), (eps, n)


def test_zcdp_without_delta_left_is_infinite():
    g = compose([(WindowCost(epsilon=0.1, delta=1e-4, rho=0.01), 2)], target_delta=1e-4)
    assert g.epsilon == math.inf and g.basic_epsilon == math.inf


def test_a_ledger_entry_keeps_the_window_parts_and_composes_like_the_policy():
    policy = make_policy(epsilon=0.5, max_windows=24)
    entry = LedgerEntry.for_release(policy, window_start_ms=0, cells_released=2)
    again = LedgerEntry.from_json(entry.to_json())
    assert again == entry and again.cost() == window_cost(policy)
    old = LedgerEntry.from_json(b'{"stream": "test", "window_start_ms": 0, "window_end_ms": 1, '
                                b'"epsilon": 0.5, "delta": 1e-8, "rho": 0.0, '
                                b'"policy_version": "v", "cells_released": 0}')
    # written before parts were recorded: counted as 0.5-DP, an upper bound
    assert old.cost().rdp_parts() == (Part(kind="pure", epsilon=0.5),)


def test_policy_over_cap_is_refused_with_the_numbers():
    policy = make_policy(epsilon=2.0, max_windows=24, max_epsilon=10.0)
    with pytest.raises(BudgetExceeded) as info:
        check_policies([policy])
    text = str(info.value)
    g = horizon_guarantee([policy], policy.horizon_caps[0])
    assert "{'test': 24} windows" in text and f"epsilon={g.epsilon:.4g}" in text
    assert "epsilon<=10" in text and g.epsilon > 10
    check_policies([make_policy(epsilon=2.0, max_windows=4, max_epsilon=10.0)])


def test_global_cap_covers_all_streams_together():
    a = make_policy(epsilon=1.0, max_windows=5)
    b = dataclasses.replace(a, name="other")
    both = horizon_guarantee([a, b], HorizonCap(horizon_ms=DAY_MS, max_epsilon=1e9,
                                                 max_delta=1e-3)).epsilon
    one = horizon_guarantee([a], HorizonCap(horizon_ms=DAY_MS, max_epsilon=1e9,
                                            max_delta=1e-3)).epsilon
    assert one < both < 2 * one
    cap = HorizonCap(horizon_ms=DAY_MS, max_epsilon=(one + both) / 2, max_delta=1e-3)
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
    assert spent == compose([(window_cost(policy), 24)], target_delta=cap.max_delta)
    assert spent.basic_epsilon == pytest.approx(24 * 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reloaded.entries[0].epsilon = 0.0  # type: ignore[misc]


def test_headroom_is_the_largest_budget_factor_within_every_cap():
    from privmon.privacy.accountant import headroom, scaled, within_caps
    from privmon.streams.config import load_config

    config = load_config()
    f = headroom(config.policies, config.global_caps)
    assert 1 < f < 2  # the shipped caps leave a little room
    assert within_caps([scaled(p, f) for p in config.policies], config.global_caps)
    assert not within_caps([scaled(p, f * 1.003) for p in config.policies], config.global_caps)
    over = [make_policy(epsilon=2.0, max_windows=24, max_epsilon=10.0)]
    assert headroom(over) < 1 and within_caps([scaled(over[0], headroom(over))])
    g = scaled(make_policy(mechanism="gaussian", rho=0.01, epsilon=0.1), 2.0).budget
    assert (g.epsilon, g.rho) == (0.2, pytest.approx(0.04))  # noise std halves for both
