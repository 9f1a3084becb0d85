"""Integer key -> dense row id, in numpy: the (account, cell) index of a window's
contribution table (privacy/bounding.py).

A dict of a million int keys costs ~100 bytes per key; this costs 16 (the key
and its row, in sorted arrays). Two sorted runs: a main one and a small delta
that new keys are merged into, itself merged into the main run when it grows
past an eighth of it, so an insert moves O(1) memory amortized and a batch's
lookups are two vectorized binary searches.
"""

from __future__ import annotations

import numpy as np

_MIN_DELTA = 4096  # the delta stays a separate run until it holds at least this many


class RowIndex:
    def __init__(self) -> None:
        self.size = 0  # rows handed out: 0 .. size - 1
        self._keys = np.zeros(0, np.int64)
        self._rows = np.zeros(0, np.int64)
        self._delta_keys = np.zeros(0, np.int64)
        self._delta_rows = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return self.size

    def rows_of(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row of each key, mask of the keys new here) for sorted distinct ``keys``;
        new keys get the next rows in key order, as a dict filled in that order would."""
        keys = np.asarray(keys, np.int64)
        rows = np.full(keys.size, -1, np.int64)
        for run_keys, run_rows in ((self._keys, self._rows),
                                   (self._delta_keys, self._delta_rows)):
            if run_keys.size and keys.size:
                at = np.minimum(np.searchsorted(run_keys, keys), run_keys.size - 1)
                hit = run_keys[at] == keys
                rows[hit] = run_rows[at[hit]]
        fresh = rows < 0
        n = int(np.count_nonzero(fresh))
        if n:
            rows[fresh] = np.arange(self.size, self.size + n)
            self.size += n
            self._delta_keys, self._delta_rows = _merged(
                self._delta_keys, self._delta_rows, keys[fresh], rows[fresh])
            if self._delta_keys.size >= max(_MIN_DELTA, self._keys.size // 8):
                self._keys, self._rows = _merged(self._keys, self._rows,
                                                 self._delta_keys, self._delta_rows)
                self._delta_keys = np.zeros(0, np.int64)
                self._delta_rows = np.zeros(0, np.int64)
        return rows, fresh


def _merged(keys: np.ndarray, rows: np.ndarray, new_keys: np.ndarray, new_rows: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``keys`` with sorted ``new_keys`` (none of them in ``keys``) put in place."""
    at = np.searchsorted(keys, new_keys)
    return np.insert(keys, at, new_keys), np.insert(rows, at, new_rows)
