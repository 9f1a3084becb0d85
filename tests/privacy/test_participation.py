"""The participation cap: no account is admitted to more than max_windows windows a period."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from privmon.privacy.params import ParticipationCap
from privmon.privacy.participation import ParticipationLimiter

PERIOD = 10 * 60_000  # 10 one-minute windows per period


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 40)), max_size=400),
    cap=st.integers(1, 6),
    split=st.integers(1, 60),
)
def test_no_account_exceeds_the_cap(events, cap, split):
    limiter = ParticipationLimiter(ParticipationCap(max_windows=cap, period_ms=PERIOD), recent=2)
    admitted = defaultdict(set)
    for start in range(0, len(events), split):
        chunk = events[start:start + split]
        windows = np.array([w * 60_000 for _, w in chunk], np.int64)
        keep = limiter.admit([a for a, _ in chunk], windows)
        for (account, w), ok in zip(chunk, keep, strict=True):
            if ok:
                admitted[(account, w * 60_000 // PERIOD)].add(w)
    assert all(len(ws) <= cap for ws in admitted.values())


def test_in_order_windows_are_admitted_exactly_up_to_the_cap():
    limiter = ParticipationLimiter(ParticipationCap(max_windows=3, period_ms=PERIOD))
    windows = np.repeat(np.arange(12) * 60_000, 2)  # two events per window, 12 windows
    keep = limiter.admit(["a"] * windows.size, windows)
    # Windows 0-2 admitted; 3-9 dropped; 10 and 11 are a new period.
    assert keep.reshape(12, 2)[:, 0].tolist() == [True] * 3 + [False] * 7 + [True] * 2
    assert limiter.dropped == 14
    limiter.forget_before(1)
    assert len(limiter) == 1


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 40)), max_size=300),
    cap=st.integers(1, 6),
    split=st.integers(1, 60),
    forget_at=st.integers(0, 300),
)
def test_the_dense_limiter_decides_exactly_like_the_reference(events, cap, split, forget_at):
    from privmon.privacy.participation import DenseParticipationLimiter

    ref = ParticipationLimiter(ParticipationCap(max_windows=cap, period_ms=PERIOD), recent=2)
    dense = DenseParticipationLimiter(ParticipationCap(max_windows=cap, period_ms=PERIOD),
                                      recent=2, capacity=2)
    for start in range(0, len(events), split):
        chunk = events[start:start + split]
        windows = np.array([w * 60_000 for _, w in chunk], np.int64)
        accounts = [a for a, _ in chunk]
        assert ref.admit(accounts, windows).tolist() == dense.admit(accounts, windows).tolist()
        if start <= forget_at < start + split:
            ref.forget_before(2)
            dense.forget_before(2)
            assert ref.accounts() == dense.accounts()
    assert ref.dropped == dense.dropped
