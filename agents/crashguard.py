"""A process that dies outright on the same messages must not die on them forever.

Exceptions are isolated in-process (agents/isolation.py), but a native crash
(a segfault in an extension) or the kernel's OOM killer ends the process
before any handler runs, and the restarted worker would replay the same
messages into the same death. So around each batch it hands to stage 1 the
worker notes, in a small local file, which raw messages are in flight; a
clean return clears the note. A process that starts and finds a note knows
that its predecessor died while those messages were being processed:

- a batch of several messages in flight at a death becomes *suspect* in the
  quarantine: processed one message at a time from then on;
- a single message in flight at two deaths becomes *poison*: dead-lettered as
  ``internal_error`` with detail ``ProcessDied`` and skipped.

So a message that kills the process costs about three restarts, then the
partition goes on. A kill for another reason while a batch is in flight
(an operator's SIGKILL) only makes that batch slower once; it takes two
deaths with the same single message in flight to set one aside, and that is
logged and counted like any dead letter. The note holds offsets only, no
client data. The file is per worker id; without one (``path`` None) there is
no guard. See SECURITY.md.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from privmon.agents.isolation import BatchFailed, MessageFailed, Quarantine

log = logging.getLogger("privmon.worker")

POISON_AFTER_DEATHS = 2


class ProcessDied(Exception):
    """Stands for the death itself when it is noted in the quarantine."""


class CrashGuard:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.deaths: dict[tuple[int, int, int], int] = {}  # (partition, first, last) -> n
        self._inflight = False
        self._fd: int | None = None  # the note, open for writing in place
        self._size = 0  # of the longest note written: a shorter one is padded to it

    def load(self, quarantine: Quarantine) -> None:
        """At start: count a death for what was in flight, and quarantine accordingly."""
        if self.path is None or not self.path.exists():
            return
        try:
            state = json.loads(self.path.read_text())
            self.deaths = {tuple(k): n for *k, n in state.get("deaths", [])}
            inflight = state.get("inflight")
        except (OSError, ValueError, TypeError) as exc:
            log.warning("crash guard: unreadable %s (%s); starting without it", self.path,
                        type(exc).__name__)
            self.deaths, inflight = {}, None
        if inflight is not None:
            key = (int(inflight[0]), int(inflight[1]), int(inflight[2]))
            self.deaths[key] = self.deaths.get(key, 0) + 1
            log.error("crash guard: the previous process died while processing raw "
                      "partition %d offsets %d..%d (%d time(s))", *key, self.deaths[key])
        for (p, first, last), n in self.deaths.items():
            if first < last:
                quarantine.note(BatchFailed(p, first, last, ProcessDied()))
            elif n >= POISON_AFTER_DEATHS:
                quarantine.note(MessageFailed(p, first, last, ProcessDied()))
        self._write(None)

    def begin(self, partition: int, first: int, last: int) -> None:
        if self.path is not None:
            self._write([partition, first, last])
            self._inflight = True

    def end(self) -> None:
        if self._inflight:
            self._write(None)
            self._inflight = False

    def forget_below(self, partition: int, offset: int) -> None:
        """Offsets below ``offset`` are committed: never read again."""
        self.deaths = {k: n for k, n in self.deaths.items()
                       if k[0] != partition or k[2] >= offset}

    def _write(self, inflight: list[int] | None) -> None:
        """The note, written in place by one ``pwrite`` (twice per batch: a new file
        and a rename each time cost ~6% of stage 1's time on small batches). Once the
        call returns the kernel holds the bytes, whatever becomes of this process; a
        killed process's write to a file stops between pages only, so a note within
        one page (4 KiB; a note is ~50 bytes a death) is the old one or the new one,
        and anything else is read as unreadable (a warning; no guard that once). A
        shorter note is padded with spaces, which JSON ignores. (What a power cut
        leaves is not the guard's concern: it is for deaths of the process.)"""
        assert self.path is not None
        data = json.dumps({"inflight": inflight,
                           "deaths": [[*k, n] for k, n in self.deaths.items()]}).encode()
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o666)
            self._size = os.fstat(self._fd).st_size
        os.pwrite(self._fd, data.ljust(self._size, b" "), 0)
        self._size = max(self._size, len(data))
