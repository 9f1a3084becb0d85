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


@pytest.mark.parametrize("key_bytes", [32, 63, 64, 65, 200])
def test_the_precomputed_pads_give_the_standard_hmac(key_bytes):
    """pseudonym_under keeps HMAC's padded key states; for any key length (a key
    over SHA-256's 64-byte block is hashed first) and any id it equals hmac."""
    import random

    rng = random.Random(key_bytes)
    key = bytes(rng.randrange(256) for _ in range(key_bytes))
    p = Pseudonymizer({0: key})
    for n in (0, 1, 55, 64, 200):
        account = bytes(rng.randrange(256) for _ in range(n))
        want = hmac.digest(key, account, "sha256")[:16]
        assert p.pseudonym_under(0, account) == want
        assert p.pseudonym_under(0, account) == want  # the pads are reused, not consumed


def test_key_indices_agree_with_key_index():
    import numpy as np

    p = Pseudonymizer.from_env(ENV)
    times = np.array([0, ms("2026-11-01T00:00:00") - 1, ms("2026-11-01T00:00:00"),
                      ms("2026-12-01T00:00:00") - 1, ms("2026-12-01T00:00:00"),
                      ms("2027-06-01T00:00:00")], np.int64)
    assert p.key_indices(times).tolist() == [p.key_index(int(t)) for t in times]
