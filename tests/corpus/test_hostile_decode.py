"""Every hostile message gets exactly the dead-letter reasons the corpus states (no Kafka)."""

from __future__ import annotations

from privmon.agents.stage1 import Stage1Partition
from privmon.streams.config import load_config
from privmon.streams.pseudonym import Pseudonymizer
from tests.corpus.hostile import corpus

NOW = 1_800_000_000_000


def test_corpus_is_large_and_varied():
    entries = corpus(NOW)
    assert len(entries) >= 200
    reasons = {r for e in entries for r in e.reasons}
    assert reasons >= {
        "bad_json", "not_an_object", "bad_envelope", "oversize_message", "oversize_envelope",
        "too_deep", "missing_field", "wrong_type", "non_finite", "out_of_range",
        "time_out_of_range", "bad_unicode", "key_mismatch",
    }


def test_each_message_gets_its_reasons_and_counters_reconcile():
    part = Stage1Partition(partition=0, policies=load_config().policies,
                           pseudonymizer=Pseudonymizer({0: b"k" * 32}), idle_lag_ms=0)
    expected_dead = expected_accepted = 0
    for offset, entry in enumerate(corpus(NOW)):
        before = part.counts["accepted"]
        dead = part.ingest([(offset, entry.key, entry.value)], now_ms=NOW)
        assert tuple(d.reason for _, d in dead) == entry.reasons, entry.name
        assert part.counts["accepted"] - before == entry.accepted, entry.name
        expected_dead += len(entry.reasons)
        expected_accepted += entry.accepted
    assert part.counts["dead_lettered"] == expected_dead
    assert part.counts["accepted"] == expected_accepted
