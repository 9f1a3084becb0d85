"""Small stream policies shared by the privacy tests."""

from __future__ import annotations

from privmon.privacy.kinds import BooleanMetric, HistogramMetric, ValueMetric
from privmon.privacy.params import (
    ContributionBounds,
    HorizonCap,
    ParticipationCap,
    PrivacyBudget,
    StreamPolicy,
)

DAY_MS = 86_400_000


def make_policy(
    *,
    mechanism: str = "geometric",
    epsilon: float = 1.0,
    delta: float = 1e-6,
    rho: float | None = None,
    max_cells: int = 2,
    max_events_per_cell: int = 5,
    k: int = 10,
    histogram: bool = True,
    max_windows: int = 24,
    max_epsilon: float = 1000.0,
    public_cells: tuple[tuple[str, ...], ...] = (),
    dimensions: tuple[str, ...] = ("server",),
) -> StreamPolicy:
    metrics: list = [
        ValueMetric(name="latency", field="latency_ms", lower=0, upper=1000),
        BooleanMetric(name="errors", field="error"),
    ]
    if histogram:
        metrics.append(
            HistogramMetric(
                name="latency_hist", field="latency_ms",
                edges=(0, 10, 20, 50, 100, 200, 500, 1000),
            )
        )
    names = [m.name for m in metrics]
    if mechanism == "geometric":
        keys = ["selection", "events", *names]
    else:
        keys = ["events", *names]
    shares = {key: 1 / len(keys) for key in keys}
    shares[keys[-1]] = 1 - sum(shares[key] for key in keys[:-1])
    return StreamPolicy(
        name="test",
        window_ms=60_000,
        dimensions=dimensions,
        metrics=tuple(metrics),
        bounds=ContributionBounds(max_cells=max_cells, max_events_per_cell=max_events_per_cell),
        budget=PrivacyBudget(
            mechanism=mechanism, epsilon=epsilon, delta=delta, rho=rho, shares=shares
        ),
        k=k,
        participation=ParticipationCap(max_windows=max_windows, period_ms=DAY_MS),
        horizon_caps=(HorizonCap(horizon_ms=DAY_MS, max_epsilon=max_epsilon, max_delta=1e-3),),
        policy_version="test-1",
        public_cells=public_cells,
    )
