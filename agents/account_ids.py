"""Dense ids for the pseudonyms one raw partition has seen, for stage 1's bounding and
participation cap (which work on ints), with each id's pseudonym and state bucket so
that the cap state can be saved per bucket (streams/participation_state.py).

  # pseudonyms (16 bytes each) -> first 8 bytes as int64 -> sorted runs -> candidate id
  #   -> the id's stored pseudonym equal to all 16 bytes? -> id (else: the clash dict)

A dict of a million pseudonyms costs ~145 bytes each (the key object, the int and the
slot); this index costs 16 (the prefix and the id, in agents/sorted_runs.py's
SortedRuns), and every id's 16 bytes are kept anyway (``pseudonyms``). Two
pseudonyms sharing an 8-byte prefix (about one pair in 10^7 at a million accounts)
cannot both sit in the runs: the later one goes to a small dict, and every lookup
the runs do not confirm byte for byte asks it, so an account always gets its own id
back, never another's and never a second one (tests/streams/test_stages.py checks
this against a plain dict, with forced clashes).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from privmon.agents import _columns
from privmon.agents.sorted_runs import SortedRuns
from privmon.agents.stage1_columns import dense_codes
from privmon.streams.participation_state import BUCKETS, PSEUDONYM_BYTES

RAW_ID_CACHE = 1 << 16  # (key period, raw id) entries (~10 MiB at most); cleared whole when full


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
        out = np.where(found, cand, -1)
        if self._clash:  # where the runs did not confirm: maybe a clash entry
            for i in np.flatnonzero(~found).tolist():
                out[i] = self._clash.get(pseudonyms[i], -1)
        fresh = np.flatnonzero(out < 0)
        if fresh.size:
            self._hand_out(pseudonyms, rows, prefix, cand, fresh, out)
        return out.tolist()

    def _hand_out(self, pseudonyms: list[bytes], rows: np.ndarray, prefix: np.ndarray,
                  cand: np.ndarray, fresh: np.ndarray, out: np.ndarray) -> None:
        """Ids for the pseudonyms at the indices ``fresh`` (unknown before this batch), in
        order, written to ``out``."""
        if (cand[fresh] < 0).all() and dense_codes(prefix[fresh])[1].size == fresh.size:
            # (the usual case, at once: distinct new pseudonyms whose prefixes are free)
            reuse = min(fresh.size, len(self._free))
            ids = np.concatenate([np.asarray(self._free[::-1][:reuse], np.int64),
                                  np.arange(self.size, self.size + fresh.size - reuse)])
            del self._free[len(self._free) - reuse:]
            self.size += fresh.size - reuse
            out[fresh] = ids
            self._store(ids, rows[fresh], prefix[fresh], ids)
            return
        new: dict[bytes, int] = {}  # (a pseudonym twice in the batch: one id)
        taken: set[int] = set()  # prefixes the runs get from this batch
        run_keys: list[int] = []
        run_ids: list[int] = []
        new_ids: list[int] = []
        new_rows: list[int] = []
        for i in fresh.tolist():
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
        self._store(np.asarray(new_ids, np.int64), rows[new_rows],
                    np.asarray(run_keys, np.int64), np.asarray(run_ids, np.int64))

    def _store(self, ids: np.ndarray, rows: np.ndarray, run_keys: np.ndarray,
               run_ids: np.ndarray) -> None:
        """New ids' pseudonym rows and buckets; their prefixes (those not clashing) into
        the runs."""
        self._reserve(self.size)
        self._pseudonyms[ids] = rows
        self._bucket[ids] = rows[:, 0] % BUCKETS  # bucket_of, for each
        order = np.argsort(run_keys, kind="stable")
        self._runs.insert(run_keys[order], run_ids[order])

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

    def prune(self, live: np.ndarray) -> int:
        """Forget every id not in ``live`` (a mask over ``size`` ids); an id is in use
        while its bucket is set (``id_of`` sets it, this clears it). Returns how many
        ids were freed (to be handed out again, to other pseudonyms)."""
        freed = np.flatnonzero((self._bucket[:self.size] >= 0) & ~live)
        if freed.size:
            self._runs.keep_values(live)
            self._clash = {k: v for k, v in self._clash.items() if live[v]}
            self._bucket[freed] = -1
            self._free += freed[::-1].tolist()
        return int(freed.size)


class Pseudonyms(Protocol):
    def pseudonym_under(self, key_index: int, account_id: bytes) -> bytes: ...


class RawIds:
    """(key period, raw account id) -> the id ``AccountIds`` gives its pseudonym.

    Stage 1's per-event lookup: one dict probe per event, and one HMAC plus one
    ``AccountIds`` lookup per (account, key period) while it stays cached. Bounded
    (cleared whole when full); raw ids are trusted-zone data, like the raw messages
    they come from, and never saved. An id ``AccountIds.prune`` frees may be handed
    to another pseudonym later, so ``forget`` drops the entries of freed ids
    (tests/streams/test_stages.py checks this against pseudonym lookups)."""

    def __init__(self, ids: AccountIds, pseudonymizer: Pseudonyms,
                 capacity: int = RAW_ID_CACHE) -> None:
        self.accounts = ids
        self.pseudonymizer = pseudonymizer
        self.capacity = capacity
        self._by_period: dict[int, dict[bytes, int]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def ids(self, periods: np.ndarray, accounts: list[bytes]) -> np.ndarray:
        """The id of each UTF-8 account id under the key period beside it (int64)."""
        n = len(accounts)
        out = np.full(n, -1, np.int64)
        if not n:
            return out
        first = int(periods[0])
        if not (periods == first).all():  # (rare: a batch across a key rotation)
            for p in np.unique(periods).tolist():
                at = np.flatnonzero(periods == p)
                out[at] = self.ids(periods[at], [accounts[i] for i in at.tolist()])
            return out
        cache = self._by_period.get(first)
        if cache is not None and not _columns.lookup(cache, accounts, out):
            return out  # (every one cached: one C loop of dict probes)
        at = np.flatnonzero(out < 0).tolist()
        unknown = [accounts[i] for i in at]
        new = list(dict.fromkeys(unknown))
        if self._size + len(new) > self.capacity:
            self._by_period.clear()
            self._size = 0
        pseudonym = self.pseudonymizer.pseudonym_under
        fresh = dict(zip(new, self.accounts.ids_of([pseudonym(first, a) for a in new]),
                         strict=True))
        self._by_period.setdefault(first, {}).update(fresh)
        self._size += len(fresh)
        out[at] = list(map(fresh.__getitem__, unknown))
        return out

    def forget(self, live: np.ndarray) -> None:
        """Drop the entries of ids not in ``live`` (a mask over ``AccountIds.size``)."""
        self._size = 0
        for p, cache in list(self._by_period.items()):
            ids = np.fromiter(cache.values(), np.int64, len(cache))
            keep = live[ids] if ids.size else ids.astype(bool)
            if not keep.all():
                cache = self._by_period[p] = {a: i for (a, i), k in
                                              zip(cache.items(), keep.tolist(), strict=True)
                                              if k}
            self._size += len(cache)


def _rows(pseudonyms: list[bytes]) -> np.ndarray:
    """uint8[n, PSEUDONYM_BYTES]; refuses any other length (the ids index 16 bytes)."""
    if any(len(p) != PSEUDONYM_BYTES for p in pseudonyms):
        raise ValueError(f"pseudonyms: expected {PSEUDONYM_BYTES} bytes each, got lengths "
                         f"{sorted({len(p) for p in pseudonyms})}")
    return np.frombuffer(b"".join(pseudonyms), np.uint8).reshape(-1, PSEUDONYM_BYTES)

