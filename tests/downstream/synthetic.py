"""Release records with known truth, made by the real release path.

``release_records`` turns chosen per-cell truths into CellTotals and releases
them with privacy.release.release_window under a configured policy, so the
records carry the pipeline's own noise and metadata.
"""

from __future__ import annotations

import numpy as np

from privmon.privacy.accumulators import CellTotals
from privmon.privacy.kinds import HistogramMetric, ValueMetric
from privmon.privacy.params import StreamPolicy
from privmon.privacy.records import ReleaseRecord
from privmon.privacy.release import release_window
from privmon.streams.config import load_config
from tests.privacy.keyed import window_noise

DAY_MS = 86_400_000
REGIONS = ("eu-central", "us-east", "ap-south")
SERVERS = {"eu-central": ("fra-01", "fra-02", "fra-03"), "us-east": ("nyc-01", "nyc-02"),
           "ap-south": ("bom-01", "bom-02")}
PEAK_HOUR = {"eu-central": 19, "us-east": 1, "ap-south": 14}  # UTC


def totals_for(policy: StreamPolicy, cells: list[dict]) -> CellTotals:
    """CellTotals from truths: each dict has accounts, events and per metric either a
    'mean' (value metrics) or 'counts' (histograms) or 'count' (booleans)."""
    n = len(cells)
    events = np.array([c["events"] for c in cells], np.int64)
    cols: dict[str, np.ndarray] = {}
    for m in policy.metrics:
        if isinstance(m, ValueMetric):
            # release: total = (centred_sum + centre * events) * resolution / 2
            centre = m.lower_q + m.upper_q
            total = np.array([c[m.name] * c["events"] for c in cells], float)
            cols[m.name] = np.rint(total / (m.resolution / 2) - centre * events).astype(np.int64)
        elif isinstance(m, HistogramMetric):
            cols[m.name] = np.array([c[m.name] for c in cells], np.int64).reshape(n, m.n_buckets)
        else:
            cols[m.name] = np.array([c[m.name] for c in cells], np.int64)
    return CellTotals(cells=np.arange(n, dtype=np.int64),
                      accounts=np.array([c["accounts"] for c in cells], np.int64),
                      events=events, columns=cols)


def release_records(policy: StreamPolicy, start_ms: int, cells: list[dict],
                    seed: int) -> list[ReleaseRecord]:
    labels = [c["labels"] for c in cells]
    rel = release_window(totals_for(policy, cells), policy, window_start_ms=start_ms,
                         cell_labels=lambda i: labels[i],
                         noise=window_noise(seed, start_ms, policy.name))
    return rel.records


def hour_profile(peak: int, total: int) -> list[int]:
    """Events per hour of day, a bump around ``peak``."""
    h = np.arange(24)
    dist = np.minimum(np.abs(h - peak), 24 - np.abs(h - peak))
    w = np.exp(-(dist / 3.5) ** 2) + 0.15
    return list(np.floor(total * w / w.sum()).astype(int))


def capacity_days(days: int, *, end_ms: int, growth_per_day: float = 0.004,
                  seed: int = 1) -> list[ReleaseRecord]:
    """``days`` daily capacity windows ending before ``end_ms`` (configs/streams.toml's
    capacity policy): traffic grows by ``growth_per_day``, each region peaks at
    PEAK_HOUR, server fra-02 carries the most bandwidth."""
    policy = load_config().policy("capacity")
    first = (end_ms // DAY_MS - days) * DAY_MS
    out = []
    for d in range(days):
        g = 1 + growth_per_day * d
        cells = []
        for region in REGIONS:
            for i, server in enumerate(SERVERS[region]):
                accounts = int(40_000 * g / (i + 1))
                events = 3 * accounts
                cells.append({
                    "labels": {"region": region, "server": server},
                    "accounts": accounts, "events": events,
                    "bytes": 30e6 if server == "fra-02" else 12e6, "session": 900.0,
                    "hour": hour_profile(PEAK_HOUR[region], events),
                })
        out += release_records(policy, first + d * DAY_MS, cells, seed=seed + d)
    return out


MONITORING_SERVERS = (("fra-01", "eu-central"), ("fra-03", "eu-central"),
                      ("nyc-01", "us-east"), ("nyc-02", "us-east"))


def monitoring_window(start_ms: int, *, incident: bool = False, us_east_factor: float = 1.0,
                      seed: int = 1) -> list[ReleaseRecord]:
    """One window of configs/streams.toml's monitoring stream (1 min, k = 20).

    Cells have 20k accounts and 60k events (1% errors): at epsilon 0.5 the error
    rate's noise std is ~1%. ``incident``: fra-03 fails 27% of requests. The
    us-east servers' traffic is scaled by ``us_east_factor``. A 3-account cell
    ("tiny-01", every request failing) is always present and never released.
    """
    policy = load_config().policy("monitoring")
    cells = []
    for server, region in (*MONITORING_SERVERS, ("tiny-01", "eu-central")):
        accounts = 3 if server == "tiny-01" else 20_000
        if region == "us-east":
            accounts = int(accounts * us_east_factor)
        events = 3 * accounts
        rate = 1.0 if server == "tiny-01" else 0.27 if incident and server == "fra-03" else 0.01
        hist = [0] * 14
        hist[6] = events  # 75-100 ms
        cells.append({"labels": {"server": server, "region": region}, "accounts": accounts,
                      "events": events, "latency": 85.0, "errors": int(rate * events),
                      "latency_hist": hist})
    return release_records(policy, start_ms, cells, seed=seed)
