"""Privacy parameters: frozen, keyword-only, validated at construction.

Nothing here is inferred from data. A missing or inconsistent setting raises
``ValueError`` (or ``TypeError`` for a wrong type) naming the field, the value
that arrived and how to fix it, so a misconfigured worker never starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from numbers import Integral, Real
from types import MappingProxyType


class PrivacyConfigError(ValueError):
    """A privacy setting is missing, out of range or inconsistent."""


def _fail(where: str, field_name: str, value: object, fix: str) -> PrivacyConfigError:
    return PrivacyConfigError(f"{where}.{field_name} = {value!r}: {fix}")


def _int(where: str, name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{where}.{name} = {value!r}: expected an integer >= {minimum}")
    if value < minimum:
        raise _fail(where, name, value, f"expected an integer >= {minimum}")
    return int(value)


def _real(where: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{where}.{name} = {value!r}: expected a number")
    if not math.isfinite(float(value)):
        raise _fail(where, name, value, "expected a finite number")
    return float(value)


class Mechanism(StrEnum):
    """How metric noise is drawn.

    GEOMETRIC: two-sided geometric (discrete Laplace), pure epsilon-DP per metric.
    GAUSSIAN: discrete Gaussian calibrated to rho-zCDP (composes better over
    many windows). Partition selection always uses the geometric mechanism.
    """

    GEOMETRIC = "geometric"
    GAUSSIAN = "gaussian"


@dataclass(frozen=True, kw_only=True)
class ValueMetric:
    """A bounded numeric field: releases its sum and mean per cell.

    Values are clamped to [lower, upper] and quantized to integer multiples of
    ``resolution`` so that integer-valued noise can be used.
    """

    name: str
    field: str
    lower: float
    upper: float
    resolution: float = 1.0

    def __post_init__(self) -> None:
        where = f"ValueMetric({self.name!r})"
        lower = _real(where, "lower", self.lower)
        upper = _real(where, "upper", self.upper)
        resolution = _real(where, "resolution", self.resolution)
        if resolution <= 0:
            raise _fail(where, "resolution", resolution, "expected a positive step, e.g. 1.0")
        if upper <= lower:
            raise _fail(where, "upper", upper, f"expected upper > lower ({lower})")
        for name in ("lower", "upper"):
            q = getattr(self, name) / resolution
            if abs(q - round(q)) > 1e-9:
                raise _fail(
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


@dataclass(frozen=True, kw_only=True)
class BooleanMetric:
    """A boolean field (e.g. error): releases the true count and the rate."""

    name: str
    field: str


@dataclass(frozen=True, kw_only=True)
class HistogramMetric:
    """A numeric field bucketed on fixed edges: releases p50/p95/p99 (post-processing).

    ``edges`` are the bucket boundaries (strictly increasing); values below the
    first edge fall into the first bucket, above the last into the last one.
    ``publish_buckets`` also releases every noisy bucket count (e.g. events per
    hour of day); that is the same noisy vector, so it costs no extra budget.
    """

    name: str
    field: str
    edges: tuple[float, ...]
    quantiles: tuple[float, ...] = (0.5, 0.95, 0.99)
    publish_buckets: bool = False

    def __post_init__(self) -> None:
        where = f"HistogramMetric({self.name!r})"
        edges = tuple(_real(where, "edges", e) for e in self.edges)
        if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise _fail(where, "edges", self.edges, "expected >= 2 strictly increasing edges")
        for q in self.quantiles:
            if not 0 < _real(where, "quantiles", q) < 1:
                raise _fail(where, "quantiles", self.quantiles, "expected values in (0, 1)")
        if not isinstance(self.publish_buckets, bool):
            raise TypeError(f"{where}.publish_buckets: expected a bool, got "
                            f"{type(self.publish_buckets).__name__}")
        object.__setattr__(self, "edges", edges)

    @property
    def n_buckets(self) -> int:
        return len(self.edges) - 1


Metric = ValueMetric | BooleanMetric | HistogramMetric


@dataclass(frozen=True, kw_only=True)
class ContributionBounds:
    """Per account and window: at most ``max_cells`` cells (L0), at most
    ``max_events_per_cell`` events in each (Linf). Value ranges live on the metrics."""

    max_cells: int
    max_events_per_cell: int

    def __post_init__(self) -> None:
        _int("ContributionBounds", "max_cells", self.max_cells, minimum=1)
        _int("ContributionBounds", "max_events_per_cell", self.max_events_per_cell, minimum=1)


@dataclass(frozen=True, kw_only=True)
class ParticipationCap:
    """An account contributes to at most ``max_windows`` windows of a stream per
    aligned ``period_ms`` (e.g. per UTC day). Bounds the loss over horizons."""

    max_windows: int
    period_ms: int

    def __post_init__(self) -> None:
        _int("ParticipationCap", "max_windows", self.max_windows, minimum=1)
        _int("ParticipationCap", "period_ms", self.period_ms, minimum=1)


@dataclass(frozen=True, kw_only=True)
class HorizonCap:
    """The policy's ceiling on the per-account guarantee over an aligned horizon
    (e.g. a UTC day): ``horizon_ms`` must be a whole number of the streams'
    participation periods. Over an unaligned interval of the same length the
    guarantee can be weaker; ``privacy.accountant.horizon_guarantee(...,
    rolling=True)`` says by how much, and ``privmon budget`` prints both."""

    horizon_ms: int
    max_epsilon: float
    max_delta: float

    def __post_init__(self) -> None:
        _int("HorizonCap", "horizon_ms", self.horizon_ms, minimum=1)
        if _real("HorizonCap", "max_epsilon", self.max_epsilon) <= 0:
            raise _fail("HorizonCap", "max_epsilon", self.max_epsilon, "expected > 0")
        if not 0 <= _real("HorizonCap", "max_delta", self.max_delta) < 1:
            raise _fail("HorizonCap", "max_delta", self.max_delta, "expected in [0, 1)")


@dataclass(frozen=True, kw_only=True)
class PrivacyBudget:
    """Per-window budget of one release stream and how it is split.

    GEOMETRIC: ``epsilon`` is the whole per-window epsilon, split by ``shares``
    over "selection", "events" and every metric name (shares sum to 1);
    ``delta`` is spent by partition selection only.
    GAUSSIAN: ``rho`` (zCDP) is split by ``shares`` over "events" and every
    metric name; ``epsilon`` and ``delta`` go to partition selection.
    """

    mechanism: Mechanism
    epsilon: float
    delta: float
    shares: Mapping[str, float]
    rho: float | None = None

    def __post_init__(self) -> None:
        where = "PrivacyBudget"
        if not isinstance(self.mechanism, Mechanism):
            try:
                object.__setattr__(self, "mechanism", Mechanism(self.mechanism))
            except ValueError:
                raise _fail(
                    where, "mechanism", self.mechanism,
                    f"expected one of {[m.value for m in Mechanism]}",
                ) from None
        if _real(where, "epsilon", self.epsilon) <= 0:
            raise _fail(where, "epsilon", self.epsilon, "expected > 0 (e.g. 1.0 per window)")
        if not 0 < _real(where, "delta", self.delta) < 1:
            raise _fail(
                where, "delta", self.delta,
                "expected in (0, 1): partition selection needs a delta, e.g. 1e-6",
            )
        if self.mechanism is Mechanism.GAUSSIAN:
            if self.rho is None or _real(where, "rho", self.rho) <= 0:
                raise _fail(where, "rho", self.rho, "the gaussian mechanism needs rho > 0")
        elif self.rho is not None:
            raise _fail(
                where, "rho", self.rho, "rho is only used with mechanism='gaussian'; remove it"
            )
        if not isinstance(self.shares, Mapping) or not self.shares:
            raise _fail(where, "shares", self.shares, "expected a mapping of name -> share")
        for name, share in self.shares.items():
            if _real(where, f"shares[{name!r}]", share) <= 0:
                raise _fail(where, f"shares[{name!r}]", share, "expected a share > 0")
        total = sum(self.shares.values())
        if abs(total - 1.0) > 1e-9:
            raise _fail(where, "shares", dict(self.shares), f"shares sum to {total}, expected 1")
        object.__setattr__(self, "shares", MappingProxyType(dict(self.shares)))


@dataclass(frozen=True, kw_only=True)
class StreamPolicy:
    """Everything that decides what one release stream may publish."""

    name: str
    window_ms: int
    dimensions: tuple[str, ...]
    metrics: tuple[Metric, ...]
    bounds: ContributionBounds
    budget: PrivacyBudget
    k: int
    participation: ParticipationCap
    horizon_caps: tuple[HorizonCap, ...]
    policy_version: str
    privacy_unit: str = "account"
    grace_ms: int = 0

    def __post_init__(self) -> None:
        where = f"StreamPolicy({self.name!r})"
        if not self.name or not isinstance(self.name, str):
            raise _fail("StreamPolicy", "name", self.name, "expected a non-empty string")
        _int(where, "window_ms", self.window_ms, minimum=1)
        _int(where, "grace_ms", self.grace_ms, minimum=0)
        _int(where, "k", self.k, minimum=2)
        if self.privacy_unit != "account":
            raise _fail(where, "privacy_unit", self.privacy_unit, "only 'account' is supported")
        if not self.dimensions:
            raise _fail(where, "dimensions", self.dimensions, "expected at least one dimension")
        if not self.horizon_caps:
            raise _fail(
                where, "horizon_caps", self.horizon_caps,
                "expected at least one HorizonCap (e.g. 24 h and 30 d); a stream with no "
                "cap on its total privacy loss is refused",
            )
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise _fail(where, "metrics", names, "metric names must be unique")
        reserved = {"events", "accounts", "selection"} & set(names)
        if reserved:
            raise _fail(where, "metrics", sorted(reserved), "these names are reserved")
        needed = {"events", *names}
        if self.budget.mechanism is Mechanism.GEOMETRIC:
            needed.add("selection")
        given = set(self.budget.shares)
        if given != needed:
            missing, extra = sorted(needed - given), sorted(given - needed)
            raise _fail(
                where, "budget.shares", dict(self.budget.shares),
                f"expected exactly the keys {sorted(needed)} (missing {missing}, "
                f"unexpected {extra})",
            )
        period = self.participation.period_ms
        if period % self.window_ms:
            raise _fail(
                where, "participation.period_ms", period,
                f"expected a whole number of windows (window_ms = {self.window_ms}), e.g. "
                f"{max(1, period // self.window_ms) * self.window_ms}",
            )
        for cap in self.horizon_caps:
            if cap.horizon_ms % period:
                raise _fail(
                    where, "horizon_caps.horizon_ms", cap.horizon_ms,
                    f"expected a whole number of participation periods ({period} ms), e.g. "
                    f"{max(1, cap.horizon_ms // period) * period}: the cap over a horizon "
                    "is derived from whole periods",
                )
        if self.participation.max_windows > math.ceil(
            self.participation.period_ms / self.window_ms
        ):
            raise _fail(
                where, "participation.max_windows", self.participation.max_windows,
                f"more than the {math.ceil(self.participation.period_ms / self.window_ms)} "
                "windows a period holds; lower it",
            )

    def share(self, name: str) -> float:
        return self.budget.shares[name]

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"stream {self.name!r} has no metric {name!r}")
