"""Internal records between the two stages (topic ``privmon.partials``).

Unnoised and account-free, but as restricted as the raw topic: a partial
holds one stage-1 partition's exact, bounded totals of one cell.

    partial: {"k": "partial", "p": 3, "s": "monitoring", "w": 1764000000000,
              "cell": ["fra-01", "eu-central"], "a": 41, "e": 97,
              "m": {"latency": 1234, "errors": 2, "latency_hist": [0, 3, ...]}}
      key: "monitoring|1764000000000|fra-01|eu-central" (so one cell's partials
      from every stage-1 partition meet in one stage-2 partition)
    mark:    {"k": "mark", "p": 3, "s": "monitoring", "t": 1764000060000}
      "stage-1 partition 3 has emitted everything of stream monitoring for the
      windows ending at or before t"; sent to every stage-2 partition. With
      "f": {"1764000000000": "ValueError"}, closing those windows raised in
      that partition: stage 2 quarantines them (nothing published, failed in
      the ledger) rather than release them without that partition's part.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from privacy.accumulators import CellTotals

SEP = "|"


@dataclass(frozen=True)
class Partial:
    partition: int
    stream: str
    window_start_ms: int
    cell: tuple[str, ...]
    accounts: int
    events: int
    columns: dict[str, Any]  # int or list[int]

    def key(self) -> bytes:
        return SEP.join((self.stream, str(self.window_start_ms), *self.cell)).encode()

    def encode(self) -> bytes:
        return msgspec.json.encode({  # compact JSON, ~3x faster than json.dumps
            "k": "partial", "p": self.partition, "s": self.stream, "w": self.window_start_ms,
            "cell": list(self.cell), "a": self.accounts, "e": self.events, "m": self.columns,
        })


@dataclass(frozen=True)
class Mark:
    partition: int
    stream: str
    closed_up_to_ms: int
    failed: tuple[tuple[int, str], ...] = ()  # (window start, exception type) of failed closes

    def encode(self) -> bytes:
        d: dict[str, Any] = {"k": "mark", "p": self.partition, "s": self.stream,
                             "t": self.closed_up_to_ms}
        if self.failed:
            d["f"] = {str(w): t for w, t in self.failed}
        return json.dumps(d, separators=(",", ":")).encode()


def decode(value: bytes) -> Partial | Mark:
    d = json.loads(value)
    if d["k"] == "mark":
        failed = tuple((int(w), str(t)) for w, t in d.get("f", {}).items())
        return Mark(int(d["p"]), d["s"], int(d["t"]), failed)
    return Partial(int(d["p"]), d["s"], int(d["w"]), tuple(d["cell"]), int(d["a"]), int(d["e"]),
                   d["m"])


def partials_of(
    totals: CellTotals, labels: Sequence[tuple[str, ...]], *, partition: int, stream: str,
    window_start_ms: int,
) -> list[Partial]:
    """One Partial per cell of ``totals`` (cell ids index ``labels``)."""
    out = []
    for i, cell in enumerate(totals.cells.tolist()):
        out.append(Partial(
            partition=partition, stream=stream, window_start_ms=window_start_ms,
            cell=labels[cell], accounts=int(totals.accounts[i]), events=int(totals.events[i]),
            columns={k: np.asarray(v[i]).tolist() for k, v in totals.columns.items()},
        ))
    return out
