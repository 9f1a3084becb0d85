"""Metric kinds: each kind of metric is one class that says everything about it.

  # raw field values -> quantize -> per-(account, cell) columns (privacy/bounding.py)
  #   -> per-cell totals (privacy/accumulators.py) -> true result (never published)
  #   -> noisy column (privacy/release.py adds the noise) -> released values

A kind (``MetricKind``) declares its configuration (frozen, validated), its
quantization, what one account can change in one cell (the sensitivity the
noise is calibrated to), the shape and integer type of its column, how rows
add up, its true result, the names it releases, and how released values are
derived from its noisy column (post-processing: no extra budget). Bounding,
accumulators, release and the alert rules call this protocol and never ask
which kind a metric is; adding a kind is one module here and a line in KINDS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from privmon.privacy.kinds.boolean import BooleanMetric
from privmon.privacy.kinds.histogram import HistogramMetric
from privmon.privacy.kinds.value import ValueMetric

if TYPE_CHECKING:
    from privmon.privacy.columns import MetricColumn
    from privmon.privacy.mechanisms import IntegerNoise
    from privmon.privacy.series import Series


@dataclass(frozen=True)
class ReleaseContext:
    """What a kind's release derives from, besides its own noisy column."""

    events: np.ndarray  # int64[n] noisy event counts of the released cells
    events_std: float  # their noise std
    noise: IntegerNoise  # this metric's noise (its spread; the bootstrap's law)
    bootstrap_rng: Callable[[str], np.random.Generator]  # post-processing randomness

    @property
    def events_positive(self) -> np.ndarray:
        """Noisy event counts floored at 1: the denominator of means and rates."""
        return np.maximum(self.events, 1).astype(np.float64)


class MetricKind(Protocol):
    KIND: ClassVar[str]  # the `kind` of a [[streams.S.metrics]] table
    REQUIRED: ClassVar[frozenset[str]]  # its config keys
    OPTIONAL: ClassVar[frozenset[str]]
    name: str
    field: str

    @property
    def clamp_range(self) -> tuple[float, float] | None:
        """The range values are clamped to (published in the privacy metadata), if any."""

    @property
    def buckets(self) -> tuple[int, ...]:
        """Trailing shape of the column: () or (n_buckets,)."""

    def quantize(self, raw: np.ndarray) -> np.ndarray:
        """Per-event integer contribution (int64[n]): the value added to the row's
        column, or for a bucketed kind (``buckets`` not ()) the bucket whose count
        grows by one (privacy/_table.c adds it so)."""

    def per_cell_sensitivity(self, max_events_per_cell: int) -> int:
        """Max change of the column in one cell when one account is removed."""

    def column_dtype(self, max_events_per_cell: int) -> np.dtype:
        """Smallest integer type that holds one (account, cell) row."""

    def sum_rows(self, rows: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
        """Per-row sums of per-event ``values`` (shape (size, *buckets))."""

    def true_result(self, column: np.ndarray, events: np.ndarray) -> dict[str, np.ndarray]:
        """True aggregates per cell from its exact column (never published)."""

    def released_names(self) -> set[str]:
        """Names of the values a release record carries for this metric."""

    def release(self, noisy: np.ndarray, ctx: ReleaseContext) -> dict[str, MetricColumn]:
        """Released values per name, derived from the noisy column."""

    def series(self) -> dict[str, Series]:
        """Per released name, its Prometheus series (privacy/series.py)."""


Metric = ValueMetric | BooleanMetric | HistogramMetric
KINDS: Mapping[str, type[Metric]] = {
    cls.KIND: cls for cls in (ValueMetric, BooleanMetric, HistogramMetric)
}

__all__ = ["KINDS", "BooleanMetric", "HistogramMetric", "Metric", "MetricKind",
           "ReleaseContext", "ValueMetric"]
