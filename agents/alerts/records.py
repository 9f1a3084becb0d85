"""What the alert agent publishes: a fired rule (``Alert``) and, once it stops holding,
its ``Resolution``. Both go to the alerts topic (key: rule|window|cell) and to the
sinks (agents/alerts/sinks.py), where Alertmanager resolves the alert at once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from privmon.privacy.records import MetricValue

ALERT_SCHEMA = "privmon.alert/1"
RESOLVED_SCHEMA = "privmon.alert-resolved/1"


@dataclass(frozen=True, kw_only=True)
class Alert:
    """A fired rule: which window and cell, the value with its interval, the test."""

    rule: str
    severity: str
    stream: str
    window_start_ms: int
    window_end_ms: int
    cell: Mapping[str, str]
    metric: str
    condition: str
    threshold: float | None
    value: MetricValue
    baseline: MetricValue | None
    baseline_window_start_ms: int | None
    ratio: float | None
    confidence: float
    for_windows: int
    false_alarm_bound: float
    z: float
    summary: str

    @property
    def key(self) -> str:
        return "|".join([self.rule, str(self.window_start_ms), *self.cell.values()])

    def describe(self) -> str:
        v = self.value
        where = ", ".join(f"{k}={x}" for k, x in self.cell.items()) or "all cells"
        if self.condition == "drop":
            b = self.baseline
            assert b is not None
            ago_s = (self.window_start_ms - (self.baseline_window_start_ms or 0)) / 1000
            test = (f"{v.value:.4g} [{v.ci95_low:.4g}, {v.ci95_high:.4g}] < {self.ratio:g} x "
                    f"{b.value:.4g} (its release {ago_s:g} s earlier)")
        else:
            op = ">" if self.condition == "above" else "<"
            test = (f"{v.value:.4g} [95% CI {v.ci95_low:.4g}, {v.ci95_high:.4g}] {op} "
                    f"{self.threshold:g}")
        return (f"{self.rule}: {self.metric} of {where} {test} with confidence "
                f"{self.confidence:g}" + (f" in {self.for_windows} consecutive windows"
                                          if self.for_windows > 1 else "")
                + f" (noise-only false-alarm rate <= {self.false_alarm_bound:.2g})")

    def to_dict(self) -> dict[str, Any]:
        def mv(x: MetricValue | None) -> dict[str, float] | None:
            return None if x is None else {"value": x.value, "noise_std": x.noise_std,
                                           "ci95_low": x.ci95_low, "ci95_high": x.ci95_high}

        return {"schema": ALERT_SCHEMA, "rule": self.rule, "severity": self.severity,
                "stream": self.stream, "window_start_ms": self.window_start_ms,
                "window_end_ms": self.window_end_ms, "cell": dict(self.cell),
                "metric": self.metric, "condition": self.condition,
                "threshold": self.threshold, "ratio": self.ratio,
                "value": mv(self.value), "baseline": mv(self.baseline),
                "baseline_window_start_ms": self.baseline_window_start_ms,
                "confidence": self.confidence, "for_windows": self.for_windows,
                "false_alarm_bound": self.false_alarm_bound, "z": self.z,
                "summary": self.summary, "description": self.describe()}

    @property
    def window_ms(self) -> int:
        return self.window_end_ms - self.window_start_ms


@dataclass(frozen=True, kw_only=True)
class Resolution:
    """A rule that had fired on a cell and no longer holds there: ``alert`` is its last
    firing, ``window_start_ms`` the first window in which it was tested and held no
    more. A cell that is not released is not tested, so it resolves only once it is
    (until then Alertmanager's ``endsAt`` ends the alert, agents/alerts/sinks.py)."""

    alert: Alert
    window_start_ms: int
    window_end_ms: int

    @property
    def key(self) -> str:
        a = self.alert
        return "|".join([a.rule, str(self.window_start_ms), *a.cell.values(), "resolved"])

    def to_dict(self) -> dict[str, Any]:
        a = self.alert
        return {"schema": RESOLVED_SCHEMA, "rule": a.rule, "severity": a.severity,
                "stream": a.stream, "cell": dict(a.cell), "metric": a.metric,
                "window_start_ms": self.window_start_ms, "window_end_ms": self.window_end_ms,
                "fired_window_start_ms": a.window_start_ms, "summary": a.summary}
