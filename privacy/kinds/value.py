"""Value metrics: a bounded numeric field, released as its sum and mean per cell."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from privmon.privacy.checks import fail, finite_field_values, real
from privmon.privacy.columns import MetricColumn
from privmon.privacy.series import Series, field_unit

if TYPE_CHECKING:
    from privmon.privacy.kinds import ReleaseContext

Z95 = 1.959963984540054


@dataclass(frozen=True, kw_only=True)
class ValueMetric:
    """A bounded numeric field: releases its sum and mean per cell.

    Values are clamped to [lower, upper] and quantized to integer multiples of
    ``resolution`` so that integer-valued noise can be used. The noisy column is
    the centred sum Σ (2·q - (lower_q + upper_q)): one account moves it by at most
    Linf·(upper_q - lower_q), and mean = post-processing of two noisy sums.
    """

    KIND: ClassVar[str] = "value"
    REQUIRED: ClassVar[frozenset[str]] = frozenset({"name", "field", "lower", "upper"})
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"resolution"})

    name: str
    field: str
    lower: float
    upper: float
    resolution: float = 1.0

    def __post_init__(self) -> None:
        where = f"ValueMetric({self.name!r})"
        lower = real(where, "lower", self.lower)
        upper = real(where, "upper", self.upper)
        resolution = real(where, "resolution", self.resolution)
        if resolution <= 0:
            raise fail(where, "resolution", resolution, "expected a positive step, e.g. 1.0")
        if upper <= lower:
            raise fail(where, "upper", upper, f"expected upper > lower ({lower})")
        for name in ("lower", "upper"):
            q = getattr(self, name) / resolution
            if abs(q - round(q)) > 1e-9:
                raise fail(
                    where, name, getattr(self, name),
                    f"expected a multiple of resolution {resolution}",
                )

    @property
    def lower_q(self) -> int:
        """Lower bound in integer units of ``resolution``."""
        return round(self.lower / self.resolution)

    @property
    def upper_q(self) -> int:
        return round(self.upper / self.resolution)

    @property
    def clamp_range(self) -> tuple[float, float] | None:
        """The range values are clamped to, published in the privacy metadata."""
        return (self.lower, self.upper)

    @property
    def buckets(self) -> tuple[int, ...]:
        return ()

    def quantize(self, raw: np.ndarray) -> np.ndarray:
        """2·q - (lower_q + upper_q), q the value clamped and rounded to resolution units."""
        values = finite_field_values(self.name, self.field, raw)
        q = np.clip(np.rint(values / self.resolution), self.lower_q, self.upper_q)
        return 2 * q.astype(np.int64) - (self.lower_q + self.upper_q)

    def per_cell_sensitivity(self, max_events_per_cell: int) -> int:
        return max_events_per_cell * (self.upper_q - self.lower_q)

    def column_dtype(self, max_events_per_cell: int) -> np.dtype:
        return np.min_scalar_type(-self.per_cell_sensitivity(max_events_per_cell) - 1)

    def sum_rows(self, rows: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
        return np.rint(np.bincount(rows, weights=values, minlength=size)).astype(np.int64)

    def true_result(self, column: np.ndarray, events: np.ndarray) -> dict[str, np.ndarray]:
        sum_q = (column + (self.lower_q + self.upper_q) * events) / 2
        per_event = np.maximum(events, 1).astype(np.float64)
        return {f"{self.name}.sum": sum_q * self.resolution,
                f"{self.name}.mean": sum_q / per_event * self.resolution}

    def released_names(self) -> set[str]:
        return {f"{self.name}.sum", f"{self.name}.mean"}

    def series(self) -> dict[str, Series]:
        unit, scale = field_unit(self.field)
        return {f"{self.name}.sum": Series(f"{self.name}_window", unit, scale=scale),
                f"{self.name}.mean": Series(f"{self.name}_mean", unit, scale=scale)}

    def release(self, noisy: np.ndarray, ctx: ReleaseContext) -> dict[str, MetricColumn]:
        sd, ev, ev_sd, ev_pos = ctx.noise.spread.std, ctx.events, ctx.events_std, \
            ctx.events_positive
        centre = self.lower_q + self.upper_q
        nsum = noisy.astype(np.float64)
        half_res = self.resolution / 2
        total = (nsum + centre * ev) * half_res
        total_sd = half_res * math.sqrt(sd**2 + centre**2 * ev_sd**2)
        ratio = nsum / ev_pos
        mean = np.clip((ratio + centre) * half_res, self.lower, self.upper)
        mean_sd = half_res * np.sqrt(sd**2 + ratio**2 * ev_sd**2) / ev_pos
        # a sum of values in [lower, upper] has the sign of the range
        sum_domain = (0.0 if self.lower >= 0 else -math.inf, 0.0 if self.upper <= 0 else math.inf)
        return {
            f"{self.name}.sum": MetricColumn.around(total, total_sd, Z95 * total_sd,
                                                    *sum_domain),
            f"{self.name}.mean": MetricColumn.around(mean, mean_sd, Z95 * mean_sd,
                                                     self.lower, self.upper),
        }

