"""Saved participation-cap state (topic ``privmon.participation``, compacted).

Why: the cap "at most N windows per account per day" must survive a worker
restart, or an account could contribute N more windows after every crash.
Stage 1 writes the state of its raw partition p to partition p of this
topic, in the same transaction as its progress and raw offsets, so the saved
state always matches the committed position (agents/worker.py): with the
replay from the committed offset, it gives the cap decisions of the run
without a restart.

Per (stream, bucket) one record holds every account of that bucket with
state; only buckets that changed are rewritten, at a close of one of the
stream's windows (agents/stage1.py says why the others may wait), and
compaction keeps the latest. A bucket that became empty is a tombstone.

    key:   b"monitoring|7"            (stream, bucket = pseudonym[0] % BUCKETS)
    value: msgpack {"v": 1, "s": "monitoring", "b": 7, "n": 1234, "r": 1,
                    "pseudonyms": 16*n bytes, "period": int64[n],
                    "count": int32[n], "recent": int64[n*r]}   (little-endian)
    (recent: the admitted windows still open, so usually r = 1: 36 bytes a row)

It holds pseudonyms (keyed HMACs, never raw ids) and window counts: as
restricted as the raw topic; only the worker may read or write it.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np

BUCKETS = 32  # divides 256, so pseudonym[0] % BUCKETS is uniform
PSEUDONYM_BYTES = 16
VERSION = 1
# A bucket's record holds ~36 bytes per account; the topic and the stage-1
# producer allow records up to this size (Kafka's default is 1 MB), which is
# ~15M accounts with state per raw partition and stream.
MAX_RECORD_BYTES = 16 * 1024 * 1024


def bucket_of(pseudonym: bytes) -> int:
    return pseudonym[0] % BUCKETS


def state_key(stream: str, bucket: int) -> bytes:
    return f"{stream}|{bucket}".encode()


class _Wire(msgspec.Struct, frozen=True):
    v: int
    s: str
    b: int
    n: int
    r: int
    pseudonyms: bytes
    period: bytes
    count: bytes
    recent: bytes


@dataclass(frozen=True)
class StateChunk:
    """The saved cap state of one (stream, bucket): row i is the account whose
    pseudonym is bytes ``16*i`` to ``16*(i+1)`` of ``pseudonyms``."""

    stream: str
    bucket: int
    pseudonyms: bytes  # n pseudonyms of PSEUDONYM_BYTES each, concatenated
    period: np.ndarray  # int64, the period (e.g. UTC day number) of the counts
    count: np.ndarray  # int32, windows admitted in that period
    recent: np.ndarray  # int64 (n, r), the last admitted window starts (-1: none)

    def __post_init__(self) -> None:
        n, extra = divmod(len(self.pseudonyms), PSEUDONYM_BYTES)
        if extra or not len(self.period) == len(self.count) == len(self.recent) == n:
            raise ValueError(
                f"participation state: expected {PSEUDONYM_BYTES} bytes of pseudonym per "
                f"row and one period, count and recent row each; got {len(self.pseudonyms)} "
                f"bytes and {len(self.period)}, {len(self.count)}, {len(self.recent)} rows")

    def pseudonym_list(self) -> list[bytes]:
        blob, w = self.pseudonyms, PSEUDONYM_BYTES
        return [blob[i:i + w] for i in range(0, len(blob), w)]

    def encode(self) -> bytes:
        n = len(self.period)
        recent = np.asarray(self.recent, "<i8").reshape(n, -1)
        value = msgspec.msgpack.encode(_Wire(
            v=VERSION, s=self.stream, b=self.bucket, n=n, r=recent.shape[1],
            pseudonyms=self.pseudonyms, period=np.asarray(self.period, "<i8").tobytes(),
            count=np.asarray(self.count, "<i4").tobytes(), recent=recent.tobytes()))
        if len(value) > MAX_RECORD_BYTES:
            raise ValueError(
                f"participation state of stream {self.stream!r} bucket {self.bucket}: "
                f"{len(value)} bytes for {n} accounts, over the {MAX_RECORD_BYTES}-byte record "
                "limit; use more raw partitions (or raise BUCKETS with a state migration)")
        return value

    @classmethod
    def decode(cls, value: bytes) -> StateChunk:
        wire = msgspec.msgpack.decode(value, type=_Wire)
        if wire.v != VERSION:
            raise ValueError(f"participation state: expected version {VERSION}, got {wire.v}")
        return cls(
            stream=wire.s, bucket=wire.b, pseudonyms=wire.pseudonyms,
            period=np.frombuffer(wire.period, "<i8").astype(np.int64),
            count=np.frombuffer(wire.count, "<i4").astype(np.int32),
            recent=np.frombuffer(wire.recent, "<i8").astype(np.int64).reshape(wire.n, wire.r),
        )
