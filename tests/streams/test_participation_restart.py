"""The per-day window cap survives restarts (stage 1 without Kafka).

The worker commits ``take_state()`` with each close; a restarted partition
gets the latest record per key (what the compacted topic keeps) and replays
the raw topic from ``commit_offset()``. Emulated here exactly that way, with
crashes after every close at random cut points.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest

from privmon.agents.account_ids import AccountIds
from privmon.agents.stage1 import Stage1Partition
from privmon.privacy.params import ParticipationCap
from privmon.privacy.participation import DenseParticipationLimiter, open_recent
from privmon.streams.config import load_config
from privmon.streams.partials import cell_rows
from privmon.streams.participation_state import BUCKETS, StateChunk, bucket_of
from privmon.streams.pseudonym import Pseudonymizer
from tests.integration.pipeline_harness import FAST

PSEUDO = Pseudonymizer({0: b"k" * 32})
MONITORING = load_config(FAST).policy("monitoring")  # 4 s windows, 1 s grace
WINDOW_MS, GRACE_MS = MONITORING.window_ms, MONITORING.grace_ms
T0 = 1_800_000_000_000 - 1_800_000_000_000 % 86_400_000 + 3_600_000  # 01:00 UTC
CAP = 3
WINDOWS = 8


def _policy(max_windows: int = CAP):
    return replace(MONITORING, participation=ParticipationCap(max_windows=max_windows,
                                                              period_ms=86_400_000))


def _event(account: str, server: str, t: int) -> dict:
    return {"account_id": account, "server": server, "region": "eu", "client_version": "1",
            "platform": "chrome", "latency_ms": 10.0, "bytes": 100, "error": False,
            "session_s": 1.0, "event_time_ms": t}


def _raw_log() -> list[tuple[int, bytes, bytes]]:
    """Account "solo" (alone on server "solo") twice in each of WINDOWS windows; six
    other accounts once a window. In time order, as (offset, key, value)."""
    messages = []
    for w in range(WINDOWS):
        start = T0 + w * WINDOW_MS
        messages.append((start + 100, "solo", "solo"))
        messages += [(start + 1000 + i, f"acct-{i}", "x") for i in range(6)]
        messages.append((start + 2500, "solo", "solo"))
    return [(offset, account.encode(), json.dumps(_event(account, server, t)).encode())
            for offset, (t, account, server) in enumerate(messages)]


def _time(value: bytes) -> int:
    return json.loads(value)["event_time_ms"]


def _run(log, cuts: list[int], *, persist: bool, max_windows: int = CAP) -> list[bytes]:
    """Process ``log`` with a crash after each cut: ingest up to the cut, close what
    the time allows, commit (partials, progress, state, offset), then a fresh
    partition replays from the committed offset. Returns the committed partials."""
    policies = (_policy(max_windows),)
    topic: dict[bytes, bytes] = {}  # the compacted participation topic
    progress, committed, out = None, 0, []
    for cut in [*cuts, len(log)]:
        part = Stage1Partition(
            partition=0, policies=policies, pseudonymizer=PSEUDO, idle_lag_ms=0,
            progress=progress, start_offset=committed,
            participation=[StateChunk.decode(v) for v in topic.values()] if persist else ())
        batch = log[committed:cut]
        part.ingest(batch, now_ms=T0)
        now = _time(log[cut - 1][2]) if cut < len(log) else T0 + 10 * 86_400_000
        partials, _ = part.close(now_ms=now, caught_up=True)
        for key, value in part.take_state():  # the same transaction as the partials
            if value is None:
                topic.pop(key, None)
            else:
                topic[key] = value
        out += [p.encode() for p in partials]
        progress, committed = part.progress(), part.commit_offset()
    return sorted(out)


def _solo_windows(partials: list[bytes]) -> list[int]:
    rows = [r for p in partials for r in cell_rows(p)]
    return sorted(r.window_start_ms for r in rows if r.cell[0] == "solo" and r.accounts > 0)


@pytest.mark.parametrize("seed", range(25))
def test_restarts_at_random_points_change_nothing(seed):
    log = _raw_log()
    rnd = random.Random(seed)
    cuts = sorted(rnd.sample(range(1, len(log)), rnd.randint(1, 12)))
    uninterrupted = _run(log, [], persist=True)
    assert _solo_windows(uninterrupted) == [T0 + w * WINDOW_MS for w in range(CAP)]
    # Exactly the same partials, byte for byte: nothing admitted twice, nothing lost.
    assert _run(log, cuts, persist=True) == uninterrupted


def test_without_saved_state_a_restart_resets_the_cap():
    """The non-private variant (what the worker did before): every restart forgets
    the day's windows, and "solo" contributes to more than CAP windows."""
    log = _raw_log()
    cuts = [i for i, (_, _, v) in enumerate(log) if _time(v) % WINDOW_MS == 2500][:-1]
    assert len(_solo_windows(_run(log, cuts, persist=False))) > CAP
    assert len(_solo_windows(_run(log, cuts, persist=True))) == CAP


