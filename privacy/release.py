"""From true cell totals to release records: select cells, add noise, derive.

  # CellTotals (true, per cell) -> selected cells -> noisy integer quantities
  #   -> derived values (sum, mean, rate, quantiles) -> ReleaseRecord per cell

Per window the noisy quantities are: the selection count ("accounts"), the
event count, one centred sum per value metric, one true-count per boolean
metric and one bucket vector per histogram. Everything else (sum, mean, rate,
quantiles) is post-processing of those and costs no budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from privmon.privacy.accumulators import CellTotals
from privmon.privacy.bounding import sensitivities
from privmon.privacy.kinds import ReleaseContext
from privmon.privacy.mechanisms import IntegerNoise
from privmon.privacy.noise_keys import WindowNoise
from privmon.privacy.params import Mechanism, StreamPolicy
from privmon.privacy.records import MetricValue, PrivacyMetadata, ReleaseRecord
from privmon.privacy.samplers import KeyedStream
from privmon.privacy.selection import PartitionSelection


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
        ranges={m.name: m.clamp_range for m in policy.metrics if m.clamp_range is not None},
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
    # Intervals clipped to the quantity's domain (counts >= 0), as every kind clips its
    # own (post-processing of public values); the value itself is the noisy draw.
    metrics["accounts"] = [MetricValue.around(v, sel_noise.spread.std, sel_half, 0.0)
                           for v in acc]

    ev_noise = noise_for(policy, "events")
    ev = ev_noise.add(totals.events[idx], streams("events"))
    metrics["events"] = [MetricValue.around(v, ev_noise.spread.std,
                                            ev_noise.spread.ci95_half_width, 0.0) for v in ev]

    def bootstrap_rng(name: str) -> np.random.Generator:  # seeded from the keyed stream
        return np.random.default_rng(noise.stream([], f"bootstrap:{name}").seed64())

    for m in policy.metrics:
        mnoise = noise_for(policy, m.name)
        noisy = mnoise.add(totals.columns[m.name][idx], streams(m.name))
        # noisy: int64[n] or int64[n, buckets] -> the kind's released values
        metrics.update(m.release(noisy, ReleaseContext(
            events=ev, events_std=ev_noise.spread.std, noise=mnoise,
            bootstrap_rng=bootstrap_rng)))

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
