"""Storage limitation: retention per topic derived from the streams and validated,
and keys past their use refused at start."""

from __future__ import annotations

import datetime as dt

import pytest

from privmon.privacy.keys import DatedKeys, KeyConfigError
from privmon.streams.config import ConfigError, load_config
from privmon.streams.retention import DAY_MS, Retention, RetentionError
from privmon.streams.topics import retention_configs, topic_specs

CONFIG = load_config()


def test_defaults_are_what_recovery_needs_and_no_more():
    r = CONFIG.retention
    longest = max(p.window_ms + p.grace_ms for p in CONFIG.policies)  # capacity: 1 d + grace
    assert r.raw_ms == r.dlq_ms == r.partials_ms == longest + DAY_MS
    assert r.participation_ms == DAY_MS + DAY_MS
    specs = topic_specs(CONFIG, partitions=4)
    t = CONFIG.topics
    for topic in (t.raw, t.dlq, t.partials, t.participation):
        assert specs[topic][1]["retention.ms"] == retention_configs(CONFIG)[topic]["retention.ms"]
    assert specs[t.participation][1]["cleanup.policy"] == "compact,delete"
    assert specs[t.raw][1]["cleanup.policy"] == "delete"


@pytest.mark.parametrize(("given", "fragment"), [
    ({"raw_ms": 3_600_000}, "retention.raw_ms = 3600000: expected >= 173400000"),
    ({"partials_ms": 1}, "retention.partials_ms = 1: expected >= "),
    ({"participation_ms": DAY_MS}, "retention.participation_ms = 86400000: expected >= "),
    ({"dlq_ms": 10 * DAY_MS}, "expected <= raw_ms"),
    ({"replay_margin_ms": -1}, "retention.replay_margin_ms = -1"),
    ({"raw_ms": "2d"}, "retention.raw_ms = '2d': expected an integer"),
])
def test_too_short_or_malformed_retention_is_refused(given, fragment):
    with pytest.raises(RetentionError, match="retention") as info:
        Retention.for_policies(CONFIG.policies, **given)
    assert fragment in str(info.value)


def test_a_config_with_a_bad_retention_does_not_load(tmp_path):
    path = tmp_path / "streams.toml"
    (tmp_path / "inventory.toml").write_text((CONFIG.source.parent / "inventory.toml").read_text())
    path.write_text(CONFIG.source.read_text() + "\n[retention]\nraw_ms = 1000\n")
    with pytest.raises(ConfigError, match=r"retention.raw_ms = 1000: expected >= \d+"):
        load_config(path)
    path.write_text(CONFIG.source.read_text() + "\n[retention]\nraw_days = 3\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(path)


def _ms(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp() * 1000)


def test_keys_superseded_longer_than_the_raw_retention_are_refused():
    keys = DatedKeys("PRIVMON_NOISE_KEYS", {_ms("2026-10-01"): b"a" * 32,
                                            _ms("2026-11-01"): b"b" * 32})
    keys.refuse_expired(now_ms=_ms("2026-11-02"), keep_ms=2 * DAY_MS)  # still needed
    with pytest.raises(KeyConfigError, match="superseded on 2026-11-01") as info:
        keys.refuse_expired(now_ms=_ms("2026-11-04"), keep_ms=2 * DAY_MS)
    assert "destroy it" in str(info.value) and "PRIVMON_NOISE_KEYS" in str(info.value)
    # the newest key is never refused (it has no successor)
    DatedKeys("X", {_ms("2020-01-01"): b"c" * 32}).refuse_expired(
        now_ms=_ms("2026-11-04"), keep_ms=1)
