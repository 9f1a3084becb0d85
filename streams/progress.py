"""Stage 1's progress record (topic ``privmon.progress``, compacted, key: the raw
partition): which windows it has closed per stream, and how far it has read.

    {"closed": {"monitoring": 1764000060000, ...}, "next_offset": 123456, "v": 1}

Committed in the close transaction with the partials, marks, cap state and raw
offsets (agents/stage1_runner.py); a restarted partition skips replayed events of
windows it had closed and re-sends no dead letter below ``next_offset``.
"""

from __future__ import annotations

import msgspec

from privmon.streams.partials import decode_strict

VERSION = 1


class Progress(msgspec.Struct, frozen=True):
    closed: dict[str, int] = {}  # stream -> end of the newest window closed
    next_offset: int = 0  # raw offsets below this were read (and their letters sent)
    v: int = VERSION

    def encode(self) -> bytes:
        return _ENCODER.encode(self)

    @staticmethod
    def decode(value: bytes) -> Progress:
        """Strictly: WireError names what is wrong."""
        return decode_strict(_DECODER, value, what="progress record", version=VERSION)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Progress)
