"""Fuzz targets: one input in, invariants checked, any exception is a finding."""

from __future__ import annotations

import re

from privmon.agents.stage1 import Stage1Partition
from privmon.streams.config import load_config
from privmon.streams.decode import decode_message
from privmon.streams.pseudonym import Pseudonymizer
from tests.fuzz.oracle import LIMITS, NOW, check_decode

_ACCOUNT = re.compile(rb'"account_id"\s*:\s*"([^"\\]{1,128})"')
_POLICIES = load_config().policies


def decode_target(raw: bytes) -> None:
    check_decode(raw, decode_message(raw, now_ms=NOW, limits=LIMITS))


class IngestTarget:
    """Stage 1 on one partition, fed one (key, value) per call, as the worker does.
    The first byte picks the key: the message's own account id (so valid events
    get through to windows, the cap and bounding), none, or the next bytes."""

    def __init__(self) -> None:
        self.offset = 0
        self._new()

    def _new(self) -> None:
        self.part = Stage1Partition(partition=0, policies=_POLICIES,
                                    pseudonymizer=Pseudonymizer({0: b"k" * 32}), idle_lag_ms=0)

    def __call__(self, data: bytes) -> None:
        if not data:
            return
        mode, rest = data[0] % 4, data[1:]
        if mode == 0:
            key, value = rest[:16], rest[16:]
        elif mode == 1:
            key, value = None, rest
        else:
            found = _ACCOUNT.search(rest)
            key, value = (found.group(1) if found else b"acct"), rest
        if self.offset % 5000 == 0:  # bounded state across millions of runs
            self._new()
        part = self.part
        before = dict(part.counts)
        included = {n: dict(c) for n, c in part.stream_counts.items()}
        dead = part.ingest([(self.offset, key, value)], now_ms=NOW)  # must not raise
        self.offset += 1
        decoded = decode_message(value, now_ms=NOW, limits=LIMITS)
        assert part.counts["messages"] == before["messages"] + 1
        got_dead = part.counts["dead_lettered"] - before["dead_lettered"]
        got_accepted = part.counts["accepted"] - before["accepted"]
        assert got_dead == len(dead), (got_dead, len(dead))
        assert all(d.reason != "internal_error" for _, d in dead), [d.detail for _, d in dead]
        # Every item: accepted, or dead-lettered (decode's letters, plus key mismatches).
        items = len(decoded.events) + len(decoded.dead)
        assert got_accepted + got_dead == items, (got_accepted, got_dead, items)
        for name, counts in part.stream_counts.items():
            moved = sum(counts[k] - included[name][k] for k in ("included", "late", "over_cap"))
            assert moved == got_accepted, (name, moved, got_accepted)
