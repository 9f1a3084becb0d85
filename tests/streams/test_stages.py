"""The two stages without Kafka: N partitions give one partition's totals; late and replay."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from privmon.agents.stage1 import Stage1Partition
from privmon.agents.stage1_messages import MessageReader
from privmon.agents.stage2 import LOOKBACK_WINDOWS, Stage2Partition
from privmon.streams.config import load_config
from privmon.streams.partials import decode, mark
from privmon.streams.pseudonym import Pseudonymizer
from tests.integration.pipeline_harness import FAST, known_input
from tests.privacy.keyed import KEYS

PSEUDO = Pseudonymizer({0: b"k" * 32})
POLICIES = load_config(FAST).policies
T0 = 1_800_000_000_000


def _run(partitions: int, messages, now_ms: int):
    """Feed messages to `partitions` stage-1 partitions (by key hash), close, combine."""
    stage1 = [Stage1Partition(partition=p, policies=POLICIES, pseudonymizer=PSEUDO,
                              idle_lag_ms=2000) for p in range(partitions)]
    for offset, (key, value) in enumerate(messages):
        stage1[zlib.crc32(key) % partitions].ingest([(offset, key, value)], now_ms=T0)
    stage2 = Stage2Partition(policies=POLICIES, sources=partitions, noise_keys=KEYS)
    offset = 0
    for part in stage1:
        partials, marks = part.close(now_ms=now_ms)
        for record in [*partials, *marks]:
            stage2.on_record(offset, decode(record.encode()))
            offset += 1
    totals = {}
    for stream, start in stage2.releasable():
        pending = stage2.pending.get((stream, start))
        if pending is None:  # a window without cells: an entry, no totals
            continue
        t, labels = pending.totals(stage2.policies[stream])
        for i, label in enumerate(labels):
            totals[(stream, start, label)] = (int(t.accounts[i]), int(t.events[i]),
                                              json.dumps({k: np.asarray(v[i]).tolist()
                                                          for k, v in t.columns.items()}))
    return stage1, stage2, totals


def test_four_partitions_give_the_same_true_totals_as_one():
    truth = known_input(T0, 3)
    later = T0 + 60_000
    _, _, one = _run(1, truth.messages, later)
    _, _, four = _run(4, truth.messages, later)
    assert one == four
    monitoring = {k: v for k, v in one.items() if k[0] == "monitoring"}
    assert len(monitoring) == 3 * 5  # 3 windows x (4 cells + the small one)
    for (_, start, cell), (accounts, events, _) in monitoring.items():
        assert accounts == truth.accounts[(start, cell)]
        assert events == truth.events[(start, cell)]


def test_no_release_until_every_partition_marked():
    truth = known_input(T0, 1)
    stage1, stage2, _ = _run(2, truth.messages, T0 + 60_000)
    assert stage2.releasable()
    lagging = Stage2Partition(policies=POLICIES, sources=3, noise_keys=KEYS)
    for offset, record in enumerate(stage1[0].close(now_ms=T0 + 60_000)[1]):
        lagging.on_record(offset, record)
    assert lagging.releasable() == []


def test_a_partition_that_closed_nothing_sets_no_time_for_stage_2():
    """A stage-1 partition with no progress and no watermark yet (after a restart,
    before its first fetch) marks every stream at 0 when another partition closes.
    Stage 2 must not take that for its first mark: the every-window rule would start
    at the epoch and release MAX_CATCHUP_WINDOWS empty windows per stream first."""
    fresh = Stage1Partition(partition=1, policies=POLICIES, pseudonymizer=PSEUDO,
                            idle_lag_ms=0)
    _, zero_marks = fresh.close(now_ms=T0, caught_up=False)
    assert {m.closed_up_to_ms for m in zero_marks} == {0}
    stage2 = Stage2Partition(policies=POLICIES, sources=2, noise_keys=KEYS)
    for m in zero_marks:
        stage2.on_record(0, m)
    for source in (0, 1):
        for policy in POLICIES:
            stage2.on_record(1, mark(source, policy.name, T0))
    ready = stage2.releasable()
    for policy in POLICIES:  # the lookback before the first real mark, and no more
        starts = [s for name, s in ready if name == policy.name]
        assert starts == list(range(T0 - LOOKBACK_WINDOWS * policy.window_ms, T0,
                                    policy.window_ms))


def test_late_events_are_counted_and_replayed_ones_skipped():
    truth = known_input(T0, 1)
    part = Stage1Partition(partition=0, policies=POLICIES, pseudonymizer=PSEUDO, idle_lag_ms=0)
    part.ingest([(0, *truth.messages[0])], now_ms=T0)
    partials, _ = part.close(now_ms=T0 + 60_000)
    assert partials
    part.ingest([(1, *truth.messages[1])], now_ms=T0 + 60_000)
    assert part.stream_counts["monitoring"]["late"] == 3
    # A restarted partition with this progress skips, not counts, replayed events.
    again = Stage1Partition(partition=0, policies=POLICIES, pseudonymizer=PSEUDO,
                            idle_lag_ms=0, progress=part.progress(), start_offset=0)
    again.ingest([(0, *truth.messages[0]), (1, *truth.messages[1])], now_ms=T0 + 60_000)
    assert again.stream_counts["monitoring"]["late"] == 0
    assert again.counts["replayed"] == 6 * len(POLICIES)
    assert again.open == {}


def test_a_restarted_partition_does_not_close_windows_before_replaying_them():
    """Regression: a watermark restored from progress closed open windows empty."""
    truth = known_input(T0, 2)
    part = Stage1Partition(partition=0, policies=POLICIES, pseudonymizer=PSEUDO, idle_lag_ms=0)
    part.ingest([(i, *m) for i, m in enumerate(truth.messages)], now_ms=T0)
    progress = part.progress()  # nothing closed yet: the windows are in the future
    again = Stage1Partition(partition=0, policies=POLICIES, pseudonymizer=PSEUDO,
                            idle_lag_ms=0, progress=progress, start_offset=0)
    partials, _ = again.close(now_ms=T0 + 60_000, caught_up=False)  # before any replay
    assert partials == []
    again.ingest([(i, *m) for i, m in enumerate(truth.messages)], now_ms=T0 + 60_000)
    partials, _ = again.close(now_ms=T0 + 60_000, caught_up=True)
    events = sum(sum(p.events) for p in partials if p.stream == "monitoring")
    assert events == sum(truth.events.values())


def test_a_window_recomputed_after_a_crash_is_byte_identical():
    """A fresh stage-2 partition (the restarted worker) reads the same committed
    partials and marks and releases the very same bytes: same totals, keyed noise."""
    truth = known_input(T0, 2)
    stage1 = Stage1Partition(partition=0, policies=POLICIES, pseudonymizer=PSEUDO,
                             idle_lag_ms=2000)
    stage1.ingest([(i, k, v) for i, (k, v) in enumerate(truth.messages)], now_ms=T0)
    partials, marks = stage1.close(now_ms=T0 + 60_000)
    wire = [r.encode() for r in [*partials, *marks]]

    def attempt() -> list[bytes]:
        stage2 = Stage2Partition(policies=POLICIES, sources=1, noise_keys=KEYS)
        for i, value in enumerate(wire):
            stage2.on_record(i, decode(value))
        out = []
        for stream, start in stage2.releasable():
            rel = stage2.release(stream, start)
            out += [r.to_json() for r in rel.records]
        return out

    first, second = attempt(), attempt()
    assert first and first == second


class _DictIds:
    """The reference: a dict from pseudonym to id, freed ids reused last-freed first
    (what AccountIds was before its numpy index)."""

    def __init__(self) -> None:
        self.ids: dict[bytes, int] = {}
        self.size = 0
        self.free: list[int] = []

    def id_of(self, p: bytes) -> int:
        if p not in self.ids:
            if self.free:
                self.ids[p] = self.free.pop()
            else:
                self.ids[p], self.size = self.size, self.size + 1
        return self.ids[p]

    def prune(self, live) -> None:
        freed = sorted(v for v in self.ids.values() if not live[v])
        self.ids = {k: v for k, v in self.ids.items() if live[v]}
        self.free += freed[::-1]


@pytest.mark.parametrize("clashes", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_account_ids_are_those_of_a_plain_dict(seed, clashes):
    """AccountIds (a numpy prefix index checked byte for byte, and a dict for
    pseudonyms whose 8-byte prefix another holds) hands out the ids a plain dict
    would, batch or one at a time, through prunes; with ``clashes`` the pool forces
    prefix clashes (many pseudonyms per prefix), so the clash path is taken, not just
    written; without, batches of new pseudonyms take the at-once path."""
    import random

    import numpy as np

    from privmon.agents.account_ids import AccountIds
    from privmon.streams.participation_state import BUCKETS

    rng = random.Random(seed)
    prefixes = [bytes(rng.randrange(256) for _ in range(8)) for _ in range(40)]
    pool = [(rng.choice(prefixes) if clashes else rng.randbytes(8)) + rng.randbytes(8)
            for _ in range(400)]
    ref, ids = _DictIds(), AccountIds(capacity=4)
    for step in range(60):
        chunk = [rng.choice(pool) for _ in range(rng.randrange(0, 80))]
        if step % 2:
            got = ids.ids_of(chunk)
        else:
            got = [ids.id_of(p) for p in chunk]
        assert got == [ref.id_of(p) for p in chunk]
        if step % 7 == 6:  # prune the same random half in both
            live = np.array([rng.random() < 0.5 for _ in range(ref.size)])
            ref.prune(live)
            ids.prune(live)
        assert ids.size == ref.size and ids.known() == ref.ids and len(ids) == len(ref.ids)
        known = np.array(sorted(ref.ids.values()), np.int64)
        by_id = {v: k for k, v in ref.ids.items()}
        assert ids.pseudonyms(known) == b"".join(by_id[i] for i in known.tolist())
        assert ids.buckets(known).tolist() == [by_id[i][0] % BUCKETS for i in known.tolist()]
    assert bool(ids._clash) == clashes  # the clash path was exercised (or not)


def _raw_ids_run(seed: int, *, forget: bool) -> list[tuple[list[int], list[int]]]:
    """RawIds through batches (some across a key rotation), prunes and cache clears:
    per batch, what it answered and what AccountIds says for the same pseudonyms."""
    import random

    import numpy as np

    from privmon.agents.account_ids import AccountIds, RawIds
    from privmon.streams.pseudonym import Pseudonymizer

    rng = random.Random(seed)
    pz = Pseudonymizer({0: b"a" * 32, 1: b"b" * 32})
    raw = RawIds(AccountIds(capacity=4), pz, capacity=50)
    pool = [f"acct-{i}".encode() for i in range(120)]
    out = []
    for step in range(80):
        accounts = [rng.choice(pool) for _ in range(rng.randrange(1, 60))]
        periods = np.array([rng.choice([0, 1]) if step % 5 == 4 else step // 40
                            for _ in accounts], np.int64)
        got = raw.ids(periods, accounts).tolist()
        want = raw.accounts.ids_of([pz.pseudonym_under(int(p), a)
                                    for p, a in zip(periods, accounts, strict=True)])
        out.append((got, want))
        if step % 6 == 5:  # free a random half of the ids, as a close's prune does
            live = np.array([rng.random() < 0.5 for _ in range(raw.accounts.size)])
            if raw.accounts.prune(live) and forget:
                raw.forget(live)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_raw_ids_give_the_ids_of_their_pseudonyms(seed):
    """RawIds (raw account id and key period -> dense id, cached) always gives the id
    AccountIds has for the account's pseudonym under that period's key, through cache
    clears, key rotations inside a batch and prunes whose freed ids go to others.
    Negative control: without ``forget`` after a prune, stale entries answer with ids
    that now belong to other pseudonyms, and the same comparison finds it."""
    assert all(got == want for got, want in _raw_ids_run(seed, forget=True))
    assert any(got != want for got, want in _raw_ids_run(seed, forget=False))


@pytest.mark.parametrize("seed", range(5))
def test_a_batch_of_single_events_is_read_as_the_per_message_path_reads_it(seed, monkeypatch):
    """Stage 1's batch path for one-event messages (one decode call, every key checked
    against its event's account id at once, ids from the raw-id cache) gives the same
    dead letters, counts and windows as the per-message path alone, on batches mixing
    matching keys, other accounts' keys, missing keys, keys with NUL bytes, envelopes
    and bad messages."""
    import random

    import privmon.agents.stage1_messages as messages_module

    rng = random.Random(seed)
    events = [(key, json.dumps(e).encode()) for key, value in known_input(T0, 2).messages
              for e in json.loads(value)["events"]]
    events = rng.sample(events, 400)
    records = []
    for offset, (key, value) in enumerate(events):
        roll = rng.random()
        if roll < 0.1:
            key = rng.choice([b"someone-else", None, key + b"\0", b"\0" + key])
        elif roll < 0.15:
            value = b'{"events": [' + value + b"]}"
        elif roll < 0.18:
            value = value[:-3]
        records.append((offset, key, value))

    def run(batch_path: bool):
        part = Stage1Partition(partition=0, policies=POLICIES, pseudonymizer=PSEUDO,
                               idle_lag_ms=2000)
        with monkeypatch.context() as m:
            if not batch_path:
                m.setattr(messages_module, "decode_singles",
                          lambda values, **_: [None] * len(values))
            dead = []
            for i in range(0, len(records), 64):
                dead += part.ingest(records[i:i + 64], now_ms=T0)
        partials, marks = part.close(now_ms=T0 + 10**9)
        return ([(o, d.reason, d.index) for o, d in dead], part.counts, part.reasons,
                part.stream_counts, sorted(p.encode() for p in partials))

    batch, alone = run(True), run(False)
    assert batch == alone
    assert {r for _, r, _ in batch[0]} >= {"key_mismatch"}  # the mix reached both paths


def _rows_by_pseudonym(part: Stage1Partition) -> set[tuple[str, int, bytes]]:
    """(stream, window start, pseudonym) of every row of every open window's table."""
    out = set()
    for (stream, start), window in part.open.items():
        ids = window.table._account[:len(window.table)].astype(np.int64)
        got = part.accounts.pseudonyms(ids)
        out |= {(stream, start, got[i * 16:(i + 1) * 16]) for i in range(ids.size)}
    return out


