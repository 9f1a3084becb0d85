"""The worker's counters, and which of them may leave the trusted zone."""

from __future__ import annotations

from dataclasses import dataclass, field

from privmon.privacy.release import WindowRelease


@dataclass
class WorkerStats:
    """Operational counters (no identifiers).

    Only ``public()`` leaves the trusted zone (the status line, /metrics): what was
    released, and fault counters. The input-side counts (messages, accepted, dead
    letters, late, over-cap, open windows) are exact functions of the raw data (one
    account's message moves them by one), so they go only to the trusted status
    file (``privmon worker --trusted-status``), as restricted as the raw topic.
    """

    messages: int = 0
    accepted: int = 0
    dead_lettered: int = 0
    late: int = 0
    over_cap: int = 0
    windows_open: int = 0
    windows_released: int = 0
    cells_released: int = 0
    batches_isolated: int = 0  # stage-1 batches that raised: replayed message by message
    windows_failed: int = 0  # stage-2 windows quarantined (see Worker._release)
    closes_failed: int = 0  # stage-1 window closes that raised (quarantined by stage 2)
    partials_undecodable: int = 0  # partials-topic records stage 2 could not read
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)  # reason -> letters sent
    # Wall-clock seconds (time.time()) when stage 1 first took raw records to ingest
    # (start-up done: partitions assigned, committed state read), and when its latest
    # ingest returned: what bench/pipeline.py times a run by (0: not yet).
    # Trusted only, like the counts: they follow the input's arrival.
    first_read_s: float = 0.0
    last_ingest_s: float = 0.0

    PUBLIC = ("windows_released", "cells_released", "batches_isolated", "windows_failed",
              "closes_failed", "partials_undecodable")

    def public(self) -> dict[str, int]:
        """What may leave the trusted zone: released counts and fault counters."""
        return {name: getattr(self, name) for name in self.PUBLIC}

    def count_release(self, rel: WindowRelease) -> None:
        """A released (stream, window, partials partition): only what was published
        counts (tests/privacy/test_exact_channels.py)."""
        self.windows_released += 1
        self.cells_released += len(rel)
