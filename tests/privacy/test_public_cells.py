"""Public cells (the server inventory): every listed cell every window, none other.

By construction an account's presence cannot make a cell appear: the cells a
window publishes are the inventory (configuration) plus the one UNLISTED cell,
whatever the data. The neighbouring test below checks that through stage 1 and
stage 2; its negative control is the classic mistake, an "inventory" taken from
the data, which the same test catches.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from privmon.agents.stage1 import Stage1Partition
from privmon.agents.stage2 import Stage2Partition
from privmon.privacy.mechanisms import IntegerNoise
from privmon.privacy.params import UNLISTED, StreamPolicy
from privmon.privacy.window_parts import window_parts
from privmon.streams.config import load_config
from privmon.streams.generator import REGIONS
from privmon.streams.partials import decode, route
from privmon.streams.pseudonym import Pseudonymizer
from tests.privacy.keyed import KEYS

CONFIG = load_config()
MONITORING = CONFIG.policy("monitoring")
PSEUDO = Pseudonymizer({0: b"k" * 32})
T0 = 1_800_000_000_000 - 1_800_000_000_000 % 60_000


def _event(account: str, server: str, region: str, t: int) -> tuple[bytes, bytes]:
    event = {"account_id": account, "server": server, "region": region,
             "client_version": "5.2.1", "platform": "chrome", "latency_ms": 40.0,
             "bytes": 1000, "error": False, "session_s": 60.0, "event_time_ms": t}
    return account.encode(), json.dumps(event).encode()


def _windows(policy: StreamPolicy, messages: list[tuple[bytes, bytes]], partitions: int = 1,
             *, prepared: bool = False) -> dict[int, list[dict]]:
    """Window start -> its records (as dicts), through stage 1 and stage 2 (``prepared``:
    each window's noise drawn ahead first, as a worker does after its last release)."""
    stage1 = Stage1Partition(partition=0, policies=(policy,), pseudonymizer=PSEUDO,
                             idle_lag_ms=0)
    stage1.ingest([(i, k, v) for i, (k, v) in enumerate(messages)], now_ms=T0)
    partials, marks = stage1.close(now_ms=T0 + 10 * policy.window_ms)
    parts = [Stage2Partition(policies=(policy,), sources=1, noise_keys=KEYS,
                             partition=p, partitions=partitions) for p in range(partitions)]
    # as stage 1 sends them: each cell's partials to its key's partition, marks to all
    wire = [(q, value) for block in partials for _, value, q in route(block, partitions)]
    wire += [(q, m.encode()) for m in marks for q in range(partitions)]
    for offset, (q, value) in enumerate(wire):
        parts[q].on_record(offset, decode(value))
    out: dict[int, list[dict]] = {}
    for part in parts:
        for stream, start in part.releasable():
            if prepared:
                part.prepare_next()
                assert (stream, start) in part.prepared
            rel = part.release(stream, start)
            out.setdefault(start, []).extend(r.to_dict() for r in rel.records)
    return out


def _busy_input() -> list[tuple[bytes, bytes]]:
    """30 accounts on fra-01 in the first window; nothing anywhere else."""
    return [_event(f"a{i}", "fra-01", "eu-central", T0 + 1000 + i) for i in range(30)]


def test_every_listed_cell_gets_a_record_every_window_and_only_those():
    windows = _windows(MONITORING, _busy_input())
    listed = {tuple(c) for c in MONITORING.released_cells}
    assert len(listed) == 13 and (UNLISTED, UNLISTED) in listed  # 12 servers + unlisted
    assert len(windows) >= 2  # the busy window and the empty ones after it
    for start, records in windows.items():
        cells = [tuple(r["cell"][d] for d in MONITORING.dimensions) for r in records]
        assert sorted(cells) == sorted(listed), start
    first = {r["cell"]["server"]: r for r in windows[T0]}
    assert all(r["privacy"]["public_cells"] and r["privacy"]["delta"] == 0
               for r in windows[T0])
    # under k by the noisy account count: accounts alone, marked
    for r in windows[T0]:
        if r.get("under_k"):
            assert set(r["metrics"]) == {"accounts"}
            assert r["metrics"]["accounts"]["value"] < MONITORING.k
        else:
            assert "events" in r["metrics"] and r["metrics"]["accounts"]["value"] >= MONITORING.k
    assert first["fra-02"].get("under_k") or first["fra-02"]["metrics"]["accounts"]["value"] >= 20


@pytest.mark.parametrize("partitions", [1, 4])
def test_noise_drawn_ahead_is_the_noise_a_release_draws(partitions, monkeypatch):
    """Stage 2 draws a public window's noise before the window closes (its cells are
    the inventory); the records are the bytes of a release that draws it itself, and
    the release then draws nothing (every draw was made ahead)."""
    plain = _windows(MONITORING, _busy_input(), partitions)
    calls: list[int] = []
    draws = IntegerNoise.draws

    def counted(self, streams, width=1):
        calls.append(len(streams))
        return draws(self, streams, width)

    monkeypatch.setattr(IntegerNoise, "draws", counted)
    ahead = _windows(MONITORING, _busy_input(), partitions, prepared=True)
    assert json.dumps(ahead, sort_keys=True) == json.dumps(plain, sort_keys=True)
    quantities = 2 + len(MONITORING.metrics)  # accounts, events, each metric
    windows = sum(1 for _ in ahead)
    assert len(calls) == quantities * windows * partitions  # in prepare_next only


def test_partitions_share_the_listed_cells_without_overlap():
    one = _windows(MONITORING, _busy_input())
    four = _windows(MONITORING, _busy_input(), partitions=4)
    assert one.keys() == four.keys()
    for start in one:
        # the same cells, the same noisy counts (noise is keyed per cell; the quantiles'
        # bootstrap intervals depend on which cells share a partition)
        def key(r: dict) -> str:
            return json.dumps([r["cell"], r["metrics"]["accounts"],
                               r["metrics"].get("events")], sort_keys=True)
        assert sorted(map(key, one[start])) == sorted(map(key, four[start]))


@pytest.mark.parametrize("server", ["zzz-99", "fra-01x"])
def test_an_account_of_an_unlisted_server_opens_no_cell(server: str):
    d = _busy_input()
    d_prime = [*d, _event("newcomer", server, "eu-central", T0 + 5000)]
    w, w2 = _windows(MONITORING, d), _windows(MONITORING, d_prime)
    cells = {s: sorted(json.dumps(r["cell"]) for r in recs) for s, recs in w.items()}
    cells2 = {s: sorted(json.dumps(r["cell"]) for r in recs) for s, recs in w2.items()}
    assert cells == cells2  # the same cells on neighbouring inputs
    # the newcomer counts (noisily) in the unlisted cell, not in a cell of its own
    assert not any(r["cell"]["server"] == server for recs in w2.values() for r in recs)


def test_negative_control_an_inventory_taken_from_the_data_is_caught():
    """The same check on a pipeline whose 'public' cells are the cells seen in the data."""
    def from_data(messages):
        seen = sorted({(json.loads(v)["server"], json.loads(v)["region"]) for _, v in messages})
        return dataclasses.replace(MONITORING, public_cells=tuple(seen))

    d = _busy_input()
    d_prime = [*d, _event("newcomer", "zzz-99", "eu-central", T0 + 5000)]
    w, w2 = _windows(from_data(d), d), _windows(from_data(d_prime), d_prime)
    assert {json.dumps(r["cell"]) for r in w[T0]} != {json.dumps(r["cell"]) for r in w2[T0]}


def test_public_streams_spend_no_selection_delta():
    for name in ("monitoring", "capacity"):
        policy = CONFIG.policy(name)
        wp = window_parts(policy)
        assert policy.public_cells and wp.delta == 0
        assert wp.parts[0].kind == "laplace" and wp.parts[0].shift == 1
    research = CONFIG.policy("research")
    assert not research.public_cells and window_parts(research).delta == research.budget.delta


def test_the_inventory_lists_every_server_of_the_synthetic_telemetry():
    servers = {(s, r) for r, names in REGIONS.items() for s in names}
    assert set(MONITORING.public_cells) == servers
    assert set(CONFIG.policy("capacity").public_cells) == {(r, s) for s, r in servers}


def test_zero_totals_of_an_empty_listed_cell_are_noised_like_any_other():
    """An empty cell's record is noise around 0 (zero is a value), never a missing row."""
    windows = _windows(MONITORING, _busy_input())
    empty = [r for r in windows[T0] if r["cell"]["server"] == "tyo-01"]
    assert len(empty) == 1
    values = [r["metrics"]["accounts"]["value"] for recs in windows.values() for r in recs
              if r["cell"]["server"] != "fra-01"]
    assert np.std(values) > 5  # noise std ~57 at these parameters: not all zeros
