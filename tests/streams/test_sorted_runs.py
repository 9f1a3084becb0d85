"""SortedRuns (agents/sorted_runs.py, the index of agents/account_ids.py) finds what a
dict would, across its merges of the delta run into the main one."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from privmon.agents import sorted_runs
from privmon.agents.sorted_runs import SortedRuns


def _step(runs: SortedRuns, seen: dict[int, int], keys: np.ndarray) -> None:
    """Look ``keys`` up against the dict, then insert the new ones (as the next values)."""
    got = runs.lookup(keys).tolist()
    assert got == [seen.get(k, -1) for k in keys.tolist()]
    new = np.unique(keys[np.asarray(got) < 0])
    values = np.arange(len(seen), len(seen) + new.size)
    seen.update(zip(new.tolist(), values.tolist(), strict=True))
    runs.insert(new, values)
    assert len(runs) == len(seen)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2**62), max_size=80), max_size=30),
       st.integers(1, 64))
def test_lookups_are_those_of_a_dict(batches, min_delta):
    old = sorted_runs._MIN_DELTA
    sorted_runs._MIN_DELTA = min_delta  # merges early and often
    try:
        runs, seen = SortedRuns(), {}
        pool: list[int] = []
        for batch in batches:
            pool += batch
            # each batch: its own keys and about as many seen before, repeats included
            _step(runs, seen, np.array(batch + pool[::2][:len(batch)], np.int64))
        live = np.zeros(len(seen), bool)
        live[::3] = True
        runs.keep_values(live)
        kept = {k: v for k, v in seen.items() if live[v]}
        keys = np.array(list(seen), np.int64)
        assert runs.lookup(keys).tolist() == [kept.get(k, -1) for k in keys.tolist()]
        assert sorted(runs.values().tolist()) == sorted(kept.values())
    finally:
        sorted_runs._MIN_DELTA = old


def test_many_batches_of_repeating_keys_stay_exact():
    rng = np.random.default_rng(1)
    runs, seen = SortedRuns(), {}
    for _ in range(40):
        _step(runs, seen, rng.integers(0, 300_000, 5000))
    assert runs._keys.size > 0  # the main run was merged into (not only the delta)
