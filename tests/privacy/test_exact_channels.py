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
from types import MappingProxyType

import numpy as np

from agents.metrics import WorkerMetrics
from agents.stage2 import ledger_entry
from agents.worker import WorkerStats
from privacy.accumulators import CellTotals
from privacy.release import WindowRelease, release_window
from streams.config import load_config

POLICY = load_config().policy("monitoring")


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
                         random_state=np.random.RandomState(seed), bootstrap_seed=seed)
    stats = WorkerStats()
    stats.count_release(rel)
    metrics = WorkerMetrics()
    metrics.update(stats, {})
    text = "\n".join(f"{s.name} {s.value}" for fam in metrics.registry.collect()
                     for s in fam.samples)
    return rel, ledger_entry(POLICY, 0, 0, rel).to_json(), text


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
    assert [f.name for f in dataclasses.fields(WindowRelease)] == ["records"]


def test_the_check_catches_a_ledger_that_counts_cells():
    """Negative control: the ledger entry as it was (with the window's exact cell
    count) differs between D and D' on every draw."""
    def old_ledger(accounts: list[int], seed: int) -> bytes:
        rel, _, _ = _outputs(accounts, seed)
        return dataclasses.replace(ledger_entry(POLICY, 0, 0, rel)).to_json()[:-1] + (
            f', "cells_total": {len(accounts)}}}').encode()

    assert all(old_ledger([900] * 3, s) != old_ledger([900] * 3 + [1], s) for s in range(5))
