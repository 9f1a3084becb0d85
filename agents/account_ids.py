"""Dense ids for the pseudonyms one raw partition has seen, for stage 1's bounding and
participation cap (which work on ints), with each id's pseudonym and state bucket so
that the cap state can be saved per bucket (streams/participation_state.py)."""

from __future__ import annotations

import numpy as np

from privmon.streams.participation_state import BUCKETS, PSEUDONYM_BYTES, bucket_of


class AccountIds:
    """Pseudonym -> id, reusing the ids of pruned pseudonyms first."""

    def __init__(self, capacity: int = 1024) -> None:
        self.ids: dict[bytes, int] = {}
        self.size = 0  # ids ever handed out (free ones included)
        self._free: list[int] = []
        # id -> pseudonym bytes and state bucket (-1: free)
        self._pseudonyms = np.zeros((capacity, PSEUDONYM_BYTES), np.uint8)
        self._bucket = np.full(capacity, -1, np.int8)

    def id_of(self, pseudonym: bytes) -> int:
        got = self.ids.get(pseudonym)
        if got is None:
            if self._free:
                got = self._free.pop()
            else:
                got = self.size
                self.size += 1
                self._reserve(self.size)
            self._bucket[got] = bucket_of(pseudonym)
            self._pseudonyms[got] = memoryview(pseudonym)
            self.ids[pseudonym] = got
        return got

    def ids_of(self, pseudonyms: list[bytes]) -> list[int]:
        """``id_of`` of each, with the new ids' rows written at once (the same ids
        as calling ``id_of`` in order: tests/streams/test_stages.py)."""
        known = self.ids
        out = [known.get(p, -1) for p in pseudonyms]
        fresh = [i for i, got in enumerate(out) if got < 0]
        if not fresh:
            return out
        new_ids: list[int] = []
        new_pseudonyms: list[bytes] = []
        for i in fresh:
            p = pseudonyms[i]
            got = known.get(p)  # (twice in one batch: the first gave it an id)
            if got is None:
                if self._free:
                    got = self._free.pop()
                else:
                    got = self.size
                    self.size += 1
                known[p] = got
                new_ids.append(got)
                new_pseudonyms.append(p)
            out[i] = got
        self._reserve(self.size)
        rows = np.frombuffer(b"".join(new_pseudonyms), np.uint8).reshape(-1, PSEUDONYM_BYTES)
        ids = np.asarray(new_ids, np.int64)
        self._pseudonyms[ids] = rows
        self._bucket[ids] = rows[:, 0] % BUCKETS  # bucket_of, for each
        return out

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
            self.ids = {k: v for k, v in self.ids.items() if live[v]}
            self._bucket[freed] = -1
            self._free += freed[::-1].tolist()
