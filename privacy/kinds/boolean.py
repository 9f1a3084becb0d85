"""Boolean metrics: a 0/1 field (e.g. error), released as its count and rate per cell."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from privmon.privacy.columns import MetricColumn
from privmon.privacy.series import Series

if TYPE_CHECKING:
    from privmon.privacy.kinds import ReleaseContext


@dataclass(frozen=True, kw_only=True)
class BooleanMetric:
    """A boolean field (e.g. error): releases the true count and the rate.
    One account moves a cell's count by at most Linf."""

    KIND: ClassVar[str] = "boolean"
    REQUIRED: ClassVar[frozenset[str]] = frozenset({"name", "field"})
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    name: str
    field: str

    @property
    def clamp_range(self) -> tuple[float, float] | None:
        """The range values are clamped to, published in the privacy metadata."""
        return None

    @property
    def buckets(self) -> tuple[int, ...]:
        return ()

    def quantize(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw).astype(bool).astype(np.int64)

    def per_cell_sensitivity(self, max_events_per_cell: int) -> int:
        return max_events_per_cell

    def column_dtype(self, max_events_per_cell: int) -> np.dtype:
        return np.min_scalar_type(max_events_per_cell)

    def sum_rows(self, rows: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
        return np.rint(np.bincount(rows, weights=values, minlength=size)).astype(np.int64)

    def true_result(self, column: np.ndarray, events: np.ndarray) -> dict[str, np.ndarray]:
        per_event = np.maximum(events, 1).astype(np.float64)
        return {f"{self.name}.count": column.astype(np.float64),
                f"{self.name}.rate": column / per_event}

    def released_names(self) -> set[str]:
        return {f"{self.name}.count", f"{self.name}.rate"}

    def series(self) -> dict[str, Series]:
        return {f"{self.name}.count": Series(self.name, "events"),
                f"{self.name}.rate": Series(self.name, "ratio")}

    def release(self, noisy: np.ndarray, ctx: ReleaseContext) -> dict[str, MetricColumn]:
        sd, half = ctx.noise.spread.std, ctx.noise.spread.ci95_half_width
        ev_pos = ctx.events_positive
        rate = np.clip(noisy / ev_pos, 0.0, 1.0)
        rate_sd = np.sqrt(sd**2 + rate**2 * ctx.events_std**2) / ev_pos
        return {
            f"{self.name}.count": MetricColumn.around(noisy, sd, half, 0.0),
            f"{self.name}.rate": MetricColumn.around(rate, rate_sd, 1.959963984540054 * rate_sd,
                                                     0.0, 1.0),
        }
