"""Neighbouring inputs through every channel of a release besides its records.

D and D' differ by one account, alone in a new cell (under k, so it is never
released and draws no noise). With the noise seeded alike, a channel that
carried exact data (e.g. the count of cells a window had, as the ledger once
did: measured epsilon >= 6.5 against a claim of 2) differs between the two;
one that carries only what was spent and published does not. The ledger entry
and the worker's stats (and so its metrics) are built by the functions the
worker calls.
"""

from __future__ import annotations

import dataclasses
import logging
from types import MappingProxyType

import numpy as np

from privmon.agents.metrics import WorkerMetrics
from privmon.agents.stage2 import Stage2Partition, completion_record, ledger_entry
from privmon.agents.stats import WorkerStats
from privmon.privacy.accumulators import CellTotals
from privmon.privacy.release import WindowRelease, release_window
from privmon.streams.config import load_config
from privmon.streams.partials import Mark, Partials
from tests.privacy.keyed import KEYS, window_noise

# Private cells (DP selection): where a cell's existence is data. (Public cells:
# tests/privacy/test_public_cells.py.)
_MONITORING = load_config().policy("monitoring")
POLICY = dataclasses.replace(_MONITORING, public_cells=(), budget=dataclasses.replace(
    _MONITORING.budget, delta=2e-8))


def _totals(accounts: list[int]) -> CellTotals:
    n = len(accounts)
    acc = np.array(accounts, np.int64)
    cols = {}
    for m in POLICY.metrics:
        width = len(m.edges) - 1 if hasattr(m, "edges") else None
        cols[m.name] = (np.zeros((n, width), np.int64) if width else acc * 3)
    return CellTotals(cells=np.arange(n, dtype=np.int64), accounts=acc, events=acc * 5,
                      columns=MappingProxyType(cols))


def _labels(c: int) -> dict[str, str]:
    return {"server": f"s{c:03d}", "region": "eu"}


def _outputs(accounts: list[int], seed: int) -> tuple[WindowRelease, bytes, str]:
    rel = release_window(_totals(accounts), POLICY, window_start_ms=0, cell_labels=_labels,
                         noise=window_noise(seed))
    stats = WorkerStats()
    stats.count_release(rel)
    entry = ledger_entry(POLICY, 0, 0, rel)
    metrics = WorkerMetrics([POLICY])
    metrics.update(stats)
    metrics.ledger.add([entry])  # the budget gauges, from the ledger entry
    metrics.ledger.clock = lambda: POLICY.window_ms / 1000
    text = "\n".join(f"{s.name}{sorted(s.labels.items())} {s.value}"
                     for fam in metrics.registry.collect() for s in fam.samples)
    assert "privmon_epsilon_spent" in text and "privmon_cells_released_total" in text
    return rel, entry.to_json(), text


def test_one_account_alone_in_a_new_cell_changes_no_channel():
    d = [900, 900, 900]
    d_prime = [*d, 1]  # the neighbour: one more account, alone in a new cell
    for seed in range(20):
        rel, ledger, metrics = _outputs(d, seed)
        rel2, ledger2, metrics2 = _outputs(d_prime, seed)
        assert [r.to_json() for r in rel.records] == [r.to_json() for r in rel2.records]
        assert ledger == ledger2
        assert metrics == metrics2


def test_a_release_carries_nothing_but_its_records():
    """Its fields are the records' own parts, by column: each is read back from the
    records alone (no field holds anything a record does not publish)."""
    assert [f.name for f in dataclasses.fields(WindowRelease)] == [
        "stream", "window_start_ms", "window_end_ms", "dimensions", "cells", "full",
        "accounts", "metrics", "privacy"]
    rel, _, _ = _outputs([900, 900, 3, 900], 0)
    records = rel.records
    assert len(rel) == len(records) == 3  # the cell under k is held back, uncounted
    first = records[0]
    assert (rel.stream, rel.window_start_ms, rel.window_end_ms, rel.privacy) == (
        first.stream, first.window_start_ms, first.window_end_ms, first.privacy)
    assert rel.cells == tuple(tuple(r.cell[d] for d in rel.dimensions) for r in records)
    assert rel.full.tolist() == [not r.under_k for r in records]
    assert rel.accounts is not None
    def same(values: list, published: list) -> bool:  # (by repr: a quantile may be NaN)
        return [repr(v) for v in values] == [repr(v) for v in published]

    assert same(rel.accounts.values(), [r.metrics["accounts"] for r in records])
    full = [r for r in records if not r.under_k]
    assert list(rel.metrics) == [n for n in full[0].metrics if n != "accounts"]
    for name, column in rel.metrics.items():
        assert same(column.values(), [r.metrics[name] for r in full])


