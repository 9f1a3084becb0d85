"""Each bad message is dead-lettered once across crashes, also when a replay closes
windows before it has caught up with what the crashed incarnation had read (the
kill soak found 9,457 letters sent twice that way)."""

from __future__ import annotations

import json
import random

import pytest

from privmon.agents.stage1 import Stage1Partition
from privmon.streams.config import load_config
from privmon.streams.progress import Progress
from privmon.streams.pseudonym import Pseudonymizer
from tests.integration.pipeline_harness import FAST

POLICIES = load_config(FAST).policies
T0 = 1_800_000_000_000
N = 400


def _log() -> list[tuple[int, bytes, bytes]]:
    out = []
    for offset in range(N):
        t = T0 + offset * 100  # 40 messages a 4-s window
        if offset % 7 == 3:
            out.append((offset, b"acct-bad", b'{"account_id": "acct-bad", '))
            continue
        account = f"acct-{offset % 13}"
        if offset % 50 == 20:  # a client clock a minute fast
            t += 60_000
        out.append((offset, account.encode(), json.dumps({
            "account_id": account, "server": "fra-01", "region": "eu", "client_version": "1",
            "platform": "chrome", "latency_ms": 1.0, "bytes": 1, "error": False,
            "session_s": 1.0, "event_time_ms": t}).encode()))
    return out


def _run(seed: int, *, fixed: bool = True) -> list[int]:
    """Crash after a random close, again and again (the wall clock reads ``lag`` later
    at each restart); return the committed letters' offsets."""
    rng = random.Random(seed)
    log = _log()
    committed_letters: list[int] = []
    progress, start = None, 0
    for incarnation in range(6):
        # A restart comes later in wall-clock time, so the wall-clock cap on a fast
        # client's event time lets a replay close windows sooner than the first run did.
        lag = incarnation * 20_000
        part = Stage1Partition(partition=0, policies=POLICIES, progress=progress,
                               pseudonymizer=Pseudonymizer({0: b"k" * 32}), idle_lag_ms=0,
                               start_offset=start)
        if not fixed:  # the old progress: next_offset could go back
            part.progress = lambda p=part: Progress(closed=dict(p.closed),
                                                    next_offset=p.next_offset)
        pending: list[int] = []
        crash_after = rng.randrange(1, 8) if incarnation < 5 else -1  # the last runs on
        offset, closes = start, 0
        while offset < N:
            batch = log[offset:offset + rng.randrange(1, 15)]
            offset += len(batch)
            pending += [o for o, _ in part.ingest(batch, now_ms=T0 + N * 100)]
            t = T0 + (offset - 1) * 100 + lag
            if part.due(now_ms=t, caught_up=False):
                part.close(now_ms=t, caught_up=False)
                committed_letters += pending  # the close's transaction commits them
                pending = []
                progress, start = part.progress(), part.commit_offset()
                closes += 1
                if closes == crash_after:
                    break  # SIGKILL: whatever is pending is aborted
        else:
            committed_letters += pending  # (the last incarnation runs to the end)
            break
    return committed_letters


@pytest.mark.parametrize("seed", range(30))
def test_every_bad_message_is_dead_lettered_exactly_once(seed):
    letters = _run(seed)
    bad = [o for o in range(N) if o % 7 == 3]
    assert sorted(letters) == bad


def test_the_old_progress_sends_letters_twice():
    """Negative control: with next_offset allowed to go back, some seed duplicates."""
    assert any(len(set(letters)) != len(letters) for letters in
               (_run(seed, fixed=False) for seed in range(30)))
