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

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from operator import itemgetter

import numpy as np

from privmon.privacy.accumulators import CellTotals
from privmon.privacy.bounding import sensitivities
from privmon.privacy.columns import MetricColumn
from privmon.privacy.kinds import Metric, ReleaseContext
from privmon.privacy.mechanisms import IntegerNoise
from privmon.privacy.noise_keys import CellsNoise, WindowNoise
from privmon.privacy.params import Mechanism, StreamPolicy
from privmon.privacy.records import SCHEMA, PrivacyMetadata, ReleaseRecord
from privmon.privacy.rowjson import RowWriter
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
        return _public_cells(policy)
    if policy.selection == "truncated_geometric":
        return truncated_selection_for(policy)
    return selection_for(policy)


def _public_cells(policy: StreamPolicy) -> PublicCells:
    return PublicCells(k=policy.k, epsilon=selection_epsilon(policy),
                       max_cells=policy.bounds.max_cells)


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


@dataclass(frozen=True, eq=False)
class WindowRelease:
    """What one window produced: its records, and nothing else.

    No count of the cells held back (under k or by DP selection): those are
    exact functions of the data (one account alone in a new cell moves them by
    one), so they must not leave with the release, by construction.

    Held by column, as released: every record's cell in order, which records
    carry every metric (the others, public cells under k, their account count
    alone), and each released metric as a MetricColumn. ``records`` and
    ``encoded`` are two views of those same values."""

    stream: str = ""
    window_start_ms: int = 0
    window_end_ms: int = 0
    dimensions: tuple[str, ...] = ()
    cells: tuple[tuple[str, ...], ...] = ()  # one per record, in record order
    full: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # per record
    accounts: MetricColumn | None = None  # per record, where the rule publishes it
    metrics: Mapping[str, MetricColumn] = field(default_factory=dict)  # per full record
    privacy: PrivacyMetadata | None = None

    def __len__(self) -> int:
        """How many records (cells) the window published."""
        return len(self.cells)

    @cached_property
    def records(self) -> list[ReleaseRecord]:
        """One ReleaseRecord per published cell (for readers and tests)."""
        out, k = [], 0
        meta = self.privacy
        for j, cell in enumerate(self.cells):
            values = {"accounts": self.accounts.at(j)} if self.accounts is not None else {}
            if self.full[j]:
                values.update((name, col.at(k)) for name, col in self.metrics.items())
                k += 1
            assert meta is not None
            out.append(ReleaseRecord(
                stream=self.stream, window_start_ms=self.window_start_ms,
                window_end_ms=self.window_end_ms,
                cell=dict(zip(self.dimensions, cell, strict=True)), metrics=values,
                privacy=meta, under_k=not bool(self.full[j])))
        return out

    def encoded(self) -> list[tuple[bytes, bytes]]:
        """(key "label|label", ``record.to_json()``) per record, written from the columns:
        the same bytes (tests/privacy/test_columns.py) without making the records, each
        record's bytes in one pass (privacy/rowjson.py: 100k cells in ~0.1 s, not ~0.8)."""
        if not self.cells:
            return []
        assert self.privacy is not None
        head = (f'{{"schema":{_str_json(SCHEMA)},"stream":{_str_json(self.stream)},'
                f'"window_start_ms":{int(self.window_start_ms)},'
                f'"window_end_ms":{int(self.window_end_ms)},"cell":{{')
        privacy = f'}},"privacy":{self.privacy.json_text}'
        keys, cell_json = _cell_parts(self.dimensions, self.cells)
        full = self.full
        # full records: every metric; the others (public cells under k) their accounts
        rows = {True: np.flatnonzero(full), False: np.flatnonzero(~full)}
        written: dict[bool, list[bytes]] = {}
        assert self.accounts is not None or full.all()  # (under k: the accounts alone)
        for is_full, at in rows.items():
            if at.size == 0:
                continue
            every = at.size == len(full)  # (the usual case: no copy of the columns)
            out = RowWriter(at.size)
            out.text(head)
            out.each(cell_json if every else list(map(cell_json.__getitem__, at.tolist())))
            out.text('},"metrics":{')
            sep = ""
            if self.accounts is not None:
                (self.accounts if every else self.accounts.take(at)).write(out, '"accounts":')
                sep = ","
            for name, col in self.metrics.items() if is_full else ():
                col.write(out, f"{sep}{_str_json(name)}:")
                sep = ","
            out.text(privacy + ("}" if is_full else ',"under_k":true}'))
            written[is_full] = out.rows()
        if len(written) == 1:
            values = next(iter(written.values()))
        else:  # in record order
            merged = np.empty(len(full), object)
            merged[rows[True]] = written[True]
            merged[rows[False]] = written[False]
            values = merged.tolist()
        return list(zip(keys, values, strict=True))

    @classmethod
    def empty(cls) -> WindowRelease:
        return cls()