def test_state_is_saved_only_for_changed_buckets_and_pruned_with_the_period():
    log = _raw_log()
    part = Stage1Partition(partition=0, policies=(_policy(),), pseudonymizer=PSEUDO,
                           idle_lag_ms=0)
    part.ingest(log[:8], now_ms=T0)
    part.close(now_ms=T0 + WINDOW_MS + GRACE_MS)
    first = dict(part.take_state())
    pseudonyms = {PSEUDO.pseudonym(f"acct-{i}", T0) for i in range(6)}
    pseudonyms.add(PSEUDO.pseudonym("solo", T0))
    assert set(first) == {f"monitoring|{b}".encode() for b in {bucket_of(p) for p in pseudonyms}}
    saved = [StateChunk.decode(v) for v in first.values()]
    assert sorted(p for c in saved for p in c.pseudonym_list()) == sorted(pseudonyms)
    assert all((c.count == 1).all() and (c.period == T0 // 86_400_000).all() for c in saved)
    assert part.take_state() == []  # nothing changed since
    # Two days later the day's state is forgotten: every bucket becomes a tombstone.
    part.close(now_ms=T0 + 2 * 86_400_000)
    assert dict(part.take_state()) == dict.fromkeys(first)
    assert part.accounts.known() == {}  # and their ids are reused, not grown
    assert part.accounts.id_of(PSEUDO.pseudonym("new", T0)) < len(pseudonyms)


def test_state_chunk_round_trips_exactly_and_refuses_bad_input():
    rng = np.random.default_rng(0)
    n = 50
    chunk = StateChunk(stream="monitoring", bucket=7,
                       pseudonyms=rng.bytes(16 * n),
                       period=rng.integers(0, 30_000, n), count=rng.integers(0, 120, n,
                                                                             dtype=np.int32),
                       recent=rng.integers(-1, 2**40, (n, 4)))
    back = StateChunk.decode(chunk.encode())
    assert (back.stream, back.bucket, back.pseudonyms) == ("monitoring", 7, chunk.pseudonyms)
    assert back.pseudonym_list()[1] == chunk.pseudonyms[16:32]
    for name in ("period", "count", "recent"):
        assert np.array_equal(getattr(back, name), getattr(chunk, name)), name
    with pytest.raises(ValueError, match="16 bytes of pseudonym per row"):
        replace(chunk, pseudonyms=chunk.pseudonyms[:-1])
    assert 0 <= bucket_of(b"\xff" * 16) < BUCKETS


def test_a_restored_limiter_decides_like_the_original():
    cap = ParticipationCap(max_windows=3, period_ms=100)
    rng = np.random.default_rng(1)
    first = DenseParticipationLimiter(cap)
    accounts = rng.integers(0, 40, 400).tolist()
    windows = np.sort(rng.integers(0, 300, 400)) // 10 * 10
    first.admit(accounts[:200], windows[:200])
    ids = np.array(sorted(first.accounts()))
    moved = ids + 1000  # other dense ids after the restart
    second = DenseParticipationLimiter(cap, recent=2)  # narrower: keeps the newest
    second.restore(moved, *first.rows(ids))
    wide = DenseParticipationLimiter(cap)
    wide.restore(moved, *first.rows(ids))
    later_first = first.admit(accounts[200:], windows[200:])
    later_wide = wide.admit([a + 1000 for a in accounts[200:]], windows[200:])
    assert np.array_equal(later_first, later_wide)
    later_narrow = second.admit([a + 1000 for a in accounts[200:]], windows[200:])
    assert not (later_narrow & ~later_first).any()  # only ever drops more


def test_only_open_windows_stay_in_the_saved_recent_list():
    recent = np.array([[-1, 10, 30, 20], [-1, -1, -1, 5], [40, 50, 10, 60], [-1, -1, -1, -1]])
    kept = open_recent(recent, 15)
    assert kept.tolist() == [[-1, 30, 20], [-1, -1, -1], [40, 50, 60], [-1, -1, -1]]
    assert open_recent(recent, 100).shape == (4, 0)
    assert open_recent(np.zeros((0, 4), np.int64), 0).shape == (0, 0)


def test_an_account_one_stream_never_admitted_does_not_break_its_saved_state():
    """An account whose events came late for one stream but not for another has cap
    state in the second only; the first's arrays grow only to the ids it admitted.
    Saving the first stream's bucket that holds such an account must not index past
    them (bench.pipeline found it: a worker with the shipped three streams stopped
    with "index 13323 is out of bounds for axis 0 with size 13312")."""
    hourly = replace(_policy(), name="hourly", window_ms=3_600_000)
    part = Stage1Partition(partition=0, policies=(_policy(), hourly), pseudonymizer=PSEUDO,
                           idle_lag_ms=0)
    part.close(now_ms=T0 + WINDOW_MS + GRACE_MS)  # monitoring's window 0 closed, empty
    n = 2100  # (past twice the limiters' first 1,024 rows: they grow to exactly n)
    on_time = [(i, f"on-{i}".encode(),
                json.dumps(_event(f"on-{i}", "x", T0 + WINDOW_MS + 100)).encode())
               for i in range(n)]
    late = [(n + i, f"late-{i}".encode(),
             json.dumps(_event(f"late-{i}", "x", T0 + 100)).encode()) for i in range(100)]
    assert part.ingest(on_time, now_ms=T0) == []
    assert part.ingest(late, now_ms=T0) == []
    assert part.stream_counts["monitoring"]["late"] == 100  # (the premise)
    assert part.stream_counts["hourly"]["late"] == 0
    part.close(now_ms=T0 + WINDOW_MS + GRACE_MS + 1)
    saved: dict[str, list[bytes]] = {"monitoring": [], "hourly": []}
    for _, value in part.take_state():
        if value is not None:
            chunk = StateChunk.decode(value)
            saved[chunk.stream] += chunk.pseudonym_list()
    on = [PSEUDO.pseudonym(f"on-{i}", T0) for i in range(n)]
    late_ones = [PSEUDO.pseudonym(f"late-{i}", T0) for i in range(100)]
    assert sorted(saved["monitoring"]) == sorted(on)  # the late ones: no state there
    assert sorted(saved["hourly"]) == sorted(on + late_ones)


def _mixed_log(seed: int) -> list[tuple[int, bytes, bytes]]:
    """Out-of-order single events over ~12 monitoring windows: each up to 3 windows
    older than the newest so far (late for monitoring once it closed them, on time for
    an hourly stream). The accounts come and go (a pool of 20 that slides along the
    log: new accounts all the time, some seen only late), each on one server and with
    ~4 events in all: within the bounds (max_cells 1, 20 events a cell), so bounding
    samples nothing and the partials are a function of the input and the cap alone."""
    rnd = random.Random(seed)
    out, newest = [], T0
    for offset in range(300):
        newest += rnd.randint(0, 200)
        t = max(T0, newest - rnd.randint(0, 3 * WINDOW_MS))
        a = rnd.randrange(offset // 4, offset // 4 + 20)
        out.append((offset, f"a{a}".encode(),
                    json.dumps(_event(f"a{a}", f"s{a % 3}", t)).encode()))
    return out


def _run_closing(log, cuts: list[int], policies, *, restart: bool,
                 lose: str | None = None) -> list[bytes]:
    """Ingest ``log`` closing at each cut (now: the last event's time) and committing
    there; with ``restart``, a fresh partition from the committed state after each.
    ``lose``: a stream whose saved state never reaches the topic (a negative control)."""
    topic: dict[bytes, bytes] = {}
    part = Stage1Partition(partition=0, policies=policies, pseudonymizer=PSEUDO,
                           idle_lag_ms=0)
    out, done = [], 0
    for cut in [*cuts, len(log)]:
        part.ingest(log[part.next_offset if restart else done:cut], now_ms=T0)
        done = cut
        now = _time(log[cut - 1][2]) if cut < len(log) else T0 + 10 * 86_400_000
        partials, _ = part.close(now_ms=now, caught_up=True)
        for key, value in part.take_state():
            if lose is not None and key.startswith(f"{lose}|".encode()):
                continue
            if value is None:
                topic.pop(key, None)
            else:
                topic[key] = value
        out += [p.encode() for p in partials]
        if restart:
            offset = part.commit_offset()
            part = Stage1Partition(
                partition=0, policies=policies, pseudonymizer=PSEUDO, idle_lag_ms=0,
                progress=part.progress(), start_offset=offset,
                participation=[StateChunk.decode(v) for v in topic.values()])
    return sorted(out)


@pytest.mark.parametrize("seed", range(100))
def test_restarts_change_nothing_on_out_of_order_input_of_two_streams(seed, monkeypatch):
    """The search around the bug above: out-of-order input over two streams of
    different windows (events late for one, on time for the other), the ids' and
    limiters' arrays starting at 1 row (so they grow all the time), closes at random
    points: closing and saving never raises, and restarting from the saved state after
    every close gives byte for byte the partials of the run that never restarts."""
    monkeypatch.setattr(DenseParticipationLimiter.__init__, "__kwdefaults__",
                        {**DenseParticipationLimiter.__init__.__kwdefaults__, "capacity": 1})
    monkeypatch.setattr(AccountIds.__init__, "__defaults__", (1,))
    hourly = replace(_policy(), name="hourly", window_ms=3_600_000)
    policies = (_policy(), hourly)
    log = _mixed_log(seed)
    rnd = random.Random(seed)
    cuts = sorted(rnd.sample(range(1, len(log)), rnd.randint(1, 12)))  # (big batches too)
    kept = _run_closing(log, cuts, policies, restart=False)
    assert kept  # (the premise: windows with cells)
    assert _run_closing(log, cuts, policies, restart=True) == kept


LONG = replace(_policy(max_windows=2), name="long", window_ms=3 * WINDOW_MS)


def _returning_log(seed: int) -> list[tuple[int, bytes, bytes]]:
    """Eight accounts that come back window after window, over ~10 windows of LONG
    (3 monitoring windows each), a little out of order: both streams' caps bind."""
    rnd = random.Random(seed)
    out, newest = [], T0
    for offset in range(400):
        newest += rnd.randint(0, LONG.window_ms // 20)
        t = max(T0, newest - rnd.randint(0, WINDOW_MS // 2))
        a = rnd.randrange(8)
        out.append((offset, f"a{a}".encode(),
                    json.dumps(_event(f"a{a}", f"s{a % 3}", t)).encode()))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_a_stream_saved_only_at_its_own_closes_restarts_exactly(seed):
    """Stage 1 saves a stream's cap state only at closes of that stream's windows
    (agents/stage1.py's recovery contract): between them, restarts after the closes of
    the shorter stream alone replay the longer one's open windows from its older
    state. Byte for byte the partials of the run that never restarts."""
    policies = (_policy(), LONG)
    log = _returning_log(seed)
    rnd = random.Random(seed)
    cuts = sorted(rnd.sample(range(1, len(log)), rnd.randint(5, 30)))
    kept = _run_closing(log, cuts, policies, restart=False)
    assert kept
    assert _run_closing(log, cuts, policies, restart=True) == kept


def test_losing_the_longer_streams_saved_state_is_seen():
    """The negative control of the test above: the same runs, with LONG's saved state
    never reaching the topic, differ from the run without restarts (its accounts'
    closed windows are forgotten, and they are admitted to more)."""
    policies = (_policy(), LONG)
    for seed in range(5):
        log = _returning_log(seed)
        cuts = list(range(20, len(log), 20))
        kept = _run_closing(log, cuts, policies, restart=False)
        assert _run_closing(log, cuts, policies, restart=True) == kept
        assert _run_closing(log, cuts, policies, restart=True, lose="long") != kept
