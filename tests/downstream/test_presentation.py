"""Numbers as a statistician would show them (privmon subscribe): no digits below the
noise, and a mark where the noise is larger than the value."""

from __future__ import annotations

import pytest

from privmon.agents.cli.subscribe import NOISY, _fmt
from privmon.privacy.records import MetricValue


@pytest.mark.parametrize("name, value, half, shown", [
    ("latency.mean", 0.0, 174.55, f"0 ±175 {NOISY}"),   # all noise: said so
    ("latency.mean", 98.04, 487.54, f"98 ±488 {NOISY}"),
    ("events", 59437, 40, "59437 ±40"),
    ("errors.rate", 0.27035, 0.0200, "27.0% ±2.0%"),
    ("latency_hist.p95", 0.2113, 0.0042, "0.2113 ±0.0042"),
])
def test_precision_follows_the_noise(name, value, half, shown):
    assert _fmt(name, MetricValue.around(value, half / 1.96, half)) == shown