def test_the_check_catches_a_ledger_that_counts_cells():
    """Negative control: the ledger entry as it was (with the window's exact cell
    count) differs between D and D' on every draw."""
    def old_ledger(accounts: list[int], seed: int) -> bytes:
        rel, _, _ = _outputs(accounts, seed)
        return dataclasses.replace(ledger_entry(POLICY, 0, 0, rel)).to_json()[:-1] + (
            f', "cells_total": {len(accounts)}}}').encode()

    assert all(old_ledger([900] * 3, s) != old_ledger([900] * 3 + [1], s) for s in range(5))


# --- which ledger entries exist ---------------------------------------------------
W = POLICY.window_ms
T0 = 1_000 * W


def _published(extra_cell: bool, publish) -> list[bytes]:
    """What one stage-2 partition writes per window over five windows (``publish(start,
    release)``). The data has a big cell in the first window only; D' adds one account
    alone in a new cell in the third window (never released: under k)."""
    part = Stage2Partition(policies=(POLICY,), sources=1, noise_keys=KEYS)
    cols = {m.name: ([0] * m.n_buckets if hasattr(m, "n_buckets") else 0)
            for m in POLICY.metrics}
    part.on_record(0, Mark(0, POLICY.name, T0))  # stage 1's first close
    one = {k: [v] for k, v in cols.items()}
    part.on_record(1, Partials(0, POLICY.name, T0, [("s1", "eu")], [900], [900], one))
    if extra_cell:
        part.on_record(2, Partials(0, POLICY.name, T0 + 2 * W, [("lone", "eu")], [1], [1], one))
    part.on_record(3, Mark(0, POLICY.name, T0 + 5 * W))
    out = []
    while ready := part.releasable():
        for stream, start in ready:
            rel = part.release(stream, start)
            out.append(publish(start, rel))
    return out


def _entries(extra_cell: bool) -> list[bytes]:
    """The ledger entries."""
    return _published(extra_cell, lambda start, rel: ledger_entry(POLICY, start, 0, rel).to_json())


def _completions(extra_cell: bool) -> list[bytes]:
    """The completion records (on the aggregate topic)."""
    return _published(extra_cell,
                      lambda start, rel: completion_record(POLICY, start, 0, 4).to_json())


def test_which_ledger_entries_exist_does_not_depend_on_the_data():
    """Every window since the first mark gets an entry, with partials here or not, in
    the same order. (Before: an entry only for windows with partials in this
    partition, so the lone account's window appeared in the ledger.)"""
    from privmon.agents.stage2 import LOOKBACK_WINDOWS

    d, d_prime = _entries(False), _entries(True)
    assert d == d_prime
    assert len(d) == LOOKBACK_WINDOWS + 5  # and the windows before the first mark


def test_which_completion_records_exist_does_not_depend_on_the_data(monkeypatch):
    """One per window since the first mark, like the ledger entries; the old
    pending-only rule (negative control) would publish them only where data was."""
    assert _completions(False) == _completions(True)

    def pending_only(self, limit=1000):
        marks = self.marks.get(POLICY.name, {})
        return sorted(k for k in self.pending if k[1] + W <= min(marks.values()))

    monkeypatch.setattr(Stage2Partition, "releasable", pending_only)
    assert _completions(False) != _completions(True)


def test_the_check_catches_entries_only_for_windows_with_partials(monkeypatch):
    """Negative control: the old rule (release only pending windows) differs."""
    def pending_only(self, limit=1000):
        marks = self.marks.get(POLICY.name, {})
        return sorted(k for k in self.pending if k[1] + W <= min(marks.values()))

    monkeypatch.setattr(Stage2Partition, "releasable", pending_only)
    assert _entries(False) != _entries(True)


# --- the worker's status line and /metrics ------------------------------------------
def _scrape(stats: WorkerStats) -> str:
    metrics = WorkerMetrics([POLICY])
    metrics.update(stats)
    return "\n".join(f"{s.name} {s.value}" for fam in metrics.registry.collect()
                     for s in fam.samples)