def release_window(
    totals: CellTotals,
    policy: StreamPolicy,
    *,
    window_start_ms: int,
    cell_labels: Callable[[int], Mapping[str, str]] | None = None,
    cell_keys: Sequence[tuple[str, ...]] | None = None,
    noise: WindowNoise,
) -> WindowRelease:
    """Release one window's cells: k floor + DP selection, then noise every metric.

    ``cell_labels`` maps a cell id to its dimension values, or ``cell_keys`` gives
    them in dimension order, by cell id (stage 2 has them so: no dict per cell);
    ``noise`` gives the keyed stream of each (cell, quantity), so the release is a
    pure function of (totals, policy, noise key): recomputing it gives the same bytes.
    """
    dims = policy.dimensions
    # each cell's labels in dimension order: its identity in the noise context and record
    if (cell_labels is None) == (cell_keys is None):
        raise TypeError("release_window: expected cell_labels or cell_keys, not both "
                        "or neither")
    if cell_keys is not None:
        keys = [tuple(cell_keys[c]) for c in totals.cells.tolist()]
    else:
        assert cell_labels is not None
        keys = [tuple([labels[d] for d in dims]) for labels in map(cell_labels,
                                                                    totals.cells.tolist())]
    cell_noise = noise.cells(keys)
    decision = selection_rule(policy).decide(totals.accounts, cell_noise)
    shown, full_idx = decision.shown, decision.full
    if policy.public_cells:  # no other cell can be opened (by construction in stage 1;
        listed = policy.released_set  # checked again here)
        keep = np.fromiter(map(listed.__contains__, map(keys.__getitem__, shown.tolist())),
                           bool, shown.size)
        shown, full_idx = shown[keep], np.intersect1d(full_idx, shown[keep])
    if shown.size == 0:
        return WindowRelease.empty()
    accounts = None
    if decision.noise is not None:
        sel_noise, noisy_accounts = decision.noise, decision.noisy_accounts
        assert noisy_accounts is not None
        # Intervals clipped to the quantity's domain (counts >= 0), as every kind clips its
        # own (post-processing of public values); the value itself is the noisy draw.
        accounts = MetricColumn.around(noisy_accounts[shown], sel_noise.spread.std,
                                       sel_noise.spread.ci95_half_width, 0.0)
    full = np.isin(shown, full_idx)
    return WindowRelease(
        stream=policy.name, window_start_ms=window_start_ms,
        window_end_ms=window_start_ms + policy.window_ms, dimensions=dims,
        cells=tuple(keys[i] for i in shown.tolist()), full=full, accounts=accounts,
        metrics=_full_columns(totals, policy, shown[full], cell_noise, noise),
        privacy=privacy_metadata(policy))


