"""From true cell totals to release records: select cells, add noise, derive.

  # CellTotals (true, per cell) -> selected cells -> noisy integer quantities
  #   -> derived values (sum, mean, rate, quantiles) -> ReleaseRecord per cell

Per window the noisy quantities are: the selection count ("accounts"), the
event count, one centred sum per value metric, one true-count per boolean
metric and one bucket vector per histogram. Everything else (sum, mean, rate,
quantiles) is post-processing of those and costs no budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from privacy.accumulators import CellTotals, quantile_label, quantiles_from_histogram
from privacy.bounding import sensitivities
from privacy.mechanisms import IntegerNoise
from privacy.noise_keys import WindowNoise
from privacy.params import (
    BooleanMetric,
    HistogramMetric,
    Mechanism,
    StreamPolicy,
    ValueMetric,
)
from privacy.records import MetricValue, PrivacyMetadata, ReleaseRecord
from privacy.samplers import KeyedStream
from privacy.selection import PartitionSelection

Z95 = 1.959963984540054
BOOTSTRAP_DRAWS = 200


def selection_for(policy: StreamPolicy) -> PartitionSelection:
    b = policy.budget
    eps = b.epsilon * b.shares["selection"] if b.mechanism is Mechanism.GEOMETRIC else b.epsilon
    return PartitionSelection(
        k=policy.k, epsilon=eps, delta=b.delta, max_cells=policy.bounds.max_cells
    )


def noise_for(policy: StreamPolicy, quantity: str) -> IntegerNoise:
    """The noise of one quantity ("events" or a metric name), from its budget share."""
    sens = sensitivities(policy)[quantity]
    b = policy.budget
    if b.mechanism is Mechanism.GEOMETRIC:
        return IntegerNoise.geometric(epsilon=b.epsilon * b.shares[quantity],
                                      sensitivity=sens.l1)
    assert b.rho is not None
    return IntegerNoise.discrete_gaussian(rho=b.rho * b.shares[quantity],
                                          l2_sensitivity_squared=sens.l2_squared)


def privacy_metadata(policy: StreamPolicy) -> PrivacyMetadata:
    b = policy.budget
    return PrivacyMetadata(
        unit=policy.privacy_unit,
        mechanism=b.mechanism.value,
        epsilon=b.epsilon,
        delta=b.delta,
        rho=b.rho,
        k=policy.k,
        max_cells=policy.bounds.max_cells,
        max_events_per_cell=policy.bounds.max_events_per_cell,
        ranges={m.name: (m.lower, m.upper) for m in policy.metrics if isinstance(m, ValueMetric)},
        selection_threshold=selection_for(policy).threshold,
        policy_version=policy.policy_version,
    )


@dataclass(frozen=True)
class WindowRelease:
    """What one window produced: its records, and nothing else.

    No count of the cells held back (under k or by DP selection): those are
    exact functions of the data (one account alone in a new cell moves them by
    one), so they must not leave with the release, by construction."""

    records: list[ReleaseRecord]


def bucket_label(metric: HistogramMetric, bucket: int) -> str:
    """Name of a published histogram bucket, e.g. ``hour.bucket.13-14``."""
    return f"{metric.name}.bucket.{metric.edges[bucket]:g}-{metric.edges[bucket + 1]:g}"


def _value(
    value: float, std: float, half: float, lo: float = -math.inf, hi: float = math.inf
) -> MetricValue:
    """A value with its noise std and 95% interval (clipped to the value's range)."""
    return MetricValue(
        value=float(value), noise_std=float(std),
        ci95_low=float(max(lo, value - half)), ci95_high=float(min(hi, value + half)),
    )


def _denoised(hist: np.ndarray, std: float) -> np.ndarray:
    """Bucket counts for quantiles: noisy counts under 2 noise std count as 0.

    Post-processing. Without it, noise in the many empty tail buckets adds
    phantom mass and pulls p95/p99 far up.
    """
    return np.where(hist < 2 * std, 0, hist)


def _simulate(noise: IntegerNoise, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
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


def _nan_percentiles(a: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
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


def release_window(
    totals: CellTotals,
    policy: StreamPolicy,
    *,
    window_start_ms: int,
    cell_labels: Callable[[int], Mapping[str, str]],
    noise: WindowNoise,
) -> WindowRelease:
    """Release one window's cells: k floor + DP selection, then noise every metric.

    ``cell_labels`` maps a cell id to its dimension values; ``noise`` gives the
    keyed stream of each (cell, quantity), so the release is a pure function of
    (totals, policy, noise key): recomputing it gives the same bytes.
    """
    dims = policy.dimensions
    cells = totals.cells.tolist()
    label_cache: dict[int, list[str]] = {}

    def cell_key(i: int) -> list[str]:  # the cell's identity in the noise context
        key = label_cache.get(i)
        if key is None:
            labels = cell_labels(cells[i])
            key = label_cache[i] = [labels[d] for d in dims]
        return key

    selection = selection_for(policy)
    released, noisy_accounts, sel_noise = selection.select(
        totals.accounts, lambda i: noise.stream(cell_key(i), "accounts")
    )
    idx = np.flatnonzero(released)
    out = WindowRelease([])
    if idx.size == 0:
        return out
    keys = [cell_key(i) for i in idx.tolist()]

    def streams(quantity: str) -> list[KeyedStream]:
        return noise.streams(keys, quantity)

    metrics: dict[str, list[MetricValue]] = {}
    acc = noisy_accounts[idx]
    sel_half = sel_noise.spread.ci95_half_width
    metrics["accounts"] = [_value(v, sel_noise.spread.std, sel_half) for v in acc]

    ev_noise = noise_for(policy, "events")
    ev = ev_noise.add(totals.events[idx], streams("events"))
    ev_sd = ev_noise.spread.std
    metrics["events"] = [_value(v, ev_sd, ev_noise.spread.ci95_half_width) for v in ev]
    ev_pos = np.maximum(ev, 1).astype(np.float64)  # denominator for means and rates

    for m in policy.metrics:
        mnoise = noise_for(policy, m.name)
        sd = mnoise.spread.std
        col = totals.columns[m.name][idx]
        if isinstance(m, ValueMetric):
            centre = m.lower_q + m.upper_q
            nsum = mnoise.add(col, streams(m.name)).astype(np.float64)
            half_res = m.resolution / 2
            total = (nsum + centre * ev) * half_res
            total_sd = half_res * math.sqrt(sd**2 + centre**2 * ev_sd**2)
            ratio = nsum / ev_pos
            mean = np.clip((ratio + centre) * half_res, m.lower, m.upper)
            mean_sd = half_res * np.sqrt(sd**2 + ratio**2 * ev_sd**2) / ev_pos
            metrics[f"{m.name}.sum"] = [_value(v, total_sd, Z95 * total_sd) for v in total]
            metrics[f"{m.name}.mean"] = [
                _value(v, s, Z95 * s, m.lower, m.upper) for v, s in zip(mean, mean_sd, strict=True)
            ]
        elif isinstance(m, BooleanMetric):
            count = mnoise.add(col, streams(m.name))
            rate = np.clip(count / ev_pos, 0.0, 1.0)
            rate_sd = np.sqrt(sd**2 + rate**2 * ev_sd**2) / ev_pos
            metrics[f"{m.name}.count"] = [
                _value(v, sd, mnoise.spread.ci95_half_width) for v in count
            ]
            metrics[f"{m.name}.rate"] = [
                _value(v, s, Z95 * s, 0.0, 1.0) for v, s in zip(rate, rate_sd, strict=True)
            ]
        else:
            hist = mnoise.add(col, streams(m.name))
            # post-processing randomness, seeded from the window's keyed stream
            rng = np.random.default_rng(noise.stream([], f"bootstrap:{m.name}").seed64())
            point = quantiles_from_histogram(_denoised(hist, sd), m.edges, m.quantiles)
            sims = hist[None] + _simulate(mnoise, (BOOTSTRAP_DRAWS, *hist.shape), rng)
            boot = quantiles_from_histogram(_denoised(sims, sd), m.edges, m.quantiles)
            boot_sd = np.nanstd(boot, axis=0)
            lo, hi = _nan_percentiles(boot, (2.5, 97.5))
            for j, q in enumerate(m.quantiles):
                metrics[f"{m.name}.p{quantile_label(q)}"] = [
                    MetricValue(
                        value=float(point[i, j]), noise_std=float(boot_sd[i, j]),
                        ci95_low=float(lo[i, j]), ci95_high=float(hi[i, j]),
                    )
                    for i in range(idx.size)
                ]
            if m.publish_buckets:
                half = mnoise.spread.ci95_half_width
                for b in range(m.n_buckets):
                    metrics[bucket_label(m, b)] = [_value(v, sd, half) for v in hist[:, b]]

    meta = privacy_metadata(policy)
    window_end = window_start_ms + policy.window_ms
    for pos, key in enumerate(keys):
        out.records.append(
            ReleaseRecord(
                stream=policy.name,
                window_start_ms=window_start_ms,
                window_end_ms=window_end,
                cell=dict(zip(dims, key, strict=True)),
                metrics={name: values[pos] for name, values in metrics.items()},
                privacy=meta,
            )
        )
    return out
