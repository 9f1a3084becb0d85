"""Cap on windows per account per period: what makes horizon guarantees finite.

The accountant assumes an account contributes to at most ``max_windows``
windows of a stream per aligned period (e.g. per UTC day). This limiter
enforces it before bounding: the first ``max_windows`` windows an account
appears in during a period are admitted, later ones are dropped for it.

State per account is (period, windows admitted, the last few admitted window
starts), never the account's events. An event for an admitted window that
has dropped out of the short "recent" list is treated as a new window, and
an event of an earlier period after the account entered a later one is
dropped: both only drop more, so the cap still holds.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from privmon.privacy import _admit
from privmon.privacy.params import ParticipationCap


class ParticipationLimiter:
    def __init__(self, cap: ParticipationCap, *, recent: int = 4) -> None:
        self.cap = cap
        self.recent = recent
        self._state: dict[Hashable, tuple[int, int, tuple[int, ...]]] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._state)

    def admit(self, accounts: Sequence[Hashable], window_start_ms: np.ndarray) -> np.ndarray:
        """Boolean mask of the events whose (account, window) is within the cap."""
        windows = np.asarray(window_start_ms, np.int64)
        if len(accounts) != windows.size:
            raise ValueError(
                f"window_start_ms: expected {len(accounts)} entries like accounts, "
                f"got {windows.size}"
            )
        keep = np.zeros(windows.size, bool)
        decided: dict[tuple[Hashable, int], bool] = {}
        period_ms, cap = self.cap.period_ms, self.cap.max_windows
        for i, (account, window) in enumerate(zip(accounts, windows.tolist(), strict=True)):
            pair = (account, window)
            ok = decided.get(pair)
            if ok is None:
                period = window // period_ms
                state = self._state.get(account)
                if state is None or state[0] < period:
                    state = (period, 0, ())
                _, count, recent = state
                if state[0] > period:  # an earlier period, after a later one began: drop
                    ok = False
                elif window in recent:
                    ok = True
                elif count < cap:
                    ok = True
                    self._state[account] = (period, count + 1, (*recent, window)[-self.recent:])
                else:
                    ok = False
                    self._state.setdefault(account, state)
                decided[pair] = ok
            keep[i] = ok
        self.dropped += int((~keep).sum())
        return keep

    def accounts(self) -> set[Hashable]:
        """Accounts with state (admitted or capped in a remembered period)."""
        return set(self._state)

    def forget_before(self, period: int) -> None:
        """Drop state of periods before ``period`` (call as periods pass)."""
        self._state = {a: s for a, s in self._state.items() if s[0] >= period}


def open_recent(recent: np.ndarray, open_after_ms: int) -> np.ndarray:
    """Rows of ``recent`` (admitted window starts, -1: none) keeping only windows
    that start after ``open_after_ms``, in their order, right-aligned as the
    limiter keeps them; as few columns as the fullest row needs.

    What a saved state needs: a closed window's events are dropped as late
    before they reach the limiter, so only open windows are ever looked up.
    """
    recent = np.asarray(recent, np.int64)
    keep = recent > open_after_ms
    width = int(keep.sum(axis=1).max()) if recent.size else 0
    if (keep[:, :-1] <= keep[:, 1:]).all():  # (usually: the kept ones already end each row)
        packed = np.where(keep, recent, -1)
    else:
        order = np.argsort(keep, axis=1, kind="stable")  # dropped first, kept in order
        packed = np.where(np.take_along_axis(keep, order, axis=1),
                          np.take_along_axis(recent, order, axis=1), -1)
    return packed[:, packed.shape[1] - width:]


class DenseParticipationLimiter:
    """``ParticipationLimiter`` for dense integer account ids, state in numpy arrays.

    Same decisions as the dict-based limiter (tests/privacy/test_participation.py
    checks them against it), 25 bytes per account (4 recent windows) instead of
    ~200: per id the period, the windows admitted in it and the last ``recent``
    admitted windows, each as its start's offset in the account's period (a
    recent window is always in that period: a new period clears them), so int32
    for periods under 2^31 ms (~24 days), int64 beyond. Ids are reused by the
    caller after ``forget_before`` drops them.
    """

    def __init__(self, cap: ParticipationCap, *, recent: int = 4, capacity: int = 1024) -> None:
        self.cap = cap
        self.recent = recent
        self._offset_type = np.int32 if cap.period_ms < 2**31 else np.int64
        self._period = np.full(capacity, -1, np.int32)  # int64 once a period needs it
        self._count = np.zeros(capacity, np.int32)
        # start of each recent window minus its period's start; -1: none
        self._recent = np.full((capacity, recent), -1, self._offset_type)
        self._dirty = np.zeros(capacity, bool)  # state changed since take_dirty()
        self.dropped = 0

    def __len__(self) -> int:
        return int((self._period >= 0).sum())

    def _grow(self, need: int) -> None:
        size = self._period.size
        if need <= size:
            return
        new = max(need, 2 * size)
        self._period = np.concatenate([self._period,
                                       np.full(new - size, -1, self._period.dtype)])
        self._count = np.concatenate([self._count, np.zeros(new - size, np.int32)])
        self._recent = np.concatenate(
            [self._recent, np.full((new - size, self.recent), -1, self._offset_type)])
        self._dirty = np.concatenate([self._dirty, np.zeros(new - size, bool)])

    def _fit_periods(self, largest: int) -> None:
        """Period numbers in int32 while they fit (periods of days: for ~5 million
        years), int64 from the first one that does not."""
        if self._period.dtype == np.int32 and largest >= 2**31 - 1:
            self._period = self._period.astype(np.int64)

    def admit(self, accounts: Sequence[int] | np.ndarray,
              window_start_ms: np.ndarray) -> np.ndarray:
        """Boolean mask of the events whose (account, window) is within the cap.

        The reference's decisions (each distinct (account, window) pair decided
        once, at its first event), made per event in one pass by privacy/_admit.c.
        """
        windows = np.ascontiguousarray(window_start_ms, np.int64).reshape(-1)
        acc = np.ascontiguousarray(accounts, np.int64).reshape(-1)
        if acc.size != windows.size:
            raise ValueError(
                f"window_start_ms: expected {acc.size} entries like accounts, "
                f"got {windows.size}"
            )
        if windows.size == 0:
            return np.zeros(0, bool)
        if acc.min() < 0 or windows.min() < 0:
            raise ValueError("accounts, window_start_ms: expected ids and window starts >= 0, "
                             f"got {acc.min()} and {windows.min()}")
        self._grow(int(acc.max()) + 1)
        self._fit_periods(int(windows.max()) // self.cap.period_ms)
        keep = np.empty(windows.size, bool)
        self.dropped += _admit.admit(self._period, self._count, self._recent, self._dirty,
                                     acc, windows, self.cap.period_ms, self.cap.max_windows,
                                     keep)
        return keep

    def accounts(self) -> set[int]:
        """Ids with state (admitted or capped in a remembered period)."""
        return set(np.flatnonzero(self._period >= 0).tolist())

    def has_state(self, size: int) -> np.ndarray:
        """``accounts()`` as a boolean mask over ids ``0 .. size-1``."""
        out = np.zeros(size, bool)
        m = min(size, self._period.size)
        out[:m] = self._period[:m] >= 0
        return out

    def forget_before(self, period: int) -> None:
        """Drop state of periods before ``period`` (call as periods pass)."""
        old = (self._period >= 0) & (self._period < period)
        self._period[old] = -1
        self._count[old] = 0
        self._recent[old] = -1
        self._dirty |= old

    # --------------------------------------------------- persistence (restarts)
    def take_dirty(self) -> np.ndarray:
        """Ids whose state changed since the last call (then forgets that they did)."""
        ids = np.flatnonzero(self._dirty)
        self._dirty[ids] = False
        return ids

    def rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """State of ``ids``: period (-1: none), windows admitted, recent window starts.
        An id past the arrays (one this limiter never admitted, as another stream's
        account late here) has none."""
        ids = np.asarray(ids, np.int64)
        outside = ids >= self._period.size
        at = np.where(outside, 0, ids)
        period = self._period[at].astype(np.int64)
        offsets = self._recent[at].astype(np.int64)
        count = self._count[at]
        period[outside], offsets[outside], count[outside] = -1, -1, 0
        starts = offsets + (period * self.cap.period_ms)[:, None]
        starts[offsets < 0] = -1
        return period, count, starts

    def restore(self, ids: np.ndarray, period: np.ndarray, count: np.ndarray,
                recent: np.ndarray) -> None:
        """Put back state saved with ``rows`` (after a restart, under new dense ids).

        ``recent`` may have another width than this limiter's: the newest
        entries are kept; a window that no longer fits is counted again if
        seen, which only drops more.
        """
        ids = np.asarray(ids, np.int64)
        if ids.size == 0:
            return
        recent = np.asarray(recent, np.int64).reshape(ids.size, -1)
        period = np.asarray(period, np.int64)
        self._grow(int(ids.max()) + 1)
        self._fit_periods(int(period.max()))
        self._period[ids] = period
        self._count[ids] = count
        width = min(self.recent, recent.shape[1])
        self._recent[ids] = -1
        if width:
            kept = recent[:, recent.shape[1] - width:]
            offsets = kept - (period * self.cap.period_ms)[:, None]
            # a start outside the account's period (or none) is dropped: counted again
            # if seen, which only drops more
            inside = (kept >= 0) & (offsets >= 0) & (offsets < self.cap.period_ms)
            self._recent[ids, -width:] = np.where(inside, offsets, -1)
