"""The privacy accountant: per-window costs, composition over horizons, a ledger.

Per window a stream costs its RDP parts (privacy/window_parts.py: what one
account can change in each noisy quantity) plus the δ of partition selection.
One account contributes to at most ``max_windows`` windows per aligned
participation period, so over an aligned horizon H (a whole number of periods)
it is in at most ``min(ceil(H / window), max_windows * H / period)`` windows of a
stream; over an unaligned interval of length H, in at most
``windows_per_rolling_horizon`` (up to max_windows more). The caps bound the
aligned figure; both are stated (``privmon budget``, README, SECURITY.md).

Composition (per account, over all streams given) is tight: the RDP curves of
every window's parts add up, the selection δ's add up, and the sum converts
once to (ε, δ) at the cap's δ (privacy/rdp.py). Basic composition (ε = Σ n·ε_i,
zCDP converted by Bun & Steinke) is kept beside it as ``basic_epsilon``, a
cross-check: the tight figure is never above it.
The accountant refuses a configuration whose composed guarantee exceeds any
cap, and refuses to record a (stream, window) twice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace

from privmon.privacy.params import HorizonCap, Mechanism, StreamPolicy
from privmon.privacy.rdp import Part, curve_of, epsilon_for_delta
from privmon.privacy.window_parts import window_parts


class BudgetExceeded(ValueError):
    """The composed guarantee over a horizon exceeds the policy's cap."""


class DuplicateRelease(ValueError):
    """A (stream, window) was already released: releasing it again is refused."""


@dataclass(frozen=True, kw_only=True)
class WindowCost:
    """One window: its basic (ε, δ, ρ) as configured, and its RDP parts.

    ``parts`` empty (a ledger entry written before parts were recorded): the
    window counts as an ``epsilon``-DP part plus a ``rho``-zCDP part, an upper bound."""

    epsilon: float
    delta: float
    rho: float = 0.0
    parts: tuple[Part, ...] = ()

    def rdp_parts(self) -> tuple[Part, ...]:
        if self.parts:
            return self.parts
        out = [Part(kind="pure", epsilon=self.epsilon)] if self.epsilon > 0 else []
        if self.rho > 0:
            out.append(Part(kind="zcdp", rho=self.rho))
        return tuple(out)


@dataclass(frozen=True, kw_only=True)
class Guarantee:
    epsilon: float  # tight: RDP composition, or basic where that is lower; at ``delta``
    delta: float
    rho: float  # zCDP part of the basic figure (0 if none)
    basic_epsilon: float = math.inf  # the same releases under basic composition


def window_cost(policy: StreamPolicy) -> WindowCost:
    b = policy.budget
    wp = window_parts(policy)
    if b.mechanism is Mechanism.GEOMETRIC:
        return WindowCost(epsilon=b.epsilon, delta=wp.delta, parts=wp.parts)
    assert b.rho is not None
    return WindowCost(epsilon=b.epsilon, delta=wp.delta, rho=b.rho, parts=wp.parts)


def windows_per_horizon(policy: StreamPolicy, horizon_ms: int) -> int:
    """Most windows of this stream one account can be in over an aligned horizon."""
    p = policy.participation
    return min(
        math.ceil(horizon_ms / policy.window_ms),
        p.max_windows * math.ceil(horizon_ms / p.period_ms),
    )