def test_input_side_counts_never_reach_the_status_line_or_metrics():
    """D' has one more message (a dead letter, a late event...): every input-side
    counter moves by one, and neither the public status nor /metrics does."""
    d = WorkerStats(messages=1000, accepted=990, dead_lettered=10, late=3, over_cap=2,
                    windows_open=4, windows_released=7, cells_released=40,
                    dead_letter_reasons={"bad_json": 10})
    d_prime = dataclasses.replace(d, messages=1001, accepted=991, dead_lettered=11, late=4,
                                  over_cap=3, windows_open=5,
                                  dead_letter_reasons={"bad_json": 11})
    assert d.public() == d_prime.public()
    assert _scrape(d) == _scrape(d_prime)


def test_the_check_catches_an_exported_input_count():
    """Negative control: exporting everything (the status line as it was) differs."""
    d = WorkerStats(messages=1000)
    d_prime = dataclasses.replace(d, messages=1001)
    assert vars(d) != vars(d_prime)


# --- the worker's log -------------------------------------------------------------
class _Producer:
    """Takes the worker's sends (the DLQ's own contents are the trusted zone)."""

    async def send(self, *args, **kwargs):
        return None


def _log_lines(caplog, messages: list[tuple[bytes, bytes]]) -> list[str]:
    """What the worker logs at INFO and above for one batch of raw messages."""
    import asyncio

    from aiokafka import TopicPartition

    from privmon.agents.stage1 import Stage1Partition
    from privmon.agents.stage1_runner import send_dead_letters
    from privmon.agents.worker_context import WorkerContext
    from privmon.privacy.noise_keys import NoiseKeys
    from privmon.streams.pseudonym import Pseudonymizer

    config = load_config()
    ctx = WorkerContext(config=config, bootstrap="unused:9", worker_id="t",
                        pseudonymizer=Pseudonymizer({0: b"k" * 32}),
                        noise_keys=NoiseKeys({0: b"n" * 32}), topic_partitions={})
    part = Stage1Partition(partition=0, policies=config.policies,
                           pseudonymizer=Pseudonymizer({0: b"k" * 32}), idle_lag_ms=0)
    records = [(i, k, v) for i, (k, v) in enumerate(messages)]
    caplog.clear()
    with caplog.at_level("INFO"):
        dead = part.ingest(records, now_ms=T0)
        asyncio.run(send_dead_letters(ctx, _Producer(), TopicPartition(config.topics.raw, 0),
                                      dead))
    return [r.getMessage() for r in caplog.records]


def _event(account: str) -> tuple[bytes, bytes]:
    import json

    return account.encode(), json.dumps({
        "account_id": account, "server": "fra-01", "region": "eu", "client_version": "5",
        "platform": "chrome", "latency_ms": 5.0, "bytes": 10, "error": False,
        "session_s": 1.0, "event_time_ms": T0}).encode()


def test_one_more_bad_message_changes_no_log_line(caplog):
    d = [_event(f"acct-{i}") for i in range(5)]
    d_prime = [*d, (b"acct-bad", b'{"account_id": "acct-bad", ')]  # truncated JSON
    assert _log_lines(caplog, d) == _log_lines(caplog, d_prime)


def test_the_check_catches_dead_letter_lines_at_warning(caplog, monkeypatch):
    """Negative control: dead-letter lines at WARNING, as they were, differ."""
    from privmon.agents.ratelimit import RateLimitedLog

    original = RateLimitedLog.log
    monkeypatch.setattr(RateLimitedLog, "log",
                        lambda self, level, *a: original(self, logging.WARNING, *a))
    d = [_event(f"acct-{i}") for i in range(5)]
    d_prime = [*d, (b"acct-bad", b'{"account_id": "acct-bad", ')]
    assert _log_lines(caplog, d) != _log_lines(caplog, d_prime)


def test_a_first_mark_from_an_ancient_event_time_does_not_flood_the_ledger():
    """Catch-up reaches back MAX_CATCHUP_WINDOWS windows at most, MAX_WINDOWS_PER_STEP
    per step; windows older than that get entries only if they had cells."""
    from privmon.agents.stage2 import MAX_CATCHUP_WINDOWS, MAX_WINDOWS_PER_STEP

    part = Stage2Partition(policies=(POLICY,), sources=1, noise_keys=KEYS)
    # e.g. an event of 1970 in a backlog: its window's end (a mark at 0 closed nothing,
    # and sets no time: test_stages.py)
    part.on_record(0, Mark(0, POLICY.name, W))
    part.on_record(1, Mark(0, POLICY.name, T0 + 100_000 * W))
    ready = part.releasable()
    assert len(ready) == MAX_WINDOWS_PER_STEP
    assert ready[0][1] == T0 + (100_000 - MAX_CATCHUP_WINDOWS) * W
