"""Histogram metrics: a numeric field bucketed on fixed edges, released as quantiles
(and, if asked, every noisy bucket count) per cell."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from privmon.privacy.checks import fail, finite_field_values, real
from privmon.privacy.columns import MetricColumn
from privmon.privacy.series import Series, field_unit

if TYPE_CHECKING:
    from privmon.privacy.kinds import ReleaseContext
    from privmon.privacy.mechanisms import IntegerNoise

BOOTSTRAP_DRAWS = 200  # simulated histograms per cell for the quantiles' intervals


@dataclass(frozen=True, kw_only=True)
class HistogramMetric:
    """A numeric field bucketed on fixed edges: releases p50/p95/p99 (post-processing).

    ``edges`` are the bucket boundaries (strictly increasing); values below the
    first edge fall into the first bucket, above the last into the last one.
    ``publish_buckets`` also releases every noisy bucket count (e.g. events per
    hour of day); that is the same noisy vector, so it costs no extra budget.
    One account's events fill at most Linf bucket slots of a cell.
    """

    KIND: ClassVar[str] = "histogram"
    REQUIRED: ClassVar[frozenset[str]] = frozenset({"name", "field", "edges"})
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"quantiles", "publish_buckets"})

    name: str
    field: str
    edges: tuple[float, ...]
    quantiles: tuple[float, ...] = (0.5, 0.95, 0.99)
    publish_buckets: bool = False

    def __post_init__(self) -> None:
        where = f"HistogramMetric({self.name!r})"
        edges = tuple(real(where, "edges", e) for e in self.edges)
        if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise fail(where, "edges", self.edges, "expected >= 2 strictly increasing edges")
        for q in self.quantiles:
            if not 0 < real(where, "quantiles", q) < 1:
                raise fail(where, "quantiles", self.quantiles, "expected values in (0, 1)")
        if not isinstance(self.publish_buckets, bool):
            raise TypeError(f"{where}.publish_buckets: expected a bool, got "
                            f"{type(self.publish_buckets).__name__}")
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "quantiles", tuple(self.quantiles))

    @property
    def n_buckets(self) -> int:
        return len(self.edges) - 1

    @property
    def clamp_range(self) -> tuple[float, float] | None:
        """The range values are clamped to, published in the privacy metadata."""
        return None

    @property
    def buckets(self) -> tuple[int, ...]:
        return (self.n_buckets,)

    def quantize(self, raw: np.ndarray) -> np.ndarray:
        """The bucket index of each value."""
        values = finite_field_values(self.name, self.field, raw)
        bucket = np.searchsorted(np.asarray(self.edges), values, side="right") - 1
        return np.clip(bucket, 0, self.n_buckets - 1).astype(np.int64)

    def per_cell_sensitivity(self, max_events_per_cell: int) -> int:
        return max_events_per_cell

    def column_dtype(self, max_events_per_cell: int) -> np.dtype:
        return np.min_scalar_type(max_events_per_cell)

    def sum_rows(self, rows: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
        flat = np.bincount(rows * self.n_buckets + values, minlength=size * self.n_buckets)
        return flat.reshape(size, self.n_buckets)

    def true_result(self, column: np.ndarray, events: np.ndarray) -> dict[str, np.ndarray]:
        qs = quantiles_from_histogram(column, self.edges, self.quantiles)
        return {self.quantile_name(q): qs[:, j] for j, q in enumerate(self.quantiles)}

    def quantile_name(self, q: float) -> str:
        """e.g. ``latency_hist.p95``."""
        return f"{self.name}.p{quantile_label(q)}"

    def bucket_name(self, bucket: int) -> str:
        """Name of a published bucket, e.g. ``hour.bucket.13-14``."""
        return f"{self.name}.bucket.{self.edges[bucket]:g}-{self.edges[bucket + 1]:g}"

    def released_names(self) -> set[str]:
        names = {self.quantile_name(q) for q in self.quantiles}
        if self.publish_buckets:
            names |= {self.bucket_name(b) for b in range(self.n_buckets)}
        return names

    def series(self) -> dict[str, Series]:
        unit, scale = field_unit(self.field)
        out = {self.quantile_name(q): Series(f"{self.name}_quantile", unit,
                                             (("q", f"{q:g}"),), scale)
               for q in self.quantiles}
        if self.publish_buckets:
            for b in range(self.n_buckets):
                bounds = (("lower", f"{self.edges[b] * scale:g}"),
                          ("upper", f"{self.edges[b + 1] * scale:g}"))
                out[self.bucket_name(b)] = Series(f"{self.name}_bucket", "events", bounds)
        return out

    def release(self, noisy: np.ndarray, ctx: ReleaseContext) -> dict[str, MetricColumn]:
        """Quantiles of the noisy histogram, with intervals from a parametric bootstrap
        (post-processing, seeded from the window's keyed stream: byte-identical when
        recomputed)."""
        noise = ctx.noise
        sd = noise.spread.std
        rng = ctx.bootstrap_rng(self.name)
        point = quantiles_from_histogram(denoised(noisy, sd), self.edges, self.quantiles)
        sims = noisy[None] + simulate(noise, (BOOTSTRAP_DRAWS, *noisy.shape), rng)
        boot = quantiles_from_histogram(denoised(sims, sd), self.edges, self.quantiles)
        boot_sd = np.nanstd(boot, axis=0)
        lo, hi = nan_percentiles(boot, (2.5, 97.5))
        out: dict[str, MetricColumn] = {}
        for j, q in enumerate(self.quantiles):
            out[self.quantile_name(q)] = MetricColumn.of(point[:, j], boot_sd[:, j],
                                                         lo[:, j], hi[:, j])
        if self.publish_buckets:
            half = noise.spread.ci95_half_width
            for b in range(self.n_buckets):
                out[self.bucket_name(b)] = MetricColumn.around(noisy[:, b], sd, half, 0.0)
        return out


def quantile_label(q: float) -> str:
    """0.5 -> '50', 0.95 -> '95', 0.999 -> '99.9'."""
    return f"{q * 100:g}"


def quantiles_from_histogram(
    counts: np.ndarray, edges: tuple[float, ...], qs: tuple[float, ...]
) -> np.ndarray:
    """Quantiles of bucketed data by linear interpolation inside buckets.

    ``counts`` is [..., buckets] (negative entries, from noise, count as 0);
    returns [..., len(qs)]. Cells with no mass get NaN.
    """
    counts = np.clip(np.asarray(counts, np.float64), 0, None)
    edges_a = np.asarray(edges, np.float64)
    cum = np.cumsum(counts, axis=-1)
    total = cum[..., -1:]
    out = np.full((*counts.shape[:-1], len(qs)), np.nan)
    for j, q in enumerate(qs):
        target = q * total
        idx = np.minimum((cum < target).sum(axis=-1), counts.shape[-1] - 1)
        before = np.take_along_axis(cum, idx[..., None], -1)[..., 0] - np.take_along_axis(
            counts, idx[..., None], -1
        )[..., 0]
        inside = np.take_along_axis(counts, idx[..., None], -1)[..., 0]
        frac = np.divide(
            target[..., 0] - before, inside, out=np.zeros_like(inside), where=inside > 0
        )
        value = edges_a[idx] + np.clip(frac, 0, 1) * (edges_a[idx + 1] - edges_a[idx])
        out[..., j] = np.where(total[..., 0] > 0, value, np.nan)
    return out


def denoised(hist: np.ndarray, std: float) -> np.ndarray:
    """Bucket counts for quantiles: noisy counts under 2 noise std count as 0.

    Post-processing. Without it, noise in the many empty tail buckets adds
    phantom mass and pulls p95/p99 far up.
    """
    return np.where(hist < 2 * std, 0, hist)


def simulate(noise: IntegerNoise, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Draws resembling ``noise`` for the parametric bootstrap of quantiles.

    Post-processing only: these draws never touch a released value, so numpy's
    generator is fine here (seeded from the window's keyed stream, so a
    recomputed release is byte-identical; the released noise is exact).
    """
    if noise.kind == "geometric":
        # Two-sided geometric = difference of two geometrics with p = 1 - α.
        p = 1 - noise.param
        return rng.geometric(p, shape) - rng.geometric(p, shape)
    return np.rint(rng.normal(0.0, noise.param, shape))


def nan_percentiles(a: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
    """``np.nanpercentile(a, q, axis=0)`` (linear interpolation) for each q, vectorized:
    numpy's own loops over every column in Python when there are NaNs."""
    s = np.sort(a, axis=0)  # NaNs last
    n = (~np.isnan(a)).sum(axis=0)
    out = []
    for q in qs:
        pos = np.maximum(n - 1, 0) * (q / 100)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
        a_lo = np.take_along_axis(s, lo[None], axis=0)[0]
        a_hi = np.take_along_axis(s, hi[None], axis=0)[0]
        value = a_lo + (a_hi - a_lo) * (pos - lo)
        out.append(np.where(n > 0, value, np.nan))
    return out
