"""What the worker learns when processing a batch raises: which message to set aside.

Decoding and per-message work in stage 1 are total (a failure there dead-letters
that message). This is the second line, for a failure nobody foresaw in the
batch work after it (windows, the participation cap, bounding): such a failure
may have left the partition's state half-updated, so the stage rebuilds from
its committed state and replays, and this record, which outlives rebuilds,
tells the replay what to do differently:

1. ``BatchFailed`` (a batch of offsets ``first..last``) marks the range
   *suspect*: on replay its messages are processed one at a time.
2. ``MessageFailed`` (one message, alone) marks that offset *poison*: on
   replay it is dead-lettered as ``internal_error`` (the exception's type as
   detail) and skipped.

So each poison message costs at most two rebuilds, and the partition goes on.
Entries below a partition's committed offset are forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class IsolationNeeded(Exception):
    """Raised by ``Stage1Partition.ingest`` for a batch-level failure (see module)."""

    def __init__(self, partition: int, first: int, last: int, cause: BaseException) -> None:
        super().__init__(f"raw partition {partition}, offsets {first}..{last}: "
                         f"{type(cause).__name__}")
        self.partition, self.first, self.last = partition, first, last
        self.cause_type = type(cause).__name__


class BatchFailed(IsolationNeeded):
    """A batch of several messages failed: retry them one at a time."""


class MessageFailed(IsolationNeeded):
    """One message failed on its own: set it aside."""


@dataclass
class Quarantine:
    """Suspect offset ranges and poison offsets per raw partition (see module)."""

    suspect: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    poison: dict[int, dict[int, str]] = field(default_factory=dict)  # offset -> exception type

    def note(self, failure: IsolationNeeded) -> None:
        if isinstance(failure, MessageFailed):
            self.poison.setdefault(failure.partition, {})[failure.first] = failure.cause_type
        else:
            self.suspect.setdefault(failure.partition, []).append((failure.first, failure.last))

    def forget_below(self, partition: int, offset: int) -> None:
        """Offsets below ``offset`` are committed: never read again."""
        ranges = [r for r in self.suspect.get(partition, []) if r[1] >= offset]
        poison = {o: t for o, t in self.poison.get(partition, {}).items() if o >= offset}
        self.suspect[partition], self.poison[partition] = ranges, poison

    def is_suspect(self, partition: int, offset: int) -> bool:
        return any(lo <= offset <= hi for lo, hi in self.suspect.get(partition, ()))

    def poison_type(self, partition: int, offset: int) -> str | None:
        return self.poison.get(partition, {}).get(offset)

    def active(self, partition: int) -> bool:
        return bool(self.suspect.get(partition) or self.poison.get(partition))
