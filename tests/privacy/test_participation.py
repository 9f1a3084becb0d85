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


@settings(max_examples=100, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 40)), max_size=200),
    cap=st.integers(1, 6),
    period_ms=st.sampled_from([1, 100, 60_000, 86_400_000, 2**31, 40 * 86_400_000]),
    base=st.sampled_from([0, 1_800_000_000_000]),
)
def test_compact_state_decides_and_saves_like_the_reference_at_any_period(
        events, cap, period_ms, base):
    """Period numbers beyond int32 (ms periods at today's times) and periods beyond
    int32 offsets (40 days) switch to int64; the saved rows are absolute window starts,
    so a restore into a fresh limiter goes on deciding like the reference."""
    from privmon.privacy.participation import DenseParticipationLimiter

    ref = ParticipationLimiter(ParticipationCap(max_windows=cap, period_ms=period_ms),
                               recent=2)
    dense = DenseParticipationLimiter(ParticipationCap(max_windows=cap, period_ms=period_ms),
                                      recent=2, capacity=2)
    half = len(events) // 2
    for chunk in (events[:half], events[half:]):
        windows = np.array([base + w * 60_000 for _, w in chunk], np.int64)
        accounts = [a for a, _ in chunk]
        assert ref.admit(accounts, windows).tolist() == dense.admit(accounts, windows).tolist()
        ids = np.arange(5)
        dense._grow(5)
        period, count, recent = dense.rows(ids)
        again = DenseParticipationLimiter(ParticipationCap(max_windows=cap,
                                                           period_ms=period_ms),
                                          recent=2, capacity=2)
        has = period >= 0
        again.restore(ids[has], period[has], count[has], recent[has])
        assert [r.tolist() for r in again.rows(ids[has])] == [
            r.tolist() for r in (period[has], count[has], recent[has])]
        assert recent[recent >= 0].min(initial=base) >= base  # absolute starts, not offsets
        dense = again


def test_bad_batches_are_refused_before_the_state_changes():
    """privacy/_admit.c checks every id and window before it writes: a batch with one
    bad entry raises and leaves the state (and what later batches decide) as it was."""
    import pytest

    from privmon.privacy import _admit
    from privmon.privacy.participation import DenseParticipationLimiter

    cap = ParticipationCap(max_windows=1, period_ms=PERIOD)
    dense = DenseParticipationLimiter(cap, recent=2, capacity=4)
    dense.admit([0, 1], np.array([0, 60_000], np.int64))
    before = [dense.rows(np.arange(4))[i].tolist() for i in range(3)]
    with pytest.raises(ValueError, match="expected ids and window starts >= 0"):
        dense.admit([2, 3, -1], np.array([0, 0, 0], np.int64))
    keep = np.empty(2, bool)
    with pytest.raises(ValueError, match=r"expected ids in \[0, 4\)"):  # past the arrays
        _admit.admit(dense._period, dense._count, dense._recent, dense._dirty,
                     np.array([2, 9]), np.array([0, 0]), PERIOD, 1, keep)
    with pytest.raises(TypeError, match="keep: expected items of format"):
        _admit.admit(dense._period, dense._count, dense._recent, dense._dirty,
                     np.array([2, 3]), np.array([0, 0]), PERIOD, 1, keep.astype(np.int64))
    assert [dense.rows(np.arange(4))[i].tolist() for i in range(3)] == before
    assert dense.admit([0, 1, 2], np.array([120_000, 60_000, 0], np.int64)).tolist() == [
        False, True, True]


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.lists(st.integers(-1, 8), min_size=3, max_size=3), max_size=6),
       sort=st.booleans(), after=st.integers(-2, 8))
def test_open_recent_packs_like_a_stable_sort(rows, sort, after):
    """open_recent's shortcut (kept entries already at the end of every row, as an
    account's admissions in time order leave them) gives what the stable sort gives."""
    from privmon.privacy.participation import open_recent

    recent = np.array(rows, np.int64).reshape(-1, 3)
    if sort:
        recent = np.sort(recent, axis=1)
    keep = recent > after
    width = int(keep.sum(axis=1).max()) if recent.size else 0
    order = np.argsort(keep, axis=1, kind="stable")
    want = np.where(np.take_along_axis(keep, order, axis=1),
                    np.take_along_axis(recent, order, axis=1), -1)[:, 3 - width:]
    got = open_recent(recent, after)
    assert got.shape == want.shape and np.array_equal(got, want)
