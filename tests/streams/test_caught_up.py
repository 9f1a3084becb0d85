"""The caught-up rule behind the wall-clock watermark: fresh fetches only."""

from __future__ import annotations

from privmon.agents.kafka_stage import FETCH_FRESH_MS, caught_up_now
from privmon.streams.windows import Watermark

NOW = 1_800_000_000_000


def test_caught_up_needs_a_fresh_fetch_and_no_lag():
    assert caught_up_now(position=10, highwater=10, last_fetch_ms=NOW - 100, now_ms=NOW)
    assert not caught_up_now(position=9, highwater=10, last_fetch_ms=NOW - 100, now_ms=NOW)
    assert not caught_up_now(position=0, highwater=None, last_fetch_ms=None, now_ms=NOW)
    # Leader gone: the last highwater says "caught up" but it is stale.
    stale = NOW - FETCH_FRESH_MS - 1
    assert not caught_up_now(position=10, highwater=10, last_fetch_ms=stale, now_ms=NOW)
    assert caught_up_now(position=10, highwater=10, last_fetch_ms=NOW - FETCH_FRESH_MS,
                         now_ms=NOW)


def test_a_partition_without_fresh_fetches_holds_its_windows_open():
    wm = Watermark(idle_lag_ms=2000)
    wm.observe(NOW - 60_000)  # last event seen a minute ago, then the leader died
    healthy = caught_up_now(position=5, highwater=5, last_fetch_ms=NOW - 100, now_ms=NOW)
    failing = caught_up_now(position=5, highwater=5, last_fetch_ms=NOW - 40_000, now_ms=NOW)
    assert wm.value(NOW, caught_up=healthy) == NOW - 2000  # idle: wall clock advances
    assert wm.value(NOW, caught_up=failing) == NOW - 60_000  # failover: event time only
