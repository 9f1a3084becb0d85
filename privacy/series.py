"""How each released value is named for Prometheus (agents/alerts/exporter.py): one
name per quantity, the unit last and in base units, as the Prometheus naming
conventions ask (``promtool check metrics`` checks them).

A released value ``latency.mean`` of a field ``latency_ms`` becomes
``latency_mean_seconds`` (scaled by 1e-3); its noise std, 95% interval ends are
the names with ``noise_std``, ``ci95_low``, ``ci95_high`` before the unit.
"""

from __future__ import annotations

from dataclasses import dataclass

STATS = ("value", "noise_std", "ci95_low", "ci95_high")  # the fields of a MetricValue


@dataclass(frozen=True)
class Series:
    """One released value as a series: ``base`` and ``unit`` make the name, ``labels``
    tell apart the values of one quantity (a quantile, a bucket), ``scale`` turns the
    released value into the base unit."""

    base: str
    unit: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    scale: float = 1.0

    def name(self, stat: str = "value") -> str:
        """e.g. ``latency_mean_seconds``, ``latency_mean_noise_std_seconds``."""
        return "_".join(p for p in (self.base, "" if stat == "value" else stat, self.unit) if p)


def field_unit(field: str) -> tuple[str, float]:
    """The base unit of a telemetry field from its name (``latency_ms``: seconds, 1e-3)."""
    if field.endswith("_ms"):
        return "seconds", 1e-3
    if field.endswith("_s"):
        return "seconds", 1.0
    if field == "bytes" or field.endswith("_bytes"):
        return "bytes", 1.0
    return "", 1.0


def cell_series(name: str) -> Series | None:
    """The cell-level values every release has: noisy event and account counts."""
    return Series(name) if name in ("events", "accounts") else None
