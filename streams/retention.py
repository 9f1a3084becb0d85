"""How long each topic keeps what it holds: storage limitation as configuration.

The raw telemetry serves only the aggregates, so nothing privmon creates keeps
it longer than recovery needs:

  # raw, DLQ, partials: the longest window + grace of any stream (a window's
  #   events must be replayable until it is released) + a replay margin
  #   (how long the worker may be down and still recover)
  # participation state: the longest participation period + the margin
  #   (compact + delete: a period's state expires with it)
  # pseudonym and noise keys: refused at start once superseded for longer than
  #   the raw retention (nothing they could still be needed for is kept)

Progress and ledger are compacted and kept (offsets and what was spent, no
data); aggregate topics keep the broker's default (differentially private).
Every setting is in ``[retention]`` of the config and validated at start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from privmon.privacy.params import StreamPolicy

DAY_MS = 86_400_000


class RetentionError(ValueError):
    """A retention setting shorter than recovery needs (or malformed)."""


@dataclass(frozen=True, kw_only=True)
class Retention:
    """Retention per topic, in ms; ``replay_margin_ms`` is how long the worker may be
    down and still recover every open window from the raw topic."""

    replay_margin_ms: int
    raw_ms: int
    dlq_ms: int
    partials_ms: int
    participation_ms: int
    # delete the partials of released windows at once (agents/partials_cleanup.py)
    delete_released_partials: bool = True
    delete_every_s: float = 30.0

    @classmethod
    def for_policies(cls, policies: Sequence[StreamPolicy], *,
                     replay_margin_ms: int = DAY_MS, raw_ms: int | None = None,
                     dlq_ms: int | None = None, partials_ms: int | None = None,
                     participation_ms: int | None = None,
                     delete_released_partials: bool = True,
                     delete_every_s: float = 30.0) -> Retention:
        """Defaults from the streams; every given value is checked against them."""
        if isinstance(replay_margin_ms, bool) or not isinstance(replay_margin_ms, int) \
                or replay_margin_ms < 0:
            raise RetentionError(f"retention.replay_margin_ms = {replay_margin_ms!r}: expected "
                                 "an integer >= 0 (ms), e.g. 86400000 (one day)")
        open_ms = max(p.window_ms + p.grace_ms for p in policies)
        period_ms = max(p.participation.period_ms for p in policies)
        need_raw = open_ms + replay_margin_ms
        need_state = period_ms + replay_margin_ms
        raw = _checked("raw_ms", raw_ms, need_raw, need_raw,
                       "the longest window + grace of any stream + replay_margin_ms")
        dlq = _checked("dlq_ms", dlq_ms, raw, 1, "at least 1 ms")
        if dlq > raw:
            raise RetentionError(f"retention.dlq_ms = {dlq}: expected <= raw_ms ({raw}); dead "
                                 "letters hold raw payloads and are kept no longer than raw")
        partials = _checked("partials_ms", partials_ms, need_raw, need_raw,
                            "the longest window + grace of any stream + replay_margin_ms "
                            "(a window's partials are needed until it is released)")
        state = _checked("participation_ms", participation_ms, need_state, need_state,
                         "the longest participation period + replay_margin_ms")
        if not isinstance(delete_released_partials, bool):
            raise RetentionError("retention.delete_released_partials = "
                                 f"{delete_released_partials!r}: expected true or false")
        if isinstance(delete_every_s, bool) or not isinstance(delete_every_s, int | float) \
                or not 0 < delete_every_s <= 3600:
            raise RetentionError(f"retention.delete_every_s = {delete_every_s!r}: expected "
                                 "seconds in (0, 3600], e.g. 30")
        return cls(replay_margin_ms=replay_margin_ms, raw_ms=raw, dlq_ms=dlq,
                   partials_ms=partials, participation_ms=state,
                   delete_released_partials=delete_released_partials,
                   delete_every_s=float(delete_every_s))


def _checked(name: str, value: int | None, default: int, minimum: int, why: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RetentionError(f"retention.{name} = {value!r}: expected an integer (ms)")
    if value < minimum:
        raise RetentionError(f"retention.{name} = {value}: expected >= {minimum} ({why}); "
                             f"raise it or lower replay_margin_ms")
    return value
