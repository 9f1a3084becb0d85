"""Stage 1's reading of raw messages: decode, check each event's account against the
message key, and find each event's dense account id (one HMAC per account and key
period while it stays in ``RawIds``). Stage1Partition (agents/stage1.py) windows,
caps and bounds what this gives.

  # (offset, key, value) records -> decode_singles (one batch call) or decode_message
  # -> events under their own key (else dead letters: key_mismatch and decode's own)
  # -> (event, dense account id) per accepted event
"""

from __future__ import annotations

from operator import attrgetter, itemgetter

import numpy as np

from privmon.agents.account_ids import RawIds
from privmon.agents.stage1_columns import event_times
from privmon.streams.decode import decode_message, decode_singles, event_spans
from privmon.streams.pseudonym import Pseudonymizer
from privmon.streams.schema import (
    DeadLetter,
    Decoded,
    InputLimits,
    TelemetryEvent,
    key_mismatch,
)

_ACCOUNT = attrgetter("account_id")
_KEY, _VALUE = itemgetter(1), itemgetter(2)  # of a raw (offset, key, value) record


class MessageReader:
    """Events and account ids from one raw partition's messages."""

    def __init__(self, pseudonymizer: Pseudonymizer, raw_ids: RawIds,
                 limits: InputLimits) -> None:
        self.pseudonymizer = pseudonymizer
        self.raw_ids = raw_ids
        self.limits = limits

    def singles(self, records: list[tuple[int, bytes | None, bytes | None]], now_ms: int
                ) -> tuple[list[TelemetryEvent | None], list[int]]:
        """Per record: the event of a one-event message accepted under its own key, and
        its account's dense id; None (and -1) for the per-message path (everything
        else, and all of the batch if anything here raises). Decoded in one batch
        call; one HMAC per (account, key period) while it stays in ``raw_ids``."""
        n = len(records)
        try:
            values = list(map(_VALUE, records))
            if None in values:
                values = [v or b"" for v in values]
            events = decode_singles(values, now_ms=now_ms,  # type: ignore[arg-type]
                                    limits=self.limits)
            take = range(n) if None not in events else [
                i for i, e in enumerate(events) if e is not None]
            got = [events[i] for i in take]
            accounts = list(map(_ACCOUNT, got))
            keys = list(map(_KEY, records)) if len(take) == n else [records[i][1] for i in take]
            joined = "\0".join(accounts)
            # Every key is its event's account id, compared all at once: with no NUL in
            # the ids (as many NULs as separators), equal joins mean equal parts.
            if not (None not in keys and joined.count("\0") == len(accounts) - 1
                    and b"\0".join(keys) == joined.encode()):  # type: ignore[arg-type]
                mine = [j for j, (a, k) in enumerate(zip(accounts, keys, strict=True))
                        if a.encode() == k]  # (a key mismatch: the per-message path says so)
                for j in sorted(set(range(len(take))) - set(mine)):
                    events[take[j]] = None
                take, got, keys = [take[j] for j in mine], [got[j] for j in mine], \
                    [keys[j] for j in mine]
            times = event_times(got)
            found = self.raw_ids.ids(self.pseudonymizer.key_indices(times), keys)  # type: ignore[arg-type]
            if len(take) == n:
                return events, found
            ids = [-1] * n
            for i, got_id in zip(take, found, strict=True):
                ids[i] = got_id
            return events, ids
        except Exception:  # per message, with its own guard
            return [None] * n, [-1] * n

    def message(self, key: bytes | None, raw: bytes, now_ms: int
                ) -> tuple[list[TelemetryEvent], bytes, list[DeadLetter]]:
        """One message: its accepted events, their account id (UTF-8: the message key's,
        which every accepted event carries), its dead letters."""
        decoded = decode_message(raw, now_ms=now_ms, limits=self.limits)
        evs, letters = decoded.events, decoded.dead
        if not evs:
            return [], b"", letters
        try:
            owner = key.decode() if key is not None else None
        except UnicodeDecodeError:
            owner = None
        if list(map(_ACCOUNT, evs)).count(owner) != len(evs):
            letters = letters + self._key_mismatches(raw, decoded, owner)
            evs = [e for e in evs if e.account_id == owner]
            if not evs:
                return [], b"", letters
        return evs, key, letters  # type: ignore[return-value]  (owner is not None: key isn't)

    def _key_mismatches(self, raw: bytes, decoded: Decoded, owner: str | None
                        ) -> list[DeadLetter]:
        spans = event_spans(raw)  # [] for a single event: the letter is the whole message
        out = []
        for j, e in enumerate(decoded.events):
            if e.account_id == owner:
                continue
            index = decoded.indices[j] if decoded.indices is not None else (j if spans else -1)
            span = spans[index] if index >= 0 else None
            out.append(key_mismatch(raw, index, span, self.limits))
        return out

    def ids(self, ids: np.ndarray, sizes: np.ndarray, owners: list[bytes],
            time: np.ndarray) -> np.ndarray:
        """Per event, its account's dense id: ``ids`` per message where known (-1: not
        yet), ``sizes`` its event count, ``owners`` its UTF-8 account id, ``time`` per
        event. One lookup per message whose events share a key period (the rule: a
        client's message spans seconds, a key period days), per event otherwise."""
        unknown = np.flatnonzero(ids < 0)
        if unknown.size == 0:
            return np.repeat(ids, sizes)
        periods = self.pseudonymizer.key_indices(time)
        first = periods[np.cumsum(sizes) - sizes]  # each message's first event's period
        if (periods == np.repeat(first, sizes)).all():
            ids[unknown] = self.raw_ids.ids(first[unknown], [owners[i] for i in unknown])
            return np.repeat(ids, sizes)
        per_event = np.repeat(ids, sizes)  # (rare: a message across a key rotation)
        at = np.flatnonzero(per_event < 0)
        owner_of = np.repeat(np.arange(len(owners)), sizes)[at].tolist()
        per_event[at] = self.raw_ids.ids(periods[at], [owners[i] for i in owner_of])
        return per_event
