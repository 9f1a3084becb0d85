"""Secret keys that rotate by date, from the environment: parsed once, failing closed.

Both secret keys of privmon come this way, never from configs/ or code:

    PRIVMON_PSEUDONYM_KEYS="2026-11-01=<64 hex chars>,2026-12-01=<64 hex chars>"
    PRIVMON_NOISE_KEYS="2026-11-01=<64 hex chars>"

Each key is active from its UTC date on; ``DatedKeys.at(t_ms)`` is the newest key
active at ``t_ms``. No key, a short key or a malformed entry raises
``KeyConfigError`` naming the variable and what to set, never any part of a key.
"""

from __future__ import annotations

import bisect
import datetime as dt
import os
from collections.abc import Mapping

import numpy as np

MIN_KEY_BYTES = 32


class KeyConfigError(ValueError):
    """A key variable is missing or malformed."""


class DatedKeys:
    """Keys by the UTC day (as epoch ms) they become active."""

    def __init__(self, env: str, keys: Mapping[int, bytes]) -> None:
        if not keys:
            raise KeyConfigError(f"{env}: no keys; set it to DATE=HEXKEY[,DATE=HEXKEY...]")
        for start, key in keys.items():
            if len(key) < MIN_KEY_BYTES:
                raise KeyConfigError(f"{env}: key active from {start} ms has {len(key)} bytes; "
                                     f"expected >= {MIN_KEY_BYTES}")
        self.env = env
        self.starts = sorted(keys)
        self._keys = [keys[s] for s in self.starts]

    def index(self, t_ms: int) -> int:
        """Which key is active at ``t_ms`` (times before the first key use the first)."""
        return max(bisect.bisect_right(self.starts, t_ms) - 1, 0)

    def at(self, t_ms: int) -> bytes:
        return self._keys[self.index(t_ms)]

    def indices(self, t_ms: np.ndarray) -> np.ndarray:
        """``index`` of each time, at once."""
        found = np.searchsorted(np.asarray(self.starts, np.int64), t_ms, side="right") - 1
        return np.maximum(found, 0)

    def key(self, index: int) -> bytes:
        return self._keys[index]

    def refuse_expired(self, *, now_ms: int, keep_ms: int) -> None:
        """Refuse keys superseded more than ``keep_ms`` ago (the raw retention):
        nothing they could still be needed for is kept, so they must be destroyed,
        and a worker that still holds one does not start."""
        for start, successor in zip(self.starts, self.starts[1:], strict=False):
            if successor + keep_ms < now_ms:
                day = dt.datetime.fromtimestamp(start / 1000, dt.UTC).date()
                until = dt.datetime.fromtimestamp(successor / 1000, dt.UTC).date()
                raise KeyConfigError(
                    f"{self.env}: the key active from {day} was superseded on {until}, more "
                    f"than the raw retention ({keep_ms} ms) ago: no data it could still be "
                    f"needed for is kept. Remove it from {self.env} and destroy it.")

    @classmethod
    def from_env(cls, env: str, purpose: str,
                 environ: Mapping[str, str] | None = None) -> DatedKeys:
        value = (environ if environ is not None else os.environ).get(env, "").strip()
        if not value:
            raise KeyConfigError(
                f"{env} is not set: privmon needs at least one secret key to {purpose}. "
                "Generate one with `python -c \"import secrets; print(secrets.token_hex(32))\"` "
                f"and set {env}=2026-01-01=<that hex>"
            )
        keys: dict[int, bytes] = {}
        for number, entry in enumerate(value.split(","), start=1):
            date, sep, hexkey = entry.strip().partition("=")
            try:
                if not sep:
                    raise ValueError("expected DATE=HEXKEY")
                start = dt.datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=dt.UTC)
                key = bytes.fromhex(hexkey)
            except ValueError as exc:
                raise KeyConfigError(
                    f"{env}: entry #{number} (not shown: it holds a key): {exc}; expected "
                    "YYYY-MM-DD=<hex key>"
                ) from None
            if len(key) < MIN_KEY_BYTES:
                raise KeyConfigError(
                    f"{env}: key for {date} has {len(key)} bytes; expected >= {MIN_KEY_BYTES} "
                    "(64 hex characters)"
                )
            keys[int(start.timestamp() * 1000)] = key
        return cls(env, keys)
