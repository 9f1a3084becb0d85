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
from functools import cached_property
from types import MappingProxyType

from privmon.privacy.checks import fail, integer, real
from privmon.privacy.kinds import Metric

# The label (every dimension) of the cell that counts the events of unlisted cells in a
# stream with public cells: itself public, so released every window like the others.
UNLISTED = "(unlisted)"
SELECTION_RULES = ("noisy_threshold", "truncated_geometric")


class Mechanism(StrEnum):
    """How metric noise is drawn.

    GEOMETRIC: two-sided geometric (discrete Laplace), pure epsilon-DP per metric.
    GAUSSIAN: discrete Gaussian calibrated to rho-zCDP (composes better over
    many windows). Partition selection always uses the geometric mechanism.
    """

    GEOMETRIC = "geometric"
    GAUSSIAN = "gaussian"


@dataclass(frozen=True, kw_only=True)
class ContributionBounds:
    """Per account and window: at most ``max_cells`` cells (L0), at most
    ``max_events_per_cell`` events in each (Linf). Value ranges live on the metrics."""

    max_cells: int
    max_events_per_cell: int

    def __post_init__(self) -> None:
        integer("ContributionBounds", "max_cells", self.max_cells, minimum=1)
        integer("ContributionBounds", "max_events_per_cell", self.max_events_per_cell, minimum=1)


@dataclass(frozen=True, kw_only=True)
class ParticipationCap:
    """An account contributes to at most ``max_windows`` windows of a stream per
    aligned ``period_ms`` (e.g. per UTC day). Bounds the loss over horizons."""

    max_windows: int
    period_ms: int

    def __post_init__(self) -> None:
        integer("ParticipationCap", "max_windows", self.max_windows, minimum=1)
        integer("ParticipationCap", "period_ms", self.period_ms, minimum=1)


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
        integer("HorizonCap", "horizon_ms", self.horizon_ms, minimum=1)
        if real("HorizonCap", "max_epsilon", self.max_epsilon) <= 0:
            raise fail("HorizonCap", "max_epsilon", self.max_epsilon, "expected > 0")
        if not 0 <= real("HorizonCap", "max_delta", self.max_delta) < 1:
            raise fail("HorizonCap", "max_delta", self.max_delta, "expected in [0, 1)")


