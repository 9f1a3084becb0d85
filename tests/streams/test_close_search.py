"""A search for input that breaks stage 1's close path (close, take_state, restore),
which runs outside the per-window guards: a raise there stops the worker.

A hypothesis state machine drives two partitions with the same raw log: the twin
never restarts; the live one restarts from its committed state (the latest cap
state per key, the progress record, the raw log from ``commit_offset``) after any
close the search chooses. It varies what the restart tests of
test_participation_restart.py fix: three streams (4 s windows under a daily cap, 60 s
windows under an hourly cap, hourly windows), out-of-order events (up to 20 short
windows late), accounts that come and go (new ones all the time), jumps of an hour
or a day (caps forget periods, ids are pruned and handed out again, the pseudonym key
rotates), the ids' and limiters' arrays starting at one row, and pseudonyms whose
8-byte prefixes clash (every lookup through ``AccountIds``' clash dict). Checked:
no step raises, no message is dead-lettered, no window's close fails, and at the
end (everything closed) both gave the same partials, byte for byte.

Each account sends on one server, so it has one cell a window (L0 never samples);
Linf keeps the first events in arrival order, which a replay keeps.
"""

from __future__ import annotations

import json
from dataclasses import replace

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from privmon.agents import stage1
from privmon.agents.account_ids import AccountIds
from privmon.agents.stage1 import Stage1Partition
from privmon.privacy.params import ParticipationCap
from privmon.privacy.participation import DenseParticipationLimiter, open_recent
from privmon.streams.participation_state import StateChunk
from privmon.streams.pseudonym import Pseudonymizer
from tests.streams.test_participation_restart import MONITORING, T0, WINDOW_MS, _event

DAY_MS = 86_400_000
POLICIES = (
    replace(MONITORING, participation=ParticipationCap(max_windows=3, period_ms=DAY_MS)),
    replace(MONITORING, name="minute", window_ms=60_000,
            participation=ParticipationCap(max_windows=2, period_ms=3_600_000)),
    replace(MONITORING, name="hourly", window_ms=3_600_000,
            participation=ParticipationCap(max_windows=3, period_ms=DAY_MS)),
)
# A second key from the next UTC day on (T0 is 01:00 UTC).
KEYS = {0: b"k" * 32, T0 - 3_600_000 + DAY_MS: b"m" * 32}
POOL = 30  # accounts at a time, in a pool that slides along the log (new ones all the time)
SPAN_MS = 4 * DAY_MS  # at most: a replay's events stay younger than the 7-day age limit


class ClashingPseudonymizer(Pseudonymizer):
    """Pseudonyms with one of two 8-byte prefixes (distinct 16-byte values)."""

    def pseudonym_under(self, key_index: int, account_id: bytes) -> bytes:
        p = super().pseudonym_under(key_index, account_id)
        return bytes([p[0] % 2]) * 8 + p[8:]


class CloseSearch(RuleBasedStateMachine):
    @initialize(clash=st.booleans())
    def start(self, clash: bool) -> None:
        self.pseudonymizer = (ClashingPseudonymizer if clash else Pseudonymizer)(KEYS)
        self.log: list[tuple[int, bytes, bytes]] = []
        self.newest = T0
        self.topic: dict[bytes, bytes] = {}  # the live one's committed cap state
        self.twin = self._partition()
        self.live = self._partition()
        self.out: dict[str, list[bytes]] = {"twin": [], "live": []}

    def _partition(self, **restored) -> Stage1Partition:
        return Stage1Partition(partition=0, policies=POLICIES,
                               pseudonymizer=self.pseudonymizer, idle_lag_ms=0, **restored)

    @rule(events=st.lists(st.tuples(st.integers(0, POOL - 1), st.integers(0, 1500),
                                    st.integers(0, 20 * WINDOW_MS)), min_size=1, max_size=80),
          jump_ms=st.sampled_from([0, 0, 0, 60_000, 3_600_000, DAY_MS]))
    def ingest(self, events: list[tuple[int, int, int]], jump_ms: int) -> None:
        if self.newest + jump_ms - T0 < SPAN_MS:
            self.newest += jump_ms
        for a, step_ms, back_ms in events:
            self.newest += step_ms
            t = max(T0, self.newest - back_ms)
            i = a + len(self.log) // 1
            self.log.append((len(self.log), f"a{i}".encode(),
                             json.dumps(_event(f"a{i}", f"s{i % 3}", t)).encode()))
        assert self.twin.ingest(self.log[self.twin.next_offset:], now_ms=self.newest) == []
        assert self.live.ingest(self.log[self.live.next_offset:], now_ms=self.newest) == []

    @rule(ahead_ms=st.integers(0, 2 * WINDOW_MS), restart=st.booleans())
    def close(self, ahead_ms: int, restart: bool) -> None:
        self._close(self.newest + ahead_ms)
        if restart:
            live = self.live
            self.live = self._partition(
                progress=live.progress(), start_offset=live.commit_offset(),
                participation=[StateChunk.decode(v) for v in self.topic.values()])
            assert self.live.ingest(self.log[self.live.next_offset:], now_ms=self.newest) == []

    def _close(self, now_ms: int) -> None:
        for name, part in (("twin", self.twin), ("live", self.live)):
            partials, marks = part.close(now_ms=now_ms, caught_up=True)
            assert [m.failed for m in marks if m.failed] == []
            for key, value in part.take_state():
                if name == "live":
                    if value is None:
                        self.topic.pop(key, None)
                    else:
                        self.topic[key] = value
            self.out[name] += [p.encode() for p in partials]

    def teardown(self) -> None:
        if not hasattr(self, "twin"):
            return
        self._close(self.newest + 2 * DAY_MS)  # every window closed
        assert sorted(self.out["live"]) == sorted(self.out["twin"])


def _small_arrays(monkeypatch) -> None:
    monkeypatch.setattr(DenseParticipationLimiter.__init__, "__kwdefaults__",
                        {**DenseParticipationLimiter.__init__.__kwdefaults__, "capacity": 1})
    monkeypatch.setattr(AccountIds.__init__, "__defaults__", (1,))


SEARCH = settings(max_examples=200, stateful_step_count=40, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow])


def test_no_input_or_restart_breaks_the_close_path(monkeypatch):
    """CloseSearch, 200 runs of up to 40 steps (~20 s here). Negative control: with
    DenseParticipationLimiter.rows of before ee6d978 (it indexed past the arrays for
    an id the stream never admitted), it fails with that IndexError."""
    _small_arrays(monkeypatch)
    run_state_machine_as_test(CloseSearch, settings=SEARCH)


def test_the_search_catches_saved_cap_state_that_forgets_an_open_window(monkeypatch):
    """Negative control: a stage 1 whose saved cap state drops each account's oldest
    admitted open window (a restarted cap counts that window again, and may refuse a
    later one the twin admitted) fails the search."""
    _small_arrays(monkeypatch)
    monkeypatch.setattr(stage1, "open_recent",
                        lambda recent, after_ms: open_recent(recent, after_ms)[:, 1:])
    with pytest.raises(AssertionError, match="assert"):
        run_state_machine_as_test(CloseSearch, settings=settings(
            SEARCH, phases=[Phase.generate], report_multiple_bugs=False))