def windows_per_rolling_horizon(policy: StreamPolicy, horizon_ms: int) -> int:
    """Most windows of this stream one account can be in over ANY interval of
    ``horizon_ms`` (not aligned to periods; windows counted by their start).

    The cap is per aligned period, so an unaligned interval of n whole periods
    covers n - 1 of them whole and two in part; those two parts together span
    one period, so they hold at most min(2·max_windows, period/window + 1)
    windows (an account active 23:00-01:00 can be in max_windows windows on
    each side of midnight). Exact: tests/privacy/test_rolling.py reaches it."""
    p = policy.participation
    periods = horizon_ms // p.period_ms  # a whole number (validated in StreamPolicy)
    edge = min(2 * p.max_windows, p.period_ms // policy.window_ms + 1)
    return min(math.ceil(horizon_ms / policy.window_ms),
               max(periods - 1, 0) * p.max_windows + edge)


def compose(parts: Iterable[tuple[WindowCost, int]], *, target_delta: float) -> Guarantee:
    """Compose (cost, number of windows) pairs into one (ε, δ) guarantee at
    ``target_delta``: tight (RDP) and, as a cross-check, basic."""
    parts = [(cost, n) for cost, n in parts if n > 0]
    delta = math.fsum(n * cost.delta for cost, n in parts)
    curve = curve_of((part, n) for cost, n in parts for part in cost.rdp_parts())
    rest = target_delta - delta
    if not parts:
        return Guarantee(epsilon=0.0, delta=0.0, rho=0.0, basic_epsilon=0.0)
    tight = epsilon_for_delta(curve, rest) if rest > 0 else math.inf
    basic = compose_basic(parts, target_delta=target_delta)
    # Both are valid bounds; RDP's conversion loses to basic over very few windows.
    return Guarantee(epsilon=min(tight, basic), delta=target_delta if rest > 0 else delta,
                     rho=math.fsum(n * cost.rho for cost, n in parts), basic_epsilon=basic)


def compose_basic(parts: Iterable[tuple[WindowCost, int]], *, target_delta: float) -> float:
    """ε under basic composition (ε = Σ n·ε_i; ρ summed, converted by Bun & Steinke
    2016 with what is left of ``target_delta``): the cross-check of ``compose``."""
    eps = delta = rho = 0.0
    for cost, n in parts:
        eps += n * cost.epsilon
        delta += n * cost.delta
        rho += n * cost.rho
    if rho > 0:
        delta_g = target_delta - delta
        if delta_g <= 0:
            return math.inf
        eps += rho + 2 * math.sqrt(rho * math.log(1 / delta_g))
    return eps


def horizon_guarantee(policies: Sequence[StreamPolicy], cap: HorizonCap, *,
                      rolling: bool = False) -> Guarantee:
    """Worst-case per-account guarantee of all ``policies`` together over ``cap``'s
    aligned horizon (e.g. a UTC day): what the caps bound. ``rolling``: over any
    interval of that length, aligned or not (up to twice the aligned figure for a
    stream whose cap binds within a period)."""
    windows_of = windows_per_rolling_horizon if rolling else windows_per_horizon
    return compose(((window_cost(p), windows_of(p, cap.horizon_ms)) for p in policies),
                   target_delta=cap.max_delta)


def check_policies(
    policies: Sequence[StreamPolicy], *, global_caps: Sequence[HorizonCap] = ()
) -> None:
    """Refuse (BudgetExceeded) any stream, or the set of streams, over a cap."""
    for policy in policies:
        for cap in policy.horizon_caps:
            _check(policy.name, [policy], cap)
    for cap in global_caps:
        _check("all streams", policies, cap)


def within_caps(policies: Sequence[StreamPolicy], global_caps: Sequence[HorizonCap] = ()
                ) -> bool:
    try:
        check_policies(policies, global_caps=global_caps)
    except BudgetExceeded:
        return False
    return True


def scaled(policy: StreamPolicy, factor: float) -> StreamPolicy:
    """The policy with every per-window budget ×factor (ε ×f, ρ ×f²: noise std ÷f);
    selection δ and everything else unchanged."""
    b = policy.budget
    budget = replace(b, epsilon=b.epsilon * factor,
                     rho=None if b.rho is None else b.rho * factor * factor)
    return replace(policy, budget=budget)


def headroom(policies: Sequence[StreamPolicy], global_caps: Sequence[HorizonCap] = (), *,
             precision: float = 1e-3) -> float:
    """The largest f (to ``precision``, rounded down) with every budget ×f within every
    cap: > 1 if the caps allow less noise, < 1 if the config is over them."""
    def ok(f: float) -> bool:
        return within_caps([scaled(p, f) for p in policies], global_caps)

    lo, hi = 0.0, 1.0
    while ok(hi):
        lo, hi = hi, hi * 2
        if hi > 1e6:
            return math.inf
    while hi - lo > precision * max(lo, precision):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def _check(label: str, policies: Sequence[StreamPolicy], cap: HorizonCap) -> None:
    g = horizon_guarantee(policies, cap)
    if g.epsilon > cap.max_epsilon + 1e-12 or g.delta > cap.max_delta + 1e-15:
        windows = {p.name: windows_per_horizon(p, cap.horizon_ms) for p in policies}
        raise BudgetExceeded(
            f"{label}: over a {cap.horizon_ms} ms horizon an account can be in {windows} "
            f"windows, composing to epsilon={g.epsilon:.4g}, delta={g.delta:.3g}; the cap is "
            f"epsilon<={cap.max_epsilon:g}, delta<={cap.max_delta:g}. Lower the per-window "
            "epsilon/rho, or participation.max_windows, or raise the cap (a policy decision)."
        )


@dataclass(frozen=True, kw_only=True)
class LedgerEntry:
    """One released (stream, window): immutable, appended once.

    The worker writes one entry per (stream, window, partials partition) to the
    ledger topic, for every window whether the partition had cells in it or not
    (each partition releases a disjoint set of cells, all with the window's full
    per-window cost); ``merge_partitions`` folds them per window. It holds what
    was spent and how many cells were published, nothing the data held.
    """

    stream: str
    window_start_ms: int
    window_end_ms: int
    epsilon: float
    delta: float
    rho: float
    policy_version: str
    cells_released: int
    partials_partition: int = 0
    failed: str = ""  # the exception's type if the release raised (nothing published)
    # What was spent, exactly: the window's RDP parts (privacy/rdp.py Part.to_json), so
    # the ledger composes tightly even after the policy changed. Empty in entries
    # written before: those compose as epsilon-DP plus rho-zCDP (an upper bound).
    mechanisms: tuple = ()

    @property
    def key(self) -> tuple[str, int]:
        return (self.stream, self.window_start_ms)

    @classmethod
    def for_release(cls, policy: StreamPolicy, *, window_start_ms: int, cells_released: int,
                    partials_partition: int = 0, failed: str = "") -> LedgerEntry:
        cost = window_cost(policy)
        return cls(stream=policy.name, window_start_ms=window_start_ms,
                   window_end_ms=window_start_ms + policy.window_ms, epsilon=cost.epsilon,
                   delta=cost.delta, rho=cost.rho, policy_version=policy.policy_version,
                   cells_released=cells_released, partials_partition=partials_partition,
                   failed=failed, mechanisms=tuple(tuple(p.to_json()) for p in cost.parts))

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> LedgerEntry:
        raw = json.loads(data)
        known = {f for f in cls.__dataclass_fields__}
        fields = {k: v for k, v in raw.items() if k in known}
        fields["mechanisms"] = tuple(tuple(m) for m in fields.get("mechanisms", ()))
        return cls(**fields)

    def cost(self) -> WindowCost:
        return WindowCost(epsilon=self.epsilon, delta=self.delta, rho=self.rho,
                          parts=tuple(Part.from_json(list(m)) for m in self.mechanisms))


def merge_partitions(entries: Iterable[LedgerEntry]) -> list[LedgerEntry]:
    """One entry per (stream, window): counts summed over partials partitions."""
    out: dict[tuple[str, int], LedgerEntry] = {}
    for e in entries:
        old = out.get(e.key)
        if old is None:
            out[e.key] = replace(e, partials_partition=0)
            continue
        out[e.key] = replace(
            old, cells_released=old.cells_released + e.cells_released,
            failed=old.failed or e.failed)
    return sorted(out.values(), key=lambda e: (e.stream, e.window_start_ms))


class Accountant:
    """Append-only ledger of releases; composes what was actually spent.

    In memory: the durable ledger is the worker's ledger topic, read back with
    ``from_entries``.
    """

    def __init__(self, policies: Sequence[StreamPolicy]) -> None:
        self.policies = {p.name: p for p in policies}
        self._entries: list[LedgerEntry] = []
        self._keys: set[tuple[str, int]] = set()

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        return tuple(self._entries)

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self._keys

    def _append(self, entry: LedgerEntry) -> None:
        if entry.key in self._keys:
            raise DuplicateRelease(
                f"stream {entry.stream!r} window starting {entry.window_start_ms} was already "
                "released; a second release would let its noise be averaged away"
            )
        self._entries.append(entry)
        self._keys.add(entry.key)

    @classmethod
    def from_entries(cls, policies: Sequence[StreamPolicy],
                     entries: Iterable[LedgerEntry]) -> Accountant:
        """An in-memory accountant over ledger entries (e.g. read from the ledger
        topic), one per (stream, window) after ``merge_partitions``."""
        acc = cls(policies)
        for e in merge_partitions(entries):
            acc._append(e)
        return acc

    def record(
        self, policy: StreamPolicy, *, window_start_ms: int, cells_released: int
    ) -> LedgerEntry:
        entry = LedgerEntry.for_release(policy, window_start_ms=window_start_ms,
                                        cells_released=cells_released)
        self._append(entry)
        return entry

    def spent(self, cap: HorizonCap, *, now_ms: int, stream: str | None = None,
              rolling: bool = False) -> Guarantee:
        """Per-account guarantee of the releases recorded in the aligned horizon
        containing ``now_ms`` (per stream: min(windows released, the cap's bound));
        ``rolling``: in the last ``horizon_ms`` before ``now_ms`` instead."""
        start = now_ms - cap.horizon_ms if rolling else (now_ms // cap.horizon_ms) * cap.horizon_ms
        bound_of = windows_per_rolling_horizon if rolling else windows_per_horizon
        counts: dict[str, int] = {}
        costs: dict[str, WindowCost] = {}
        for e in self._entries:
            if (stream is None or e.stream == stream) and start <= e.window_start_ms < now_ms:
                counts[e.stream] = counts.get(e.stream, 0) + 1
                costs[e.stream] = e.cost()
        parts = []
        for name, n in counts.items():
            bound = n
            if name in self.policies:
                bound = min(n, bound_of(self.policies[name], cap.horizon_ms))
            parts.append((costs[name], bound))
        return compose(parts, target_delta=cap.max_delta)