@dataclass(frozen=True, kw_only=True)
class PrivacyBudget:
    """Per-window budget of one release stream and how it is split.

    GEOMETRIC: ``epsilon`` is the whole per-window epsilon, split by ``shares``
    over "selection", "events" and every metric name (shares sum to 1);
    ``delta`` is spent by partition selection only.
    GAUSSIAN: ``rho`` (zCDP) is split by ``shares`` over "events" and every
    metric name; ``epsilon`` and ``delta`` go to partition selection.
    "selection" pays the noisy distinct-account count of each cell: with private
    cells it also decides which cells appear (and needs ``delta`` > 0); with public
    cells (``StreamPolicy.public_cells``) every listed cell appears and ``delta``
    must be 0.
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
                raise fail(
                    where, "mechanism", self.mechanism,
                    f"expected one of {[m.value for m in Mechanism]}",
                ) from None
        if real(where, "epsilon", self.epsilon) <= 0:
            raise fail(where, "epsilon", self.epsilon, "expected > 0 (e.g. 1.0 per window)")
        if not 0 <= real(where, "delta", self.delta) < 1:
            raise fail(
                where, "delta", self.delta,
                "expected in [0, 1): partition selection needs a delta, e.g. 1e-6 (0 for a "
                "stream with public cells)",
            )
        if self.mechanism is Mechanism.GAUSSIAN:
            if self.rho is None or real(where, "rho", self.rho) <= 0:
                raise fail(where, "rho", self.rho, "the gaussian mechanism needs rho > 0")
        elif self.rho is not None:
            raise fail(
                where, "rho", self.rho, "rho is only used with mechanism='gaussian'; remove it"
            )
        if not isinstance(self.shares, Mapping) or not self.shares:
            raise fail(where, "shares", self.shares, "expected a mapping of name -> share")
        for name, share in self.shares.items():
            if real(where, f"shares[{name!r}]", share) <= 0:
                raise fail(where, f"shares[{name!r}]", share, "expected a share > 0")
        total = sum(self.shares.values())
        if abs(total - 1.0) > 1e-9:
            raise fail(where, "shares", dict(self.shares), f"shares sum to {total}, expected 1")
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
    # The cells of a stream whose cells are public configuration (e.g. the server
    # inventory): every one is released every window, and no event opens another
    # (events of unlisted cells count in the UNLISTED cell). Empty: cells are private,
    # and DP partition selection decides which appear.
    public_cells: tuple[tuple[str, ...], ...] = ()
    # How private cells are selected: "noisy_threshold" (the noisy account count,
    # published as "accounts", must pass a threshold) or "truncated_geometric" (the
    # optimal keep probabilities, privacy/selection.py: cells appear at fewer
    # accounts, and no account count is published).
    selection: str = "noisy_threshold"

    def __post_init__(self) -> None:
        where = f"StreamPolicy({self.name!r})"
        if not self.name or not isinstance(self.name, str):
            raise fail("StreamPolicy", "name", self.name, "expected a non-empty string")
        integer(where, "window_ms", self.window_ms, minimum=1)
        integer(where, "grace_ms", self.grace_ms, minimum=0)
        integer(where, "k", self.k, minimum=2)
        if self.privacy_unit != "account":
            raise fail(where, "privacy_unit", self.privacy_unit, "only 'account' is supported")
        if not self.dimensions:
            raise fail(where, "dimensions", self.dimensions, "expected at least one dimension")
        if not self.horizon_caps:
            raise fail(
                where, "horizon_caps", self.horizon_caps,
                "expected at least one HorizonCap (e.g. 24 h and 30 d); a stream with no "
                "cap on its total privacy loss is refused",
            )
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise fail(where, "metrics", names, "metric names must be unique")
        reserved = {"events", "accounts", "selection"} & set(names)
        if reserved:
            raise fail(where, "metrics", sorted(reserved), "these names are reserved")
        needed = {"events", *names}
        if self.budget.mechanism is Mechanism.GEOMETRIC:
            needed.add("selection")
        given = set(self.budget.shares)
        if given != needed:
            missing, extra = sorted(needed - given), sorted(given - needed)
            raise fail(
                where, "budget.shares", dict(self.budget.shares),
                f"expected exactly the keys {sorted(needed)} (missing {missing}, "
                f"unexpected {extra})",
            )
        period = self.participation.period_ms
        if period % self.window_ms:
            raise fail(
                where, "participation.period_ms", period,
                f"expected a whole number of windows (window_ms = {self.window_ms}), e.g. "
                f"{max(1, period // self.window_ms) * self.window_ms}",
            )
        for cap in self.horizon_caps:
            if cap.horizon_ms % period:
                raise fail(
                    where, "horizon_caps.horizon_ms", cap.horizon_ms,
                    f"expected a whole number of participation periods ({period} ms), e.g. "
                    f"{max(1, cap.horizon_ms // period) * period}: the cap over a horizon "
                    "is derived from whole periods",
                )
        if self.participation.max_windows > math.ceil(
            self.participation.period_ms / self.window_ms
        ):
            raise fail(
                where, "participation.max_windows", self.participation.max_windows,
                f"more than the {math.ceil(self.participation.period_ms / self.window_ms)} "
                "windows a period holds; lower it",
            )
        self._check_public_cells(where)

    def _check_public_cells(self, where: str) -> None:
        cells = self.public_cells
        if not isinstance(cells, tuple) or not all(
                isinstance(c, tuple) and len(c) == len(self.dimensions)
                and all(isinstance(v, str) and v for v in c) for c in cells):
            raise fail(where, "public_cells", cells,
                       f"expected tuples of {len(self.dimensions)} non-empty strings "
                       f"({', '.join(self.dimensions)})")
        if len(set(cells)) != len(cells) or list(cells) != sorted(cells):
            raise fail(where, "public_cells", cells, "expected sorted, without duplicates")
        if any(UNLISTED in c for c in cells):
            raise fail(where, "public_cells", UNLISTED,
                       "is the label of events of unlisted cells; rename that cell")
        if self.selection not in SELECTION_RULES:
            raise fail(where, "selection", self.selection,
                       f"expected one of {list(SELECTION_RULES)}")
        if cells and self.selection != "noisy_threshold":
            raise fail(where, "selection", self.selection,
                       "a stream with public cells selects none; remove it")
        if cells and self.budget.delta != 0:
            raise fail(where, "budget.delta", self.budget.delta,
                       "a stream with public cells selects none (every listed cell is "
                       "released): set delta = 0")
        if not cells and self.budget.delta == 0:
            raise fail(where, "budget.delta", self.budget.delta,
                       "partition selection needs a delta > 0 (e.g. 1e-8), or list the "
                       "stream's cells as public_cells")

    @property
    def released_cells(self) -> tuple[tuple[str, ...], ...]:
        """Public streams: the listed cells and the UNLISTED one, released every window."""
        if not self.public_cells:
            return ()
        return (*self.public_cells, (UNLISTED,) * len(self.dimensions))

    def cell_labels(self, labels: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
        """The cell each event's dimension values count in (UNLISTED where not public)."""
        if not self.public_cells:
            return labels
        public, unlisted = self._public_set, (UNLISTED,) * len(self.dimensions)
        return [label if label in public else unlisted for label in labels]

    # (cached in the instance's __dict__: a frozen dataclass's fields stay as they are)
    @cached_property
    def released_set(self) -> frozenset[tuple[str, ...]]:
        """``released_cells`` as a set (made once)."""
        return frozenset(self.released_cells)

    @cached_property
    def _public_set(self) -> frozenset[tuple[str, ...]]:
        return frozenset(self.public_cells)

    def share(self, name: str) -> float:
        return self.budget.shares[name]

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"stream {self.name!r} has no metric {name!r}")
