"""Pseudonymization at ingest: account id -> keyed HMAC, with rotating keys.

The raw account id is replaced by HMAC-SHA256(key, id) truncated to 16 bytes
in the first stage and never stored, logged or forwarded. Keys come from the
environment (``PRIVMON_PSEUDONYM_KEYS``, parsed by ``privacy/keys.py``), never from
configs/ or code:

    PRIVMON_PSEUDONYM_KEYS="2026-11-01=<64 hex chars>,2026-12-01=<64 hex chars>"

Each key is active from its UTC date on; an event uses the newest key active
at its event time. Rotation dates are day-aligned, and every window length
divides a day, so one account has one pseudonym within any window (bounding
per account stays correct across a rotation); across rotations pseudonyms
are unlinkable. Fails closed: no key, a short key or a malformed entry stops
the worker with a message saying what to set.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from privmon.privacy.keys import DatedKeys, KeyConfigError

ENV = "PRIVMON_PSEUDONYM_KEYS"

__all__ = ["ENV", "KeyConfigError", "Pseudonymizer"]


class Pseudonymizer:
    def __init__(self, keys: Mapping[int, bytes] | DatedKeys) -> None:
        self._keys = keys if isinstance(keys, DatedKeys) else DatedKeys(ENV, keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Pseudonymizer:
        return cls(DatedKeys.from_env(ENV, "pseudonymize account ids", environ))

    @property
    def keys(self) -> DatedKeys:
        return self._keys

    def key_index(self, event_time_ms: int) -> int:
        return self._keys.index(event_time_ms)

    def pseudonym(self, account_id: str, event_time_ms: int) -> bytes:
        key = self._keys.at(event_time_ms)
        return hmac.digest(key, account_id.encode(), "sha256")[:16]  # one-shot C HMAC
