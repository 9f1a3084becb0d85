"""The worker's garbage-collector settings (agents/cli/worker.py quiet_gc): start-up's
objects leave later collections, and reference cycles made afterwards are still freed."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc, weakref
from privmon.agents.cli.worker import GC_GEN0_THRESHOLD, quiet_gc
quiet_gc()
assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD, gc.get_threshold()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
class Node:
    pass
a, b = Node(), Node()
a.other, b.other = b, a  # a cycle: only the collector frees it
gone = weakref.ref(a)
del a, b
assert gc.isenabled()  # (collections still run on their own, only less often)
gc.collect()
assert gone() is None
print("ok")
"""


def test_quiet_gc_freezes_start_up_and_still_collects_cycles():
    # (in its own interpreter: freezing this test process's objects would outlive the test)
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
