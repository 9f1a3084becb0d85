"""Aligned caps and rolling intervals: what holds over ANY interval of a horizon.

The participation cap is per aligned period (a UTC day), so an account active
23:00-01:00 can be in max_windows windows on each side of midnight: twice the
aligned bound within 24 h. ``windows_per_rolling_horizon`` states the bound
that holds over every interval; these tests reach it on adversarial schedules
and never exceed it on random ones, with the enforcing limiter itself."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privmon.privacy.accountant import (
    compose,
    horizon_guarantee,
    window_cost,
    windows_per_horizon,
    windows_per_rolling_horizon,
)
from privmon.privacy.checks import PrivacyConfigError
from privmon.privacy.params import HorizonCap, ParticipationCap
from privmon.privacy.participation import ParticipationLimiter
from privmon.streams.config import load_config

DAY = 86_400_000
MONITORING = load_config().policy("monitoring")  # 1-min windows, 120 per UTC day


def _admitted(policy, window_starts: list[int]) -> list[int]:
    """The window starts the stage-1 limiter admits for one account, in this order."""
    limiter = ParticipationLimiter(policy.participation)
    keep = limiter.admit(["a"] * len(window_starts), np.array(window_starts, np.int64))
    return [w for w, ok in zip(window_starts, keep, strict=True) if ok]


def _max_in_any_interval(starts: list[int], length_ms: int) -> int:
    """Most distinct windows whose start lies in one interval [t, t + length_ms)."""
    starts = sorted(set(starts))
    best, lo = 0, 0
    for hi, s in enumerate(starts):
        while starts[lo] <= s - length_ms:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_an_account_active_across_midnight_reaches_the_rolling_bound():
    w = MONITORING.window_ms
    midnight = 20_000 * DAY
    schedule = list(range(midnight - 2 * 3_600_000, midnight + 2 * 3_600_000, w))  # 22-02 h
    admitted = _admitted(MONITORING, schedule)
    worst = _max_in_any_interval(admitted, DAY)
    assert worst == 2 * MONITORING.participation.max_windows == 240
    assert worst > windows_per_horizon(MONITORING, DAY) == 120  # the aligned bound is not it
    assert worst == windows_per_rolling_horizon(MONITORING, DAY)  # the stated one is, exactly
    # and the composed epsilon over that interval is what the rolling figure says
    cap = MONITORING.horizon_caps[0]
    cost = window_cost(MONITORING)
    assert horizon_guarantee([MONITORING], cap, rolling=True) == compose(
        [(cost, worst)], target_delta=cap.max_delta)
    assert horizon_guarantee([MONITORING], cap) == compose(
        [(cost, 120)], target_delta=cap.max_delta)
    assert horizon_guarantee([MONITORING], cap, rolling=True).basic_epsilon == pytest.approx(
        worst * MONITORING.budget.epsilon)


@settings(max_examples=150, deadline=None)
@given(windows=st.lists(st.integers(0, 4 * 24 * 6), min_size=1, max_size=300),
       max_windows=st.integers(1, 12), days=st.integers(1, 3))
def test_no_schedule_exceeds_the_rolling_bound(windows, max_windows, days):
    """Random schedules of 10-min windows over 4 days, events in time order."""
    policy = dataclasses.replace(
        MONITORING, window_ms=600_000,
        participation=ParticipationCap(max_windows=max_windows, period_ms=DAY),
        horizon_caps=(HorizonCap(horizon_ms=days * DAY, max_epsilon=1e6, max_delta=1e-5),))
    starts = sorted(w * 600_000 for w in windows)
    admitted = _admitted(policy, starts)
    assert _max_in_any_interval(admitted, days * DAY) <= windows_per_rolling_horizon(
        policy, days * DAY)


def test_a_horizon_that_is_not_whole_periods_is_refused():
    with pytest.raises(PrivacyConfigError, match="whole number of participation periods"):
        dataclasses.replace(MONITORING, horizon_caps=(
            HorizonCap(horizon_ms=36 * 3_600_000, max_epsilon=60.0, max_delta=1e-5),))
    with pytest.raises(PrivacyConfigError, match="whole number of windows"):
        dataclasses.replace(MONITORING, participation=ParticipationCap(
            max_windows=10, period_ms=DAY + 1))
