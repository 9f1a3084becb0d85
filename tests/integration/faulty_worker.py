"""A real `privmon worker` process with faults injected, for tests/integration/test_isolation.py.

    python -m tests.integration.faulty_worker worker --bootstrap ... (the CLI's arguments)

Environment:
- PRIVMON_TEST_POISON_SERVER: stage 1's batch work raises RuntimeError for any
  batch holding an event of this server (a bug past the per-message guards);
- PRIVMON_TEST_FAIL_STREAM: stage 2's release of every window of this stream
  raises ZeroDivisionError (a deterministic failure on one window);
- PRIVMON_TEST_CRASH_SERVER: the process dies of a segmentation fault (a native
  crash no handler sees) on any batch holding an event of this server;
- PRIVMON_TEST_DIE_BEFORE_COMMIT=FILE:N: stage 2 kills its own process (SIGKILL)
  after the broker has release records of monitoring cells and before the
  transaction commits,
  the first N times over all runs (FILE counts them), so aborted copies of
  releases stay in the aggregate topics;
- PRIVMON_TEST_FRESH_NOISE=1: the deliberately broken variant of keyed noise, a new
  random key for every release attempt (as the old, unkeyed sampler behaved), for
  the negative control of tests/integration/test_recompute.py.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from pathlib import Path

from privmon.agents import kafka_stage, stage1, stage2, stage2_runner
from privmon.agents.cli import main
from privmon.privacy import records as records_schema

POISON = os.environ.get("PRIVMON_TEST_POISON_SERVER")
FAIL_STREAM = os.environ.get("PRIVMON_TEST_FAIL_STREAM")
CRASH = os.environ.get("PRIVMON_TEST_CRASH_SERVER")
DIE_BEFORE_COMMIT = os.environ.get("PRIVMON_TEST_DIE_BEFORE_COMMIT")
FRESH_NOISE = os.environ.get("PRIVMON_TEST_FRESH_NOISE")

if POISON:
    _ingest_batch = stage1.Stage1Partition._ingest_batch

    def _poisoned(self, batch):
        if any(e.server == POISON for e in batch.events):
            raise RuntimeError("injected fault")
        return _ingest_batch(self, batch)

    stage1.Stage1Partition._ingest_batch = _poisoned

if CRASH:
    _ingest_batch_c = stage1.Stage1Partition._ingest_batch

    def _crashing(self, batch):
        if any(e.server == CRASH for e in batch.events):
            ctypes.string_at(0)  # SIGSEGV
        return _ingest_batch_c(self, batch)

    stage1.Stage1Partition._ingest_batch = _crashing

if FAIL_STREAM:
    _release_window = stage2.release_window

    def _failing(totals, policy, **kw):
        if policy.name == FAIL_STREAM:
            raise ZeroDivisionError("injected fault")
        return _release_window(totals, policy, **kw)

    stage2.release_window = _failing

if DIE_BEFORE_COMMIT:
    _file, _, _times = DIE_BEFORE_COMMIT.rpartition(":")
    counter, times = Path(_file), int(_times)
    _send_many, _commit = stage2_runner.send_many, kafka_stage.Stage.commit
    released_in_txn: set[int] = set()

    async def _noting_send_many(producer, topic, records, partitions):
        await _send_many(producer, topic, records, partitions)  # returns once the broker has them
        # Only a transaction that sent a cell's release record counts: one with only
        # completion records (a window whose cells were all suppressed) leaves no
        # aborted copy of a cell to compare.
        if f".{topic}".endswith(".aggregates.monitoring") and any(
                json.loads(value).get("schema") == records_schema.SCHEMA
                for _key, value, _part in records):
            released_in_txn.add(id(producer))

    async def _dying_commit(self):
        if self.name == "s2" and id(self.producer) in released_in_txn:
            done = int(counter.read_text() or 0) if counter.exists() else 0
            if done < times:
                counter.write_text(str(done + 1))
                os.kill(os.getpid(), signal.SIGKILL)
            released_in_txn.discard(id(self.producer))
        await _commit(self)

    stage2_runner.send_many = _noting_send_many
    kafka_stage.Stage.commit = _dying_commit

if FRESH_NOISE:
    import secrets

    from privmon.privacy import noise_keys

    def _fresh(self, stream, policy_version, window_start_ms):
        return noise_keys.WindowNoise(secrets.token_bytes(32), stream, policy_version,
                                      window_start_ms)

    noise_keys.NoiseKeys.window = _fresh

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
