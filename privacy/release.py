"""From true cell totals to release records: select cells, add noise, derive.

  # CellTotals (true, per cell) -> selected cells -> noisy integer quantities
  #   -> derived values (sum, mean, rate, quantiles) -> ReleaseRecord per cell

Per window the noisy quantities are: the selection count ("accounts"), the
event count, one centred sum per value metric, one true-count per boolean
metric and one bucket vector per histogram. Everything else (sum, mean, rate,
quantiles) is post-processing of those and costs no budget.

Public cells (``StreamPolicy.public_cells``): no selection. Every cell given is
released (the caller gives every listed cell, with zero totals where it had no
events); a cell whose noisy account count is under k is published as that count
alone, marked ``under_k`` (deciding on a noisy value is post-processing: free).
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
from privmon.privacy.selection import (
    PartitionSelection,
    PublicCells,
    SelectionRule,
    TruncatedGeometricSelection,
)


def selection_epsilon(policy: StreamPolicy) -> float:
    """The per-window ε of the noisy account counts (and of selection, if any)."""
    b = policy.budget
    return b.epsilon * b.shares["selection"] if b.mechanism is Mechanism.GEOMETRIC else b.epsilon


def selection_for(policy: StreamPolicy) -> PartitionSelection:
    """DP partition selection of a stream with private cells."""
    return PartitionSelection(k=policy.k, epsilon=selection_epsilon(policy),
                              delta=policy.budget.delta, max_cells=policy.bounds.max_cells)


def truncated_selection_for(policy: StreamPolicy) -> TruncatedGeometricSelection:
    """The optimal keep probabilities of a stream with selection = truncated_geometric."""
    return TruncatedGeometricSelection(k=policy.k, epsilon=selection_epsilon(policy),
                                       delta=policy.budget.delta,
                                       max_cells=policy.bounds.max_cells)


def accounts_noise(policy: StreamPolicy) -> IntegerNoise:
    """The noise of each cell's distinct-account count (sensitivity L0)."""
    return IntegerNoise.geometric(epsilon=selection_epsilon(policy),
                                  sensitivity=policy.bounds.max_cells)


def selection_rule(policy: StreamPolicy) -> SelectionRule:
    """Which cells of a window get a record, and which in full (the one place that
    tells public cells and the two selection rules apart)."""
    if policy.public_cells:
        return PublicCells(k=policy.k, epsilon=selection_epsilon(policy),
                           max_cells=policy.bounds.max_cells)
    if policy.selection == "truncated_geometric":
        return truncated_selection_for(policy)
    return selection_for(policy)


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
    rule = selection_rule(policy)
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
        selection_threshold=rule.published_threshold,
        selection=rule.name,
        policy_version=policy.policy_version,
        public_cells=bool(policy.public_cells),
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

    decision = selection_rule(policy).decide(
        totals.accounts, lambda i, quantity: noise.stream(cell_key(i), quantity))
    shown, full_idx = decision.shown, decision.full
    if policy.public_cells:  # no other cell can be opened (by construction in stage 1;
        listed = set(policy.released_cells)  # checked again here)
        keep = np.array([tuple(cell_key(i)) in listed for i in shown.tolist()], bool)
        shown, full_idx = shown[keep], np.intersect1d(full_idx, shown[keep])
    out = WindowRelease([])
    if shown.size == 0:
        return out
    meta = privacy_metadata(policy)
    window_end = window_start_ms + policy.window_ms
    accounts: dict[int, MetricValue] = {}
    if decision.noise is not None:
        sel_noise, noisy_accounts = decision.noise, decision.noisy_accounts
        assert noisy_accounts is not None
        sel_half = sel_noise.spread.ci95_half_width
        # Intervals clipped to the quantity's domain (counts >= 0), as every kind clips its
        # own (post-processing of public values); the value itself is the noisy draw.
        accounts = {i: MetricValue.around(v, sel_noise.spread.std, sel_half, 0.0)
                    for i, v in zip(shown.tolist(), noisy_accounts[shown].tolist(),
                                    strict=True)}
    full = _full_records(totals, policy, full_idx, cell_key, noise, accounts,
                         meta=meta, window_start_ms=window_start_ms)
    for i in shown.tolist():
        key = cell_key(i)
        out.records.append(full[i] if i in full else ReleaseRecord(
            stream=policy.name, window_start_ms=window_start_ms, window_end_ms=window_end,
            cell=dict(zip(dims, key, strict=True)), metrics={"accounts": accounts[i]},
            privacy=meta, under_k=True))
    return out


def _full_records(totals: CellTotals, policy: StreamPolicy, idx: np.ndarray,
                  cell_key: Callable[[int], list[str]], noise: WindowNoise,
                  accounts: Mapping[int, MetricValue], *, meta: PrivacyMetadata,
                  window_start_ms: int) -> dict[int, ReleaseRecord]:
    """Cell index -> its record with every metric, for the cells ``idx``."""
    if idx.size == 0:
        return {}
    dims = policy.dimensions
    keys = [cell_key(i) for i in idx.tolist()]

    def streams(quantity: str) -> list[KeyedStream]:
        return noise.streams(keys, quantity)

    metrics: dict[str, list[MetricValue]] = (
        {"accounts": [accounts[i] for i in idx.tolist()]} if accounts else {})

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

    window_end = window_start_ms + policy.window_ms
    return {i: ReleaseRecord(stream=policy.name, window_start_ms=window_start_ms,
                             window_end_ms=window_end, cell=dict(zip(dims, key, strict=True)),
                             metrics={name: values[pos] for name, values in metrics.items()},
                             privacy=meta)
            for pos, (i, key) in enumerate(zip(idx.tolist(), keys, strict=True))}