def _full_columns(totals: CellTotals, policy: StreamPolicy, idx: np.ndarray,
                  cell_noise: CellsNoise, noise: WindowNoise) -> dict[str, MetricColumn]:
    """Every metric but the account count, for the cells ``idx`` (in that order)."""
    if idx.size == 0:
        return {}
    rows = idx.tolist()
    ev_noise = noise_for(policy, "events")
    ev = np.asarray(totals.events[idx], np.int64) + cell_noise.draws(ev_noise, rows, "events")
    metrics = {"events": MetricColumn.around(ev, ev_noise.spread.std,
                                             ev_noise.spread.ci95_half_width, 0.0)}

    def bootstrap_rng(name: str) -> np.random.Generator:  # seeded from the keyed stream
        return np.random.default_rng(noise.stream([], f"bootstrap:{name}").seed64())

    for m in policy.metrics:
        mnoise = noise_for(policy, m.name)
        values = np.asarray(totals.columns[m.name][idx], np.int64)
        noisy = values + cell_noise.draws(mnoise, rows, m.name, _width(m)).reshape(values.shape)
        # noisy: int64[n] or int64[n, buckets] -> the kind's released values
        metrics.update(m.release(noisy, ReleaseContext(
            events=ev, events_std=ev_noise.spread.std, noise=mnoise,
            bootstrap_rng=bootstrap_rng)))
    return metrics


def _width(metric: Metric) -> int:
    """Values per cell of a metric's noisy column (1, or its buckets)."""
    return int(np.prod(metric.buckets, dtype=np.int64))


def noise_plan(policy: StreamPolicy) -> list[tuple[str, IntegerNoise, int]]:
    """What ``release_window`` draws per released cell of a public stream: (quantity,
    noise, values per cell), for ``WindowNoise.prepare`` to draw ahead."""
    if not policy.public_cells:
        raise ValueError(f"stream {policy.name!r}: only public cells are known ahead")
    return [("accounts", _public_cells(policy).noise(), 1),
            ("events", noise_for(policy, "events"), 1),
            *((m.name, noise_for(policy, m.name), _width(m)) for m in policy.metrics)]


# Per dimensions, each cell label's (record key, "cell" JSON), kept across windows: a
# stream releases mostly the same cells every window (all of them, for public cells),
# and writing these was ~0.09 s of a 100k-cell window. Released labels only; cleared
# whole when it would pass CELL_PARTS_MAX labels (one process's releases share it).
CELL_PARTS_MAX = 1 << 18
_CELL_PARTS: dict[tuple[str, ...], dict[tuple[str, ...], tuple[bytes, bytes]]] = {}
_CELL_PARTS_LOCK = threading.Lock()
_FIRST, _SECOND = itemgetter(0), itemgetter(1)


def _cell_parts(dims: tuple[str, ...], cells: Sequence[tuple[str, ...]]
                ) -> tuple[list[bytes], list[bytes]]:
    """Each cell's record key ("label|label", UTF-8) and the members of its "cell"
    object (``"dim":"label"``, as json.dumps writes them, UTF-8)."""
    with _CELL_PARTS_LOCK:  # (releases of several workers in one process: threads)
        known = _CELL_PARTS.setdefault(dims, {})
        got = list(map(known.get, cells))
        if None in got:
            if sum(map(len, _CELL_PARTS.values())) + len(cells) > CELL_PARTS_MAX:
                _CELL_PARTS.clear()
                known = _CELL_PARTS[dims] = {}
            names = [f"{_str_json(d)}:" for d in dims]
            for i, cell in enumerate(cells):
                if got[i] is None:
                    got[i] = known[cell] = ("|".join(cell).encode(), ",".join(
                        [n + _str_json(v) for n, v in zip(names, cell, strict=True)]).encode())
    return list(map(_FIRST, got)), list(map(_SECOND, got))  # type: ignore[arg-type]


def _str_json(text: str) -> str:
    """A string as json.dumps writes it (ASCII-escaped); anything else by json itself."""
    return encode_basestring_ascii(text) if type(text) is str else json.dumps(text)
