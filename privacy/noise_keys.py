"""Where release noise comes from: a secret noise key and what is being noised.

  # (noise key of the window's day, stream, policy version, window, cell, quantity)
  #   -> KeyedStream (privacy/samplers.py) -> that quantity's exact draws

Noise is a pure function of this context and the key, so a release recomputed
after a crash, a fencing or a timeout is byte-identical to the aborted attempt:
a reader who sees both (``read_uncommitted``) gets the same value twice, not
two draws to average. That is safe only because a window's exact totals cannot
differ between attempts: stage 2 releases a window once every stage-1
partition has committed a mark past it, in the same transaction as its last
partials, and a stage-1 partition never writes a partial for a window at or
before its committed mark (agents/stage1.py); same partials, same totals.

The key (``PRIVMON_NOISE_KEYS``, dated like the pseudonym keys, see
``privacy/keys.py``) is required: without it the worker does not start. It
is never logged. Rotating it changes every later window's noise, and nothing
else; a policy version is part of the context, so a new policy draws anew.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from privmon.privacy.keys import DatedKeys
from privmon.privacy.samplers import KeyedStream

ENV = "PRIVMON_NOISE_KEYS"
_CONTEXT = "privmon.noise/1"


class WindowNoise:
    """The noise streams of one (stream, policy version, window)."""

    def __init__(self, key: bytes, stream: str, policy_version: str, window_start_ms: int) -> None:
        self._key = key
        self._prefix = [_CONTEXT, stream, policy_version, int(window_start_ms)]

    def stream(self, cell: Sequence[str], quantity: str) -> KeyedStream:
        """The stream of one quantity ("accounts", "events", a metric, "bootstrap:...")."""
        context = json.dumps([*self._prefix, list(cell), quantity], separators=(",", ":"))
        return KeyedStream(self._key, context.encode())

    def streams(self, cells: Sequence[Sequence[str]], quantity: str) -> list[KeyedStream]:
        return [self.stream(c, quantity) for c in cells]


class NoiseKeys:
    """The dated noise keys; ``window(...)`` picks the key of the window's start."""

    def __init__(self, keys: Mapping[int, bytes] | DatedKeys) -> None:
        self._keys = keys if isinstance(keys, DatedKeys) else DatedKeys(ENV, keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NoiseKeys:
        return cls(DatedKeys.from_env(ENV, "draw release noise", environ))

    @property
    def keys(self) -> DatedKeys:
        return self._keys

    def window(self, stream: str, policy_version: str, window_start_ms: int) -> WindowNoise:
        return WindowNoise(self._keys.at(window_start_ms), stream, policy_version,
                           window_start_ms)

    def __repr__(self) -> str:  # never the keys
        return f"NoiseKeys({len(self._keys.starts)} keys)"
