"""Dense ids for the pseudonyms one raw partition has seen, for stage 1's bounding and
participation cap (which work on ints), with each id's pseudonym and state bucket so
that the cap state can be saved per bucket (streams/participation_state.py).

  # pseudonyms (16 bytes each) -> first 8 bytes as int64 -> sorted runs -> candidate id
  #   -> the id's stored pseudonym equal to all 16 bytes? -> id (else: the clash dict)

A dict of a million pseudonyms costs ~145 bytes each (the key object, the int and the
slot); this index costs 16 (the prefix and the id, in privacy/row_index.py's
SortedRuns), and every id's 16 bytes are kept anyway (``pseudonyms``). Two
pseudonyms sharing an 8-byte prefix (about one pair in 10^7 at a million accounts)
cannot both sit in the runs: the later one goes to a small dict, and every lookup
the runs do not confirm byte for byte asks it, so an account always gets its own id
back, never another's and never a second one (tests/streams/test_stages.py checks
this against a plain dict, with forced clashes).
"""

from __future__ import annotations

import numpy as np

from privmon.privacy.row_index import SortedRuns
from privmon.streams.participation_state import BUCKETS, PSEUDONYM_BYTES


class AccountIds:
    """Pseudonym -> id, reusing the ids of pruned pseudonyms first."""

    def __init__(self, capacity: int = 1024) -> None:
        self.size = 0  # ids ever handed out (free ones included)
        self._free: list[int] = []
        # id -> pseudonym bytes and state bucket (-1: free)
        self._pseudonyms = np.zeros((capacity, PSEUDONYM_BYTES), np.uint8)
        self._bucket = np.full(capacity, -1, np.int8)
        self._runs = SortedRuns()  # prefix -> id
        self._clash: dict[bytes, int] = {}  # pseudonyms whose prefix another one holds

    def __len__(self) -> int:
        """Pseudonyms with an id now."""
        return len(self._runs) + len(self._clash)

    def known(self) -> dict[bytes, int]:
        """Every pseudonym with its id (for tests and checks; O(size))."""
        out = {self._pseudonyms[i].tobytes(): i for i in self._runs.values().tolist()}
        out.update(self._clash)
        return out

    def id_of(self, pseudonym: bytes) -> int:
        return self.ids_of([pseudonym])[0]

    def ids_of(self, pseudonyms: list[bytes]) -> list[int]:
        """The id of each pseudonym, new ones handed out in order (free ids first)."""
        n = len(pseudonyms)
        if n == 0:
            return []
        rows = _rows(pseudonyms)
        prefix = rows[:, :8].copy().view("<i8").reshape(n)
        cand = self._runs.lookup(prefix)  # (not yet checked against all 16 bytes)
        found = cand >= 0
        found[found] = (self._pseudonyms[cand[found]] == rows[found]).all(axis=1)
        out = np.where(found, cand, -1).tolist()
        if self._clash:  # where the runs did not confirm: maybe a clash entry
            for i in np.flatnonzero(~found).tolist():
                out[i] = self._clash.get(pseudonyms[i], -1)
        fresh = [i for i, got in enumerate(out) if got < 0]
        if fresh:
            self._hand_out(pseudonyms, rows, prefix, cand, fresh, out)
        return out

    def _hand_out(self, pseudonyms: list[bytes], rows: np.ndarray, prefix: np.ndarray,
                  cand: np.ndarray, fresh: list[int], out: list[int]) -> None:
        """Ids for the pseudonyms at ``fresh`` (unknown before this batch), in order."""
        new: dict[bytes, int] = {}  # (a pseudonym twice in the batch: one id)
        taken: set[int] = set()  # prefixes the runs get from this batch
        run_keys: list[int] = []
        run_ids: list[int] = []
        new_ids: list[int] = []
        new_rows: list[int] = []
        for i in fresh:
            p = pseudonyms[i]
            got = new.get(p)
            if got is None:
                if self._free:
                    got = self._free.pop()
                else:
                    got = self.size
                    self.size += 1
                new[p] = got
                new_ids.append(got)
                new_rows.append(i)
                key = int(prefix[i])
                if cand[i] >= 0 or key in taken:  # the prefix is another pseudonym's
                    self._clash[p] = got
                else:
                    taken.add(key)
                    run_keys.append(key)
                    run_ids.append(got)
            out[i] = got
        self._reserve(self.size)
        ids = np.asarray(new_ids, np.int64)
        self._pseudonyms[ids] = rows[new_rows]
        self._bucket[ids] = rows[new_rows, 0] % BUCKETS  # bucket_of, for each
        keys = np.asarray(run_keys, np.int64)
        order = np.argsort(keys, kind="stable")
        self._runs.insert(keys[order], np.asarray(run_ids, np.int64)[order])

    def _reserve(self, size: int) -> None:
        while size > self._bucket.size:
            self._bucket = np.concatenate(
                [self._bucket, np.full(self._bucket.size, -1, np.int8)])
            self._pseudonyms = np.concatenate(
                [self._pseudonyms, np.zeros_like(self._pseudonyms)])

    def buckets(self, ids: np.ndarray) -> np.ndarray:
        """The state bucket of each id."""
        return self._bucket[ids]

    def pseudonyms(self, ids: np.ndarray) -> bytes:
        """The ids' pseudonyms, concatenated (PSEUDONYM_BYTES each)."""
        return self._pseudonyms[ids].tobytes()

    def by_bucket(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids sorted by bucket, start): bucket b's ids are ``ids[start[b]:start[b+1]]``."""
        of_id = self._bucket[:self.size]
        ids = np.argsort(of_id, kind="stable")  # free ids (-1) first
        return ids, np.searchsorted(of_id[ids], np.arange(BUCKETS + 1))

    def prune(self, live: np.ndarray) -> None:
        """Forget every id not in ``live`` (a mask over ``size`` ids); an id is in use
        while its bucket is set (``id_of`` sets it, this clears it)."""
        freed = np.flatnonzero((self._bucket[:self.size] >= 0) & ~live)
        if freed.size:
            self._runs.keep_values(live)
            self._clash = {k: v for k, v in self._clash.items() if live[v]}
            self._bucket[freed] = -1
            self._free += freed[::-1].tolist()


def _rows(pseudonyms: list[bytes]) -> np.ndarray:
    """uint8[n, PSEUDONYM_BYTES]; refuses any other length (the ids index 16 bytes)."""
    if any(len(p) != PSEUDONYM_BYTES for p in pseudonyms):
        raise ValueError(f"pseudonyms: expected {PSEUDONYM_BYTES} bytes each, got lengths "
                         f"{sorted({len(p) for p in pseudonyms})}")
    return np.frombuffer(b"".join(pseudonyms), np.uint8).reshape(-1, PSEUDONYM_BYTES)

