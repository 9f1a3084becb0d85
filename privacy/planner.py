"""What a policy buys: release odds, noise and error per cell size, and the guarantee.

  # StreamPolicy (configuration only, never data)
  #   -> P(a cell of n accounts is published in full) -> accounts for 50% / 95%
  #   -> a synthetic cell of n accounts (e events each, values at mid-range, booleans
  #      at a given rate) through the kinds' own release, without noise drawn
  #      -> each released value's noise std and 95% half-width at n
  #      -> accounts for a 10% relative error at 95% confidence
  #   -> the composed guarantee over each horizon (privacy/accountant.py)

``privmon policy explain`` prints it. Everything is a function of the config.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from privmon.privacy.accountant import headroom, horizon_guarantee
from privmon.privacy.kinds import ReleaseContext
from privmon.privacy.mechanisms import IntegerNoise
from privmon.privacy.params import HorizonCap, StreamPolicy
from privmon.privacy.release import accounts_noise, noise_for, selection_rule

MAX_ACCOUNTS = 10**9  # searches stop here ("more than")


def release_probability(policy: StreamPolicy, accounts: int) -> float:
    """P(a cell of ``accounts`` distinct accounts gets a full record in a window):
    private cells, k floor and DP selection; public cells, noisy count >= k."""
    return selection_rule(policy).keep_probability(accounts)


def accounts_for(predicate: Callable[[int], bool], start: int = 1) -> int | None:
    """The smallest n >= start with predicate(n), predicate monotone; None above MAX."""
    hi = max(start, 1)
    while not predicate(hi):
        if hi >= MAX_ACCOUNTS:
            return None
        hi = min(hi * 2, MAX_ACCOUNTS)
    lo = max(start, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if predicate(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def accounts_for_release(policy: StreamPolicy, probability: float) -> int | None:
    return accounts_for(lambda n: release_probability(policy, n) >= probability)


@dataclass(frozen=True, kw_only=True)
class ValueSpread:
    true: float  # the synthetic cell's value
    std: float
    half: float  # 95% half-width (before clipping to the domain)


def spreads(policy: StreamPolicy, accounts: int, *, events_per_account: float,
            rate: float, only: str | None = None) -> dict[str, ValueSpread]:
    """Each released value of a full record of a synthetic cell, without noise drawn
    (``only``: just the metric whose released names include it)."""
    events = max(1, round(accounts * events_per_account))
    ev = np.array([events], np.int64)
    out = {"accounts": _spread(accounts, accounts_noise(policy)),
           "events": _spread(events, noise_for(policy, "events"))}
    if policy.selection == "truncated_geometric":  # selection publishes no count
        del out["accounts"]
    if only in out:
        return out
    for m in policy.metrics:
        if only is not None and only not in m.released_names():
            continue
        noise = noise_for(policy, m.name)
        if m.buckets:  # spread evenly over the buckets
            width = m.buckets[0]
            column = np.full((1, width), events // width, np.int64)
        elif m.KIND == "value":  # every value at mid-range: the centred sum is 0
            column = np.zeros(1, np.int64)
        else:  # boolean: true for ``rate`` of the events
            column = np.array([round(rate * events)], np.int64)
        true = m.true_result(column, ev)
        ctx = ReleaseContext(events=ev, events_std=noise_for(policy, "events").spread.std,
                             noise=noise, bootstrap_rng=lambda _: np.random.default_rng(0))
        for name, values in m.release(column, ctx).items():
            v = values.at(0)
            half = v.ci95_half if v.ci95_half is not None else (v.ci95_high - v.ci95_low) / 2
            t = float(true[name][0]) if name in true else v.value
            out[name] = ValueSpread(true=t, std=v.noise_std, half=half)
    return out


def _spread(true: int, noise: IntegerNoise) -> ValueSpread:
    return ValueSpread(true=float(true), std=noise.spread.std, half=noise.spread.ci95_half_width)


def accounts_for_relative_error(policy: StreamPolicy, name: str, *, target: float,
                                events_per_account: float, rate: float) -> int | None:
    """Smallest cell size whose ``name`` has a 95% half-width <= target·|value|."""
    def ok(n: int) -> bool:
        s = spreads(policy, n, events_per_account=events_per_account, rate=rate,
                    only=name)[name]
        return s.true != 0 and s.half <= target * abs(s.true)
    return accounts_for(ok)


def _scaled_quantiles(names: Sequence[str]) -> list[str]:
    return [n for n in names if ".p" in n and n.rsplit(".p", 1)[1].isdigit()]


def explain(policies: Sequence[StreamPolicy], global_caps: Sequence[HorizonCap], *,
            events_per_account: float = 10.0, rate: float = 0.1, target: float = 0.1,
            all_policies: Sequence[StreamPolicy] | None = None) -> dict:
    """The planner's report as data (``privmon policy explain --json``): ``policies``
    one by one, then ``all_policies`` (default: the same) together."""
    streams = []
    for p in policies:
        half, most = accounts_for_release(p, 0.5), accounts_for_release(p, 0.95)
        at = most or p.k
        spread = spreads(p, at, events_per_account=events_per_account, rate=rate)
        quantiles = set(_scaled_quantiles(list(spread)))
        values = []
        for name, s in spread.items():
            # quantiles: their interval comes from a bootstrap, not a formula in n
            applies = name not in quantiles
            needed = accounts_for_relative_error(
                p, name, target=target, events_per_account=events_per_account,
                rate=rate) if applies else None
            values.append({"name": name, "std": s.std, "ci95_half": s.half,
                           "target_applies": applies, "accounts_for_target": needed})
        streams.append({
            "stream": p.name, "window_ms": p.window_ms, "dimensions": list(p.dimensions),
            "public_cells": len(p.released_cells) if p.public_cells else None, "k": p.k,
            "selection": "public_cells" if p.public_cells else p.selection,
            "accounts_for_release": {"50%": half, "95%": most},
            "spread_at_accounts": at, "values": values,
            "horizons": [_horizon([p], cap) for cap in p.horizon_caps],
        })
    everything = all_policies or policies
    return {"events_per_account": events_per_account, "rate": rate, "target": target,
            # every per-window budget could be ×this within every cap (noise ÷ it)
            "headroom": headroom(everything, global_caps),
            "streams": streams,
            "all_streams": [_horizon(all_policies or policies, c) for c in global_caps]}


def _horizon(policies: Sequence[StreamPolicy], cap: HorizonCap) -> dict:
    g = horizon_guarantee(policies, cap)
    rolling = horizon_guarantee(policies, cap, rolling=True)
    return {"horizon_ms": cap.horizon_ms, "epsilon": g.epsilon, "delta": g.delta,
            "basic_epsilon": g.basic_epsilon, "rolling_epsilon": rolling.epsilon,
            "cap": {"epsilon": cap.max_epsilon, "delta": cap.max_delta},
            "within_cap": g.epsilon <= cap.max_epsilon and g.delta <= cap.max_delta}

