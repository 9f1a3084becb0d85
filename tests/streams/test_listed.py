"""streams/listed.py: a public stream's cells numbered by their rank in label order.

Stage 1 numbers a public window's cells by rank and routes them by the rank's
partition; the older path numbers cells in order of first sight, sorts their label
tuples and hashes each cell's partials key. Both must send the same bytes to the
same partitions, for any input: unlisted cells, the literal "(unlisted)" value,
values that sort around the listed ones. Stage 2's listed cells per partition
must be those the hash gives.

Byte for byte only where bounding is deterministic: L0 keeps a uniformly random
subset of an account's cells, by priorities drawn over the table's rows, and the
rows come in another order when the ids differ (the same distribution, another
draw for a given seed; test_bounding.py checks L0's uniformity). So the policy
here lets an account keep every cell (L0 slack), with few accounts, so that Linf
and accounts in many cells are exercised.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from privmon.agents.stage1 import Stage1Partition
from privmon.agents.stage1_runner import _closed
from privmon.privacy.params import UNLISTED, StreamPolicy
from privmon.streams.config import load_config
from privmon.streams.listed import CellOrder, ListedCells
from privmon.streams.partials import partial_keys
from privmon.streams.partitioner import partitions_for_keys
from privmon.streams.pseudonym import Pseudonymizer

CONFIG = load_config()
MONITORING = dataclasses.replace(CONFIG.policy("monitoring"), bounds=dataclasses.replace(
    CONFIG.policy("monitoring").bounds, max_cells=200, max_events_per_cell=3))
ACCOUNTS = 5
PSEUDO = Pseudonymizer({0: b"k" * 32})
W = MONITORING.window_ms
T0 = 1_800_000_000_000 - 1_800_000_000_000 % W
# listed values, values that sort before, between and after them, and UNLISTED itself
SERVERS = sorted({c[0] for c in MONITORING.public_cells})
REGIONS = sorted({c[1] for c in MONITORING.public_cells})
VALUES_SERVER = [*SERVERS, "a", "fra-01x", "zzz", UNLISTED, "é"]
VALUES_REGION = [*REGIONS, "eu", UNLISTED, "zz"]


class _Unordered(ListedCells):
    """The older path: no cell order (dense ids, a label sort, a hash per cell)."""

    def order(self, policy: StreamPolicy) -> CellOrder | None:
        return None


def _message(i: int, server: str, region: str, t: int) -> tuple[bytes, bytes]:
    account = f"a{i % ACCOUNTS}"
    event = {"account_id": account, "server": server, "region": region,
             "client_version": "5.2.1", "platform": "chrome", "latency_ms": float(i % 90),
             "bytes": 1000 + i, "error": i % 3 == 0, "session_s": 60.0, "event_time_ms": t}
    return account.encode(), json.dumps(event).encode()


def _sent(listed: ListedCells, messages: list[tuple[bytes, bytes]], partitions: int
          ) -> list[tuple[bytes | None, bytes, int | None]]:
    part = Stage1Partition(partition=0, policies=(MONITORING,), pseudonymizer=PSEUDO,
                           idle_lag_ms=0, listed=listed)
    part.rng = np.random.default_rng(5)  # (the same L0 subsets in both runs)
    for i in range(0, len(messages), 7):  # several batches: ids handed out across them
        part.ingest([(j, k, v) for j, (k, v) in enumerate(messages[i:i + 7], start=i)],
                    now_ms=T0)
    return _closed(part, T0 + 10 * W, True, partitions).out


@settings(max_examples=60, deadline=None)
@given(cells=st.lists(st.tuples(st.sampled_from(VALUES_SERVER), st.sampled_from(VALUES_REGION),
                                st.integers(0, 2)), min_size=1, max_size=80),
       partitions=st.integers(1, 5))
def test_ranked_cells_send_the_bytes_of_the_label_sort_and_the_hash(cells, partitions):
    messages = [_message(i, s, r, T0 + w * W + i) for i, (s, r, w) in enumerate(cells)]
    ranked = _sent(ListedCells(), messages, partitions)
    assert ranked == _sent(_Unordered(), messages, partitions)
    assert any(v.startswith(b'{"k":"partials"') for _, v, _ in ranked)


def test_the_private_stream_keeps_its_own_numbering():
    research = CONFIG.policy("research")
    assert ListedCells().order(research) is None


def test_ranks_follow_label_order_and_partitions_follow_the_hash():
    listed = ListedCells()
    order = listed.order(MONITORING)
    assert order is not None
    assert order.labels == sorted(MONITORING.released_cells)
    assert [order.rank[c] for c in order.labels] == list(range(len(order.labels)))
    assert order.labels[order.unlisted] == (UNLISTED, UNLISTED)
    for partitions in (1, 3, 4):
        where = listed.partitions(MONITORING, T0, partitions)
        expected = partitions_for_keys(partial_keys(MONITORING.name, T0, order.labels),
                                       partitions)
        assert where.tolist() == expected.tolist()
        here = [listed.here(MONITORING, T0, partitions, q).labels for q in range(partitions)]
        for q in range(partitions):  # what stage 2 releases: sorted, exactly its own cells
            mine = [c for c, p in zip(MONITORING.released_cells, partitions_for_keys(
                partial_keys(MONITORING.name, T0, MONITORING.released_cells), partitions
            ).tolist(), strict=True) if p == q]
            assert here[q] == sorted(mine)
        assert sum(map(len, here)) == len(MONITORING.released_cells)


def test_a_policy_changed_under_the_same_name_gets_its_own_order():
    listed = ListedCells()
    first = listed.order(MONITORING)
    fewer = dataclasses.replace(MONITORING, public_cells=MONITORING.public_cells[:3])
    second = listed.order(fewer)
    assert first is not None and second is not None
    assert len(second.labels) == 4 and second.labels == sorted(fewer.released_cells)
    assert listed.partitions(fewer, T0, 3).size == 4