def _envelopes_across_a_rotation(seed: int):
    """Envelopes of one account each, many with events on both sides of a key rotation."""
    import random

    rng = random.Random(seed)
    rotation = T0 + 6_000
    events = [json.loads(e) for _, value in known_input(T0, 3).messages
              for e in [json.dumps(x) for x in json.loads(value)["events"]]]
    records, expected = [], set()
    pz = Pseudonymizer({0: b"a" * 32, rotation: b"b" * 32})
    for offset in range(300):
        account = f"acct-{rng.randrange(40)}"
        evs = [dict(rng.choice(events), account_id=account,
                    event_time_ms=rotation + rng.randrange(-3_000, 3_000))
               for _ in range(rng.randrange(1, 6))]
        value = json.dumps(evs[0] if len(evs) == 1 and rng.random() < 0.5
                           else {"events": evs}).encode()
        records.append((offset, account.encode(), value))
        for e in evs:
            for policy in POLICIES:
                start = e["event_time_ms"] - e["event_time_ms"] % policy.window_ms
                expected.add((policy.name, start,
                              pz.pseudonym(account, e["event_time_ms"])))
    return pz, records, expected


@pytest.mark.parametrize("seed", range(3))
def test_each_event_counts_under_its_own_key_periods_pseudonym(seed, monkeypatch):
    """Stage 1 finds the ids of a batch's larger messages once per (message, key
    period): every event's row is under the pseudonym of its own account and key
    period, also where one envelope spans a key rotation. Negative control: ids taken
    per message from its first event's period alone put the later events under the
    wrong pseudonym, and the same comparison finds it."""
    pz, records, expected = _envelopes_across_a_rotation(seed)

    def rows(naive: bool) -> set[tuple[str, int, bytes]]:
        part = Stage1Partition(partition=0, policies=POLICIES, pseudonymizer=pz,
                               idle_lag_ms=2000)
        with monkeypatch.context() as m:
            if naive:
                def first_period_only(self, ids, sizes, owners, time):
                    first = self.pseudonymizer.key_indices(time)[np.cumsum(sizes) - sizes]
                    found = self.raw_ids.ids(first, owners)
                    return np.repeat(np.where(ids < 0, found, ids), sizes)
                m.setattr(MessageReader, "ids", first_period_only)
            for i in range(0, len(records), 50):
                assert part.ingest(records[i:i + 50], now_ms=T0 + 10_000) == []
        return _rows_by_pseudonym(part)

    assert rows(naive=False) == expected
    assert rows(naive=True) != expected


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("small", [False, True])
def test_cell_codes_label_every_event_with_its_own_cell(seed, small, monkeypatch):
    """A batch's cell codes (values coded by the partition's DimCodes, kept across
    batches and started afresh past their limit) group exactly the events with equal
    dimension values, and label each group with those values; ``small`` also forces
    the combined codes to be re-numbered between dimensions."""
    import random

    import privmon.agents.stage1_columns as columns
    from privmon.agents.stage1_columns import Batch, DimCodes
    from privmon.streams.schema import TelemetryEvent

    if small:
        monkeypatch.setattr(columns, "_COMBINED_MAX", 16)
    rng = random.Random(seed)
    codes_kept = DimCodes(limit=5)
    dims = ("server", "region", "client_version", "platform")
    for _ in range(12):
        events = [TelemetryEvent(account_id="a", server=f"s{rng.randrange(9)}",
                                 region=rng.choice(["eu", "us", "ap"]),
                                 client_version=f"v{rng.randrange(4)}",
                                 platform=rng.choice(["linux", "mac"]), latency_ms=1.0,
                                 bytes=1, error=False, session_s=1.0, event_time_ms=T0)
                  for _ in range(rng.randrange(1, 80))]
        batch = Batch(events, [0] * len(events), list(range(len(events))), codes_kept)
        for chosen in (dims, dims[:2], ("platform", "server")):
            codes, labels = batch.cell_codes(chosen)
            want = [tuple(getattr(e, d) for d in chosen) for e in events]
            assert [labels[c] for c in codes.tolist()] == want
            assert len(labels) == len(set(want))  # one code per distinct cell
