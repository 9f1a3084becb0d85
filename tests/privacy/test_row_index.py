"""RowIndex (the contribution table's key -> row index) hands out exactly the rows a
dict filled in key order would, across its merges of the delta run."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from privmon.privacy import row_index
from privmon.privacy.row_index import RowIndex


def _reference(seen: dict[int, int], keys: np.ndarray) -> tuple[list[int], list[bool]]:
    rows, fresh = [], []
    for k in keys.tolist():
        if k not in seen:
            seen[k] = len(seen)
            fresh.append(True)
        else:
            fresh.append(False)
        rows.append(seen[k])
    return rows, fresh


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2**62), max_size=80), max_size=30),
       st.integers(1, 64))
def test_rows_are_those_of_a_dict_filled_in_key_order(batches, min_delta):
    old = row_index._MIN_DELTA
    row_index._MIN_DELTA = min_delta  # merges early and often
    try:
        index, seen = RowIndex(), {}
        pool: list[int] = []
        for batch in batches:
            pool += batch
            # each batch: distinct sorted keys, half of them seen before
            keys = np.unique(np.array(batch + pool[::2][:len(batch)], np.int64))
            rows, fresh = index.rows_of(keys)
            want_rows, want_fresh = _reference(seen, keys)
            assert rows.tolist() == want_rows
            assert fresh.tolist() == want_fresh
            assert len(index) == len(seen)
    finally:
        row_index._MIN_DELTA = old


def test_many_batches_of_repeating_keys_stay_exact():
    rng = np.random.default_rng(1)
    index, seen = RowIndex(), {}
    for _ in range(40):
        keys = np.unique(rng.integers(0, 300_000, 5000))
        rows, _ = index.rows_of(keys)
        assert rows.tolist() == _reference(seen, keys)[0]
    assert index._runs._keys.size > 0  # the main run was merged into (not only the delta)
