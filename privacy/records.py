"""The release record: what aggregate topics carry, with its privacy metadata.

JSON shape (``ReleaseRecord.to_dict``), one record per released cell:

    {"schema": "privmon.release/1",
     "stream": "monitoring", "window_start_ms": ..., "window_end_ms": ...,
     "cell": {"server": "fra-01", "region": "eu"},
     "metrics": {"events": {"value": 1234, "noise_std": 2.1,
                            "ci95_low": 1229, "ci95_high": 1239}, ...},
     (a metric whose interval was clipped to its domain also has "ci95_half")
     "privacy": {"unit": "account", "mechanism": "geometric", "epsilon": 1.0,
                 "delta": 1e-06, "rho": null, "k": 20, "max_cells": 2,
                 "max_events_per_cell": 50, "ranges": {"latency_ms": [0, 5000]},
                 "selection_threshold": 32, "policy_version": "2026-11-24",
                 "public_cells": false, "selection": "noisy_threshold"}}

A stream with public cells (the server inventory) has a record for every listed
cell in every window; where the noisy account count is under k, it carries that
count alone: {"metrics": {"accounts": {...}}, "under_k": true, ...}.

``noise_std`` and the 95% interval describe the noise of that value (exact
for counts; delta-method for means and rates; parametric bootstrap for
quantiles). The noise draws themselves are never part of a record.

Beside them, the completion record (``WindowComplete``): each partials partition
(stage 2) writes one to every partition of the aggregate topic after its part of
a window, in the same transaction, for every window (released, empty or
quarantined alike, so its existence says nothing about the data):

    {"schema": "privmon.window/1", "stream": "monitoring",
     "window_start_ms": ..., "window_end_ms": ..., "partials_partition": 2,
     "partials_partitions": 4}

A window is whole once a reader has seen, on every partition of the topic, one
from each of the ``partials_partitions`` (``agents/releases.py``: ``windows``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

SCHEMA = "privmon.release/1"
WINDOW_SCHEMA = "privmon.window/1"


@dataclass(frozen=True, kw_only=True)
class MetricValue:
    """A released value with its noise std and 95% interval, clipped to the value's
    domain (counts >= 0, rates in [0, 1], ...). Where the clipping changed the
    interval, ``ci95_half`` keeps its half-width: the unclipped interval is
    ``value ± ci95_half`` (``raw_interval``; exports carry both)."""

    value: float
    noise_std: float
    ci95_low: float
    ci95_high: float
    ci95_half: float | None = None

    @classmethod
    def around(cls, value: float, std: float, half: float, lo: float = -math.inf,
               hi: float = math.inf) -> MetricValue:
        """A value with its noise std and 95% interval ±half, clipped to [lo, hi]."""
        low, high = float(max(lo, value - half)), float(min(hi, value + half))
        clipped = low != value - half or high != value + half
        return cls(value=float(value), noise_std=float(std), ci95_low=low, ci95_high=high,
                   ci95_half=float(half) if clipped else None)

    @property
    def raw_interval(self) -> tuple[float, float]:
        """The 95% interval before clipping to the domain."""
        if self.ci95_half is None:
            return self.ci95_low, self.ci95_high
        return self.value - self.ci95_half, self.value + self.ci95_half

    def to_dict(self) -> dict[str, float]:
        # (by hand, in field order: dataclasses.asdict deep-copies, ~6x slower, and
        # a window of 10k public cells encodes ~40k of these)
        out = {"value": self.value, "noise_std": self.noise_std,
               "ci95_low": self.ci95_low, "ci95_high": self.ci95_high}
        if self.ci95_half is not None:  # (unclipped: the record stays as it was)
            out["ci95_half"] = self.ci95_half
        return out


@dataclass(frozen=True, kw_only=True)
class PrivacyMetadata:
    unit: str
    mechanism: str
    epsilon: float
    delta: float
    rho: float | None
    k: int
    max_cells: int
    max_events_per_cell: int
    ranges: Mapping[str, tuple[float, float]]
    selection_threshold: int  # T of noisy_threshold selection; 0 otherwise
    policy_version: str
    public_cells: bool = False  # every listed cell is released every window
    # how cells were chosen: noisy_threshold, truncated_geometric or public_cells
    selection: str = "noisy_threshold"

    def to_dict(self) -> dict[str, Any]:
        """The record's "privacy" object (a fresh copy: callers may change it)."""
        shared = self._shared_dict
        return {**shared, "ranges": {k: list(v) for k, v in shared["ranges"].items()}}

    @cached_property
    def _shared_dict(self) -> dict[str, Any]:
        """The same, computed once per metadata (one per stream and window, shared
        by every record of the window); never handed out."""
        return {**asdict(self), "ranges": {k: list(v) for k, v in self.ranges.items()}}

    @cached_property
    def json_text(self) -> str:
        """The "privacy" object's compact JSON, encoded once per metadata."""
        return json.dumps(self._shared_dict, separators=(",", ":"))


