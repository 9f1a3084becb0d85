"""Pseudonyms: keyed, stable within a key period, unlinkable across rotation, fail closed."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from privmon.streams.pseudonym import KeyConfigError, Pseudonymizer

K1, K2 = "11" * 32, "22" * 32
ENV = {"PRIVMON_PSEUDONYM_KEYS": f"2026-11-01={K1},2026-12-01={K2}"}


def ms(date: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp() * 1000)


def test_pseudonym_is_the_hmac_of_the_active_key():
    p = Pseudonymizer.from_env(ENV)
    nov = ms("2026-11-20T10:00:00")
    assert p.pseudonym("acct-1", nov) == hmac.new(
        bytes.fromhex(K1), b"acct-1", hashlib.sha256
    ).digest()[:16]
    assert p.pseudonym("acct-1", nov) == p.pseudonym("acct-1", nov + 3_600_000)
    assert p.pseudonym("acct-1", nov) != p.pseudonym("acct-2", nov)
    # After rotation the same account gets an unrelated pseudonym.
    assert p.pseudonym("acct-1", ms("2026-12-01T00:00:00")) != p.pseudonym("acct-1", nov)
    assert p.pseudonym("acct-1", ms("2026-11-30T23:59:59")) == p.pseudonym("acct-1", nov)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "is not set"),
        (f"2026-11-01={'ab' * 8}", "has 8 bytes; expected >= 32"),
        (f"20261101={K1}", "expected YYYY-MM-DD=<hex key>"),
        ("2026-11-01=zz", "expected YYYY-MM-DD=<hex key>"),
        (K1, "expected DATE=HEXKEY"),
    ],
)
def test_bad_keys_fail_closed(value, fragment):
    with pytest.raises(KeyConfigError, match="PRIVMON_PSEUDONYM_KEYS") as info:
        Pseudonymizer.from_env({"PRIVMON_PSEUDONYM_KEYS": value})
    assert fragment in str(info.value)
    assert K1[:8] not in str(info.value)  # no part of a key appears in an error
