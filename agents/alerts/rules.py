"""Noise-aware alert rules on released aggregates (pure: no Kafka, no I/O).

A rule fires on a (window, cell) only when it holds *beyond the noise* with
the rule's confidence c: the one-sided test below rejects "the true value is
on the safe side of the threshold" at level alpha = 1 - c.

  above:  value - z * std > threshold
  below:  value + z * std < threshold
  drop:   (cur - ratio * base) + z * sqrt(std_cur^2 + ratio^2 * std_base^2) < 0,
          base = the same cell's release ``baseline_ms`` earlier

``std`` is the noise std in the release record; ``z`` is the critical value of
the stream's noise at level alpha: the normal quantile for GAUSSIAN streams,
and ln(1 / (2 alpha)) / sqrt(2) for GEOMETRIC ones (discrete Laplace noise has
Laplace tails, P(X >= z std) <= exp(-sqrt(2) z) / 2, heavier than normal).

False alarms caused by noise: when the true value sits exactly on the
threshold (the worst case), one evaluation fires with probability <= alpha;
the further on the safe side, the less. With ``for_windows = n`` the rule
must hold in n consecutive released windows of the cell (independent noise),
so the bound becomes alpha ** n. Across many cells and windows the expected
number of noise-caused alarms is at most alpha ** n times the number of
evaluations whose truth is at or beyond the threshold. The bound is exact in
distribution for counts and sums (one noise draw each); for rates and means
it relies on the delta-method std in the record, and for quantiles on the
bootstrap std. tests/downstream/test_alert_rules.py measures it.

Only released cells are evaluated: a cell held back by k or DP selection has
no record, so it can never fire. Group rules (``group_by``) sum additive
metrics (counts and sums) over the released cells of a window; drop rules
compare a group only over the cells released in both windows.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from statistics import NormalDist

from privmon.agents.alerts.records import Alert, Resolution
from privmon.privacy.params import Mechanism, StreamPolicy
from privmon.privacy.records import MetricValue, ReleaseRecord
from privmon.streams.config import CONFIG_DIR, PipelineConfig

DEFAULT_ALERTS = CONFIG_DIR / "alerts.toml"
ADDITIVE_SUFFIXES = (".sum", ".count")


class AlertConfigError(ValueError):
    """An alert rule file is invalid: the message names the field, value and fix."""


class Condition(StrEnum):
    ABOVE = "above"
    BELOW = "below"
    DROP = "drop"


def critical_z(mechanism: str, alpha: float) -> float:
    """One-sided critical value for noise of the given mechanism at level alpha."""
    if mechanism == Mechanism.GAUSSIAN.value:
        return NormalDist().inv_cdf(1 - alpha)
    if mechanism == Mechanism.GEOMETRIC.value:
        return math.log(1 / (2 * alpha)) / math.sqrt(2)
    raise ValueError(f"mechanism {mechanism!r}: expected 'geometric' or 'gaussian'")


def _fail(where: str, name: str, value: object, fix: str) -> AlertConfigError:
    return AlertConfigError(f"{where}.{name} = {value!r}: {fix}")


@dataclass(frozen=True, kw_only=True)
class AlertRule:
    """One rule. ``metric`` is a released metric name (``errors.rate``, ``events``...)."""

    name: str
    stream: str
    metric: str
    condition: Condition
    threshold: float | None = None   # above / below
    ratio: float | None = None       # drop: fire when cur < ratio * base
    baseline_ms: int | None = None   # drop: compare with the release this much earlier
    confidence: float = 0.99
    for_windows: int = 1
    group_by: tuple[str, ...] = ()
    where: Mapping[str, str] = field(default_factory=dict)
    severity: str = "warning"
    summary: str = ""

    def __post_init__(self) -> None:
        w = f"rules.{self.name}"
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise _fail("rules", "name", self.name, "expected an identifier like error_rate_high")
        try:
            object.__setattr__(self, "condition", Condition(self.condition))
        except ValueError:
            raise _fail(w, "condition", self.condition,
                        "expected 'above', 'below' or 'drop'") from None
        if not (isinstance(self.confidence, float) and 0.5 < self.confidence < 1):
            raise _fail(w, "confidence", self.confidence,
                        "expected a float in (0.5, 1), e.g. 0.99 (1 - false-alarm rate)")
        if not (isinstance(self.for_windows, int) and 1 <= self.for_windows <= 100):
            raise _fail(w, "for_windows", self.for_windows, "expected an integer in 1..100")
        if self.condition is Condition.DROP:
            if not (isinstance(self.ratio, int | float) and 0 < self.ratio < 1):
                raise _fail(w, "ratio", self.ratio,
                            "a drop rule needs ratio in (0, 1), e.g. 0.5 for 'halved'")
            if not (isinstance(self.baseline_ms, int) and self.baseline_ms > 0):
                raise _fail(w, "baseline_ms", self.baseline_ms,
                            "a drop rule needs baseline_ms > 0, e.g. 3_600_000 (an hour earlier)")
            if self.threshold is not None:
                raise _fail(w, "threshold", self.threshold, "drop rules take ratio, not threshold")
        else:
            if not isinstance(self.threshold, int | float) or not math.isfinite(self.threshold):
                raise _fail(w, "threshold", self.threshold,
                            f"an {self.condition} rule needs a finite threshold")
            if self.ratio is not None or self.baseline_ms is not None:
                raise _fail(w, "ratio", self.ratio,
                            "ratio/baseline_ms belong to drop rules only")
        if self.group_by and not (self.metric in ("events",)
                                  or self.metric.endswith(ADDITIVE_SUFFIXES)):
            raise _fail(w, "metric", self.metric,
                        "group_by sums cells, so it needs an additive metric: events, "
                        "<name>.sum or <name>.count")
        object.__setattr__(self, "group_by", tuple(self.group_by))
        object.__setattr__(self, "where", dict(self.where))

    @property
    def alpha(self) -> float:
        """Per-evaluation false-alarm bound from noise (worst case, truth on the threshold)."""
        return (1 - self.confidence) ** self.for_windows


@dataclass(frozen=True, kw_only=True)
class AlertConfig:
    topic: str  # the pipeline config's topics.alerts
    rules: tuple[AlertRule, ...]

    def with_prefix(self, prefix: str) -> AlertConfig:
        return AlertConfig(topic=prefix + self.topic, rules=self.rules)

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.stream for r in self.rules))


def released_metric_names(pipeline: PipelineConfig, stream: str) -> set[str]:
    """Names a stream's release records carry (see privacy/kinds/)."""
    names = {"accounts", "events"}
    for m in pipeline.policy(stream).metrics:
        names |= m.released_names()
    return names


