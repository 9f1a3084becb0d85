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

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from privmon.privacy.accumulators import CellTotals

SEP = "|"
VERSION = 1  # of the partial and mark records; another is refused (WireError)


class WireError(ValueError):
    """An internal record privmon cannot read: not JSON, not a known kind, a missing or
    mistyped field, or a version this code does not know."""


class Partial(msgspec.Struct, frozen=True, tag_field="k", tag="partial",
              rename={"partition": "p", "stream": "s", "window_start_ms": "w",
                      "accounts": "a", "events": "e", "columns": "m"}):
    partition: int
    stream: str
    window_start_ms: int
    cell: tuple[str, ...]
    accounts: int
    events: int
    columns: dict[str, int | list[int]]
    v: int = VERSION

    def key(self) -> bytes:
        return partial_key(self.stream, self.window_start_ms, self.cell)

    def encode(self) -> bytes:
        return _ENCODER.encode(self)


class Mark(msgspec.Struct, frozen=True, tag_field="k", tag="mark",
           rename={"partition": "p", "stream": "s", "closed_up_to_ms": "t",
                   "failed_by_window": "f"}):
    partition: int
    stream: str
    closed_up_to_ms: int
    # (window start, exception type) of failed closes; on the wire {"<start>": "<type>"}
    failed_by_window: dict[str, str] = {}
    v: int = VERSION

    @property
    def failed(self) -> tuple[tuple[int, str], ...]:
        return tuple((int(w), t) for w, t in self.failed_by_window.items())

    def encode(self) -> bytes:
        return _ENCODER.encode(self)


def partial_key(stream: str, window_start_ms: int, cell: Sequence[str]) -> bytes:
    """The partials topic key of a cell's partials: its partition is the cell's stage-2
    partition for that window (also where a public cell without partials is released)."""
    return SEP.join((stream, str(window_start_ms), *cell)).encode()


def mark(partition: int, stream: str, closed_up_to_ms: int,
         failed: Sequence[tuple[int, str]] = ()) -> Mark:
    """A Mark from (window start, exception type) pairs of failed closes."""
    return Mark(partition, stream, closed_up_to_ms, {str(w): t for w, t in failed})


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Partial | Mark)


def decode(value: bytes) -> Partial | Mark:
    """A partials-topic record, strictly: WireError names what is wrong."""
    return decode_strict(_DECODER, value, what="partials record", version=VERSION)


def decode_strict(decoder: msgspec.json.Decoder, value: bytes, *, what: str,
                  version: int) -> Any:
    """``value`` by ``decoder``, refusing what does not decode or has another version
    (every internal record carries ``v``), with WireError naming what is wrong."""
    try:
        record = decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise WireError(f"{what}: {exc}") from None
    if record.v != version:
        raise WireError(f"{what}: version {record.v}, this worker reads {version}; "
                        "run workers of one version on a pipeline")
    return record


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