@dataclass(frozen=True, kw_only=True)
class ReleaseRecord:
    stream: str
    window_start_ms: int
    window_end_ms: int
    cell: Mapping[str, str]
    metrics: Mapping[str, MetricValue]
    privacy: PrivacyMetadata
    # A public cell whose noisy account count is under k: only "accounts" is published.
    under_k: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**self._head(), "privacy": self.privacy.to_dict(),
                **({"under_k": True} if self.under_k else {})}

    def _head(self) -> dict[str, Any]:
        """Every field before "privacy", in the record's order."""
        return {
            "schema": SCHEMA,
            "stream": self.stream,
            "window_start_ms": self.window_start_ms,
            "window_end_ms": self.window_end_ms,
            "cell": dict(self.cell),
            "metrics": {name: v.to_dict() for name, v in self.metrics.items()},
        }

    def to_json(self) -> bytes:
        """json.dumps(to_dict()), compact, with the window's privacy JSON spliced in
        where it belongs (after "metrics"): ~1/3 of the encoding, done once per
        window (tests/privacy/test_record_encoding.py checks the bytes)."""
        head = json.dumps(self._head(), separators=(",", ":"))
        tail = ',"under_k":true}' if self.under_k else "}"
        return f'{head[:-1]},"privacy":{self.privacy.json_text}{tail}'.encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ReleaseRecord:
        return cls.from_dict(json.loads(data))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReleaseRecord:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"schema: expected {SCHEMA!r}, got {data.get('schema')!r}")
        privacy = dict(data["privacy"])
        privacy["ranges"] = {k: tuple(v) for k, v in privacy["ranges"].items()}
        return cls(
            stream=data["stream"],
            window_start_ms=int(data["window_start_ms"]),
            window_end_ms=int(data["window_end_ms"]),
            cell=dict(data["cell"]),
            metrics={k: MetricValue(**v) for k, v in data["metrics"].items()},
            privacy=PrivacyMetadata(**privacy),
            under_k=bool(data.get("under_k", False)),
        )


@dataclass(frozen=True, kw_only=True)
class WindowComplete:
    """One partials partition's part of a window is all on this aggregate partition."""

    stream: str
    window_start_ms: int
    window_end_ms: int
    partials_partition: int
    partials_partitions: int

    def to_json(self) -> bytes:
        return json.dumps({"schema": WINDOW_SCHEMA, **asdict(self)},
                          separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowComplete:
        if data.get("schema") != WINDOW_SCHEMA:
            raise ValueError(f"schema: expected {WINDOW_SCHEMA!r}, got {data.get('schema')!r}")
        return cls(stream=str(data["stream"]), window_start_ms=int(data["window_start_ms"]),
                   window_end_ms=int(data["window_end_ms"]),
                   partials_partition=int(data["partials_partition"]),
                   partials_partitions=int(data["partials_partitions"]))


def decode_aggregate(data: bytes | str) -> ReleaseRecord | WindowComplete:
    """A record of an aggregate topic: a release record or a completion record."""
    d = json.loads(data)
    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object, got {type(d).__name__}")
    if d.get("schema") == WINDOW_SCHEMA:
        return WindowComplete.from_dict(d)
    return ReleaseRecord.from_dict(d)
