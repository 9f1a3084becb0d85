"""Stage 1 closes a window of all its partitions in one transaction when the last
ones are about to close it too (``Stage1Runner._wait_for_others``): it holds the
close of the due partitions while another's watermark is within
CLOSE_TOGETHER_MS of closing, for CLOSE_WAIT_S at most, and never for a
partition that is far from closing (an idle one waits for the wall clock)."""

from __future__ import annotations

from math import lcm

import pytest

from privmon.agents import stage1_runner
from privmon.agents.stage1 import Stage1Partition
from privmon.agents.stage1_runner import CLOSE_TOGETHER_MS, CLOSE_WAIT_S, Stage1Runner
from privmon.streams.config import load_config
from privmon.streams.pseudonym import Pseudonymizer
from tests.integration.pipeline_harness import FAST

POLICIES = load_config(FAST).policies
_EVERY = lcm(*(p.window_ms for p in POLICIES))
T0 = 1_800_000_000_000 // _EVERY * _EVERY  # a window start of every stream
FIRST = min(p.window_ms + p.grace_ms for p in POLICIES)  # closes T0's first window
W = max(p.window_ms for p in POLICIES)


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _runner(watermarks: list[int], monkeypatch: pytest.MonkeyPatch) -> tuple[Stage1Runner,
                                                                              _Clock]:
    """A runner holding one partition per watermark (no Kafka: only the close rule)."""
    runner = Stage1Runner.__new__(Stage1Runner)
    runner.parts = {}
    for p, wm in enumerate(watermarks):
        part = Stage1Partition(partition=p, policies=POLICIES, idle_lag_ms=60_000,
                               pseudonymizer=Pseudonymizer({0: b"k" * 32}))
        part.closed = {policy.name: T0 for policy in POLICIES}  # closed up to T0
        part.watermark.observe(wm)
        runner.parts[p] = part
    runner._waiting_since = None
    clock = _Clock()
    monkeypatch.setattr(stage1_runner.time, "monotonic", clock)
    return runner, clock


def _due(runner: Stage1Runner, now: int) -> set[int]:
    return {p for p, part in runner.parts.items() if part.due(now_ms=now)}


def test_a_close_waits_for_a_partition_about_to_close_the_same_window(monkeypatch):
    end = T0 + FIRST  # the first window after T0 closes at this watermark
    runner, clock = _runner([end, end - CLOSE_TOGETHER_MS // 2], monkeypatch)
    now = end + 10
    caught_up = dict.fromkeys(runner.parts, True)
    assert _due(runner, now) == {0}
    assert runner._wait_for_others({0}, now, caught_up)
    clock.t += CLOSE_WAIT_S / 2
    assert runner._wait_for_others({0}, now, caught_up)
    clock.t += CLOSE_WAIT_S  # waited long enough: close what is due
    assert not runner._wait_for_others({0}, now, caught_up)


def test_no_wait_for_a_partition_far_from_closing_or_when_all_are_due(monkeypatch):
    end = T0 + FIRST
    far, _ = _runner([end, end - CLOSE_TOGETHER_MS - 1], monkeypatch)
    caught_up = dict.fromkeys(far.parts, True)
    assert _due(far, end) == {0}
    assert not far._wait_for_others({0}, end, caught_up)  # (idle: its lag is 60 s)
    every, _ = _runner([end, end + 5], monkeypatch)
    assert _due(every, end + 5) == {0, 1}
    assert not every._wait_for_others({0, 1}, end + 5, caught_up)


def test_a_partition_behind_counts_its_event_time_only(monkeypatch):
    """Not caught up, the wall clock does not move its watermark: about to close only
    if its events are."""
    end = T0 + FIRST
    runner, _ = _runner([end, T0], monkeypatch)
    now = end + 10 * W
    assert not runner._wait_for_others({0}, now, {0: True, 1: False})
    near, _ = _runner([end, end - 100], monkeypatch)
    assert near._wait_for_others({0}, now, {0: True, 1: False})