RULE_KEYS = {"name", "stream", "metric", "condition", "threshold", "ratio", "baseline_ms",
             "confidence", "for_windows", "group_by", "where", "severity", "summary"}


def load_alert_config(path: Path | str, pipeline: PipelineConfig) -> AlertConfig:
    """Read and validate an alert rule file against the pipeline's streams and metrics."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AlertConfigError(f"{path}: {exc}") from None
    unknown = set(raw) - {"rules"}
    if unknown or not raw.get("rules"):
        raise AlertConfigError(f"{path}: expected [[rules]] tables (see configs/alerts.toml); "
                               f"unknown keys: {sorted(unknown)}")
    rules = []
    for i, r in enumerate(raw["rules"]):
        extra = set(r) - RULE_KEYS
        if extra:
            raise AlertConfigError(f"{path}: rules[{i}]: unknown key(s) {sorted(extra)}; "
                                   f"expected some of {sorted(RULE_KEYS)}")
        try:
            rule = AlertRule(**r)
        except TypeError as exc:
            raise AlertConfigError(f"{path}: rules[{i}]: {exc}") from None
        except AlertConfigError as exc:
            raise AlertConfigError(f"{path}: {exc}") from None
        streams = [p.name for p in pipeline.policies]
        if rule.stream not in streams:
            raise AlertConfigError(f"{path}: rules.{rule.name}.stream = {rule.stream!r}: "
                                   f"expected one of {streams} (from {pipeline.source})")
        names = released_metric_names(pipeline, rule.stream)
        if rule.metric not in names:
            raise AlertConfigError(f"{path}: rules.{rule.name}.metric = {rule.metric!r}: "
                                   f"stream {rule.stream} releases {sorted(names)}")
        dims = pipeline.policy(rule.stream).dimensions
        for d in (*rule.group_by, *rule.where):
            if d not in dims:
                raise AlertConfigError(f"{path}: rules.{rule.name}: dimension {d!r} is not "
                                       f"one of stream {rule.stream}'s {list(dims)}")
        rules.append(rule)
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise AlertConfigError(f"{path}: rule names must be unique, got {names}")
    return AlertConfig(topic=pipeline.topics.alerts, rules=tuple(rules))


def _sum(values: Sequence[MetricValue]) -> MetricValue:
    """Sum of independent noisy values: stds add in quadrature (95% normal interval)."""
    total = sum(v.value for v in values)
    sd = math.sqrt(sum(v.noise_std**2 for v in values))
    half = 1.959963984540054 * sd
    return MetricValue(value=total, noise_std=sd, ci95_low=total - half, ci95_high=total + half)


class _Labels(dict):
    """Cell labels for a rule's summary; an unknown {name} stays as written."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class Evaluator:
    """Evaluates rules window by window; keeps the history drop rules and streaks need.

    ``evaluate(stream, records)`` takes all released records of one window of one
    stream (the caller decides when a window is complete) and returns the alerts.
    """

    def __init__(self, config: AlertConfig, policies: Sequence[StreamPolicy]) -> None:
        self.config = config
        self.dims = {p.name: p.dimensions for p in policies}
        self.window_ms = {p.name: p.window_ms for p in policies}
        self.history: dict[str, dict[int, list[ReleaseRecord]]] = {}
        self.streaks: dict[tuple[str, tuple[str, ...]], tuple[int, int]] = {}
        keep = {s: self.window_ms[s] for s in config.streams}
        for r in config.rules:
            if r.baseline_ms:
                keep[r.stream] = max(keep[r.stream], r.baseline_ms + self.window_ms[r.stream])
        self.keep_ms = keep
        # (rule, unit) -> its last alert while it fires; what the last evaluate resolved
        self.firing: dict[tuple[str, tuple[str, ...]], Alert] = {}
        self.resolved: list[Resolution] = []

    def _values(self, rule: AlertRule, records: list[ReleaseRecord],
                only: set[tuple[str, ...]] | None = None) -> dict[tuple[str, ...], MetricValue]:
        dims = self.dims[rule.stream]
        per_cell: dict[tuple[str, ...], MetricValue] = {}
        for r in records:
            if (any(r.cell.get(k) != v for k, v in rule.where.items())
                    or rule.metric not in r.metrics):
                continue
            per_cell[tuple(r.cell[d] for d in dims)] = r.metrics[rule.metric]
        if only is not None:
            per_cell = {c: v for c, v in per_cell.items() if c in only}
        if not rule.group_by:
            return per_cell
        pos = [dims.index(d) for d in rule.group_by]
        groups: dict[tuple[str, ...], list[MetricValue]] = {}
        for cell, v in per_cell.items():
            groups.setdefault(tuple(cell[i] for i in pos), []).append(v)
        return {g: _sum(vs) for g, vs in groups.items()}

    def _cells(self, rule: AlertRule, records: list[ReleaseRecord]) -> set[tuple[str, ...]]:
        dims = self.dims[rule.stream]
        return {tuple(r.cell[d] for d in dims) for r in records if rule.metric in r.metrics}

    def remember(self, stream: str, window_start_ms: int, records: list[ReleaseRecord]) -> None:
        """Keep a window for later drop rules without evaluating it (history warm-up)."""
        if stream not in self.keep_ms:
            return
        hist = self.history.setdefault(stream, {})
        hist[window_start_ms] = list(records)
        for old in [w for w in hist if w < window_start_ms - self.keep_ms[stream]]:
            del hist[old]

    def evaluate(self, stream: str, window_start_ms: int,
                 records: list[ReleaseRecord]) -> list[Alert]:
        """The alerts of one whole window; what stopped holding is in ``self.resolved``."""
        alerts: list[Alert] = []
        self.resolved = []
        if not records:
            return alerts
        mechanism = records[0].privacy.mechanism
        for rule in self.config.rules:
            if rule.stream != stream:
                continue
            z = critical_z(mechanism, 1 - rule.confidence)
            base_start = None
            baseline: dict[tuple[str, ...], MetricValue] = {}
            if rule.condition is Condition.DROP:
                assert rule.baseline_ms is not None
                base_start = window_start_ms - rule.baseline_ms
                base_records = self.history.get(stream, {}).get(base_start, [])
                both = self._cells(rule, records) & self._cells(rule, base_records)
                current = self._values(rule, records, both)
                baseline = self._values(rule, base_records, both)
            else:
                current = self._values(rule, records)
            for unit, v in sorted(current.items()):
                holds = self._holds(rule, z, v, baseline.get(unit))
                key = (rule.name, unit)
                last_start, streak = self.streaks.get(key, (None, 0))
                prev = window_start_ms - self.window_ms[stream]
                streak = (streak + 1 if last_start == prev else 1) if holds else 0
                self.streaks[key] = (window_start_ms, streak)
                if not holds and key in self.firing:
                    self.resolved.append(Resolution(
                        alert=self.firing.pop(key), window_start_ms=window_start_ms,
                        window_end_ms=window_start_ms + self.window_ms[stream]))
                if holds and streak >= rule.for_windows:
                    names = rule.group_by or self.dims[stream]
                    cell = dict(zip(names, unit, strict=True))
                    alerts.append(Alert(
                        rule=rule.name, severity=rule.severity, stream=stream,
                        window_start_ms=window_start_ms,
                        window_end_ms=window_start_ms + self.window_ms[stream], cell=cell,
                        metric=rule.metric, condition=rule.condition.value,
                        threshold=rule.threshold, value=v, baseline=baseline.get(unit),
                        baseline_window_start_ms=base_start, ratio=rule.ratio,
                        confidence=rule.confidence, for_windows=rule.for_windows,
                        false_alarm_bound=rule.alpha, z=z,
                        summary=(rule.summary or rule.name).format_map(_Labels(cell))))
                    self.firing[key] = alerts[-1]
        self.remember(stream, window_start_ms, records)
        return alerts

    @staticmethod
    def _holds(rule: AlertRule, z: float, v: MetricValue, base: MetricValue | None) -> bool:
        if rule.condition is Condition.ABOVE:
            return v.value - z * v.noise_std > rule.threshold
        if rule.condition is Condition.BELOW:
            return v.value + z * v.noise_std < rule.threshold
        if base is None:
            return False
        assert rule.ratio is not None
        diff = v.value - rule.ratio * base.value
        sd = math.sqrt(v.noise_std**2 + rule.ratio**2 * base.noise_std**2)
        return diff + z * sd < 0
