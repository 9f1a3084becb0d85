"""A real `privmon worker` process with faults injected, for tests/integration/test_isolation.py.

    python -m tests.integration.faulty_worker worker --bootstrap ... (the CLI's arguments)

Environment:
- PRIVMON_TEST_POISON_SERVER: stage 1's batch work raises RuntimeError for any
  batch holding an event of this server (a bug past the per-message guards);
- PRIVMON_TEST_FAIL_STREAM: stage 2's release of every window of this stream
  raises ZeroDivisionError (a deterministic failure on one window);
- PRIVMON_TEST_CRASH_SERVER: the process dies of a segmentation fault (a native
  crash no handler sees) on any batch holding an event of this server.
"""

from __future__ import annotations

import ctypes
import os
import sys

from agents import stage1, stage2
from agents.cli import main

POISON = os.environ.get("PRIVMON_TEST_POISON_SERVER")
FAIL_STREAM = os.environ.get("PRIVMON_TEST_FAIL_STREAM")
CRASH = os.environ.get("PRIVMON_TEST_CRASH_SERVER")

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

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
