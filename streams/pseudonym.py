"""Pseudonymization at ingest: account id -> keyed HMAC, with rotating keys.

The raw account id is replaced by HMAC-SHA256(key, id) truncated to 16 bytes
in the first stage and never stored, logged or forwarded. Keys come from the
environment (``PRIVMON_PSEUDONYM_KEYS``), never from configs/ or code:

    PRIVMON_PSEUDONYM_KEYS="2026-11-01=<64 hex chars>,2026-12-01=<64 hex chars>"

Each key is active from its UTC date on; an event uses the newest key active
at its event time. Rotation dates are day-aligned, and every window length
divides a day, so one account has one pseudonym within any window (bounding
per account stays correct across a rotation); across rotations pseudonyms
are unlinkable. Fails closed: no key, a short key or a malformed entry stops
the worker with a message saying what to set.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hmac
import os

ENV = "PRIVMON_PSEUDONYM_KEYS"
MIN_KEY_BYTES = 32


class KeyConfigError(ValueError):
    """PRIVMON_PSEUDONYM_KEYS is missing or malformed."""


class Pseudonymizer:
    def __init__(self, keys: dict[int, bytes]) -> None:
        if not keys:
            raise KeyConfigError(f"{ENV}: no keys; set it to DATE=HEXKEY[,DATE=HEXKEY...]")
        self._starts = sorted(keys)
        self._keys = [keys[s] for s in self._starts]

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Pseudonymizer:
        value = (environ if environ is not None else os.environ).get(ENV, "").strip()
        if not value:
            raise KeyConfigError(
                f"{ENV} is not set: privmon needs at least one secret key to pseudonymize "
                f"account ids. Generate one with `python -c \"import secrets; "
                f"print(secrets.token_hex(32))\"` and set {ENV}=2026-01-01=<that hex>"
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
                    f"{ENV}: entry #{number} (not shown: it holds a key): {exc}; expected "
                    "YYYY-MM-DD=<hex key>"
                ) from None
            if len(key) < MIN_KEY_BYTES:
                raise KeyConfigError(
                    f"{ENV}: key for {date} has {len(key)} bytes; expected >= {MIN_KEY_BYTES} "
                    "(64 hex characters)"
                )
            keys[int(start.timestamp() * 1000)] = key
        return cls(keys)

    def key_index(self, event_time_ms: int) -> int:
        i = bisect.bisect_right(self._starts, event_time_ms) - 1
        return max(i, 0)  # events before the first key's date use the first key

    def pseudonym(self, account_id: str, event_time_ms: int) -> bytes:
        key = self._keys[self.key_index(event_time_ms)]
        return hmac.digest(key, account_id.encode(), "sha256")[:16]  # one-shot C HMAC
