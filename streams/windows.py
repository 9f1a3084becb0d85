"""Event-time tumbling windows and the watermark that closes them.

A window of stream S is [start, start + window_ms). It closes for a stage-1
partition when the partition's watermark passes ``end + grace_ms``. The
watermark is the newest event time the partition has seen, but never less
than ``wall clock - idle_lag_ms``: an idle partition (or an idle topic) still
closes its windows idle_lag_ms after their grace period, so releases are not
held back. Nor is it ever ahead of the wall clock: a client with a clock in
the future cannot close everyone's windows early. Events of a closed window
are late: counted and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class WindowSpec:
    window_ms: int
    grace_ms: int

    def closed_up_to(self, watermark_ms: int) -> int:
        """End of the newest window closed at this watermark (windows ending <= it are closed)."""
        limit = watermark_ms - self.grace_ms
        return limit - limit % self.window_ms


class Watermark:
    """Per-partition event-time watermark with an idle fallback to wall-clock time."""

    def __init__(self, *, idle_lag_ms: int, start_ms: int = 0) -> None:
        self.idle_lag_ms = idle_lag_ms
        self.max_event_ms = start_ms

    def observe(self, event_time_ms: int) -> None:
        if event_time_ms > self.max_event_ms:
            self.max_event_ms = event_time_ms

    def value(self, now_ms: int, *, caught_up: bool = True) -> int:
        """The watermark now. While the partition is behind (replaying or lagging)
        only event time counts: the wall-clock fallback would close windows whose
        events are still unread."""
        event_time = min(self.max_event_ms, now_ms)
        return max(event_time, now_ms - self.idle_lag_ms) if caught_up else event_time
