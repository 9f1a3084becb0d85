"""Integer key -> integer value in numpy sorted runs: agents/account_ids.py's index of
pseudonym prefixes.

A dict of a million int keys costs ~100 bytes per key; this costs 16 (the key
and its value, in sorted arrays). Two sorted runs: a main one and a small delta
that new keys are merged into, itself merged into the main run when it grows
past an eighth of it, so an insert moves O(1) memory amortized and a batch's
lookups are two vectorized binary searches.
"""

from __future__ import annotations

import numpy as np

_MIN_DELTA = 4096  # the delta stays a separate run until it holds at least this many


class SortedRuns:
    """int64 key -> int64 value (values >= 0; -1 means absent in ``lookup``)."""

    def __init__(self) -> None:
        self._keys = np.zeros(0, np.int64)
        self._values = np.zeros(0, np.int64)
        self._delta_keys = np.zeros(0, np.int64)
        self._delta_values = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return self._keys.size + self._delta_keys.size

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The value of each key, -1 where it has none."""
        keys = np.asarray(keys, np.int64)
        out = np.full(keys.size, -1, np.int64)
        for run_keys, run_values in ((self._keys, self._values),
                                     (self._delta_keys, self._delta_values)):
            if run_keys.size and keys.size:
                at = np.minimum(np.searchsorted(run_keys, keys), run_keys.size - 1)
                hit = run_keys[at] == keys
                out[hit] = run_values[at[hit]]
        return out

    def insert(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Add sorted, distinct ``keys`` that are not here yet, with their values."""
        if not len(keys):
            return
        self._delta_keys, self._delta_values = _merged(
            self._delta_keys, self._delta_values, np.asarray(keys, np.int64),
            np.asarray(values, np.int64))
        if self._delta_keys.size >= max(_MIN_DELTA, self._keys.size // 8):
            self._keys, self._values = _merged(self._keys, self._values,
                                               self._delta_keys, self._delta_values)
            self._delta_keys = np.zeros(0, np.int64)
            self._delta_values = np.zeros(0, np.int64)

    def values(self) -> np.ndarray:
        """Every value (in no particular order)."""
        return np.concatenate([self._values, self._delta_values])

    def keep_values(self, live: np.ndarray) -> None:
        """Drop every entry whose value is not set in the mask ``live``."""
        keep = live[self._values]
        self._keys, self._values = self._keys[keep], self._values[keep]
        keep = live[self._delta_values]
        self._delta_keys, self._delta_values = (self._delta_keys[keep],
                                                self._delta_values[keep])


def _merged(keys: np.ndarray, values: np.ndarray, new_keys: np.ndarray,
            new_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``keys`` with sorted ``new_keys`` (none of them in ``keys``) put in place."""
    at = np.searchsorted(keys, new_keys)
    return np.insert(keys, at, new_keys), np.insert(values, at, new_values)
