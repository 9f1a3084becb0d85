"""Realistic synthetic telemetry: accounts, servers, regions, versions, incidents.

Events look like what the VPN extension and its servers report (JSON):

    {"account_id": "acct-000123", "server": "fra-03", "region": "eu-central",
     "client_version": "5.2.1", "platform": "chrome", "latency_ms": 48.2,
     "bytes": 183322, "error": false, "session_s": 312.0, "event_time_ms": ...}

Load follows a diurnal curve; a few heavy accounts send far more events than
the rest (so contribution bounding matters); an incident raises the error rate
and latency of one server from a given time on.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

REGIONS = {
    "eu-central": ["fra-01", "fra-02", "fra-03", "ams-01"],
    "us-east": ["nyc-01", "nyc-02", "iad-01"],
    "us-west": ["sfo-01", "lax-01"],
    "ap-south": ["sin-01", "bom-01", "tyo-01"],
}
VERSIONS = ["5.0.3", "5.1.0", "5.2.1", "5.3.0-beta"]
VERSION_WEIGHTS = [0.1, 0.3, 0.55, 0.05]
PLATFORMS = ["chrome", "firefox", "edge", "safari"]
PLATFORM_WEIGHTS = [0.6, 0.2, 0.15, 0.05]


@dataclass(frozen=True, kw_only=True)
class Incident:
    """From ``start_ms`` on, ``server`` fails ``error_rate`` of requests and is slower."""

    server: str
    start_ms: int
    error_rate: float = 0.25
    latency_factor: float = 3.0


class TelemetryGenerator:
    """Draws events for ``accounts`` accounts; seeded for reproducible tests."""

    def __init__(
        self,
        *,
        accounts: int = 5000,
        heavy_fraction: float = 0.01,
        base_error_rate: float = 0.01,
        incident: Incident | None = None,
        seed: int | None = None,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.accounts = accounts
        self.incident = incident
        self.base_error_rate = base_error_rate
        self.servers = [(s, r) for r, servers in REGIONS.items() for s in servers]
        # Each account has a home server (its nearest) and a weight; heavy users ~50x.
        self.home = self.rng.integers(0, len(self.servers), accounts)
        weight = np.where(self.rng.random(accounts) < heavy_fraction, 50.0, 1.0)
        self.account_p = weight / weight.sum()
        self.version = self.rng.choice(VERSIONS, accounts, p=VERSION_WEIGHTS)
        self.platform = self.rng.choice(PLATFORMS, accounts, p=PLATFORM_WEIGHTS)

    @staticmethod
    def diurnal(event_time_ms: int) -> float:
        """Relative load at a time of day: 0.4 at 04:00 UTC up to 1.0 at 16:00 UTC."""
        hour = (event_time_ms / 3_600_000) % 24
        return 0.7 + 0.3 * math.sin((hour - 10) / 24 * 2 * math.pi)

    def events(self, n: int, *, start_ms: int, end_ms: int) -> list[dict]:
        """n events with event times uniform in [start_ms, end_ms)."""
        rng = self.rng
        acct = rng.choice(self.accounts, n, p=self.account_p)
        roam = rng.random(n) < 0.1  # 10% of events go to some other server
        server_idx = np.where(roam, rng.integers(0, len(self.servers), n), self.home[acct])
        times = np.sort(rng.integers(start_ms, max(end_ms, start_ms + 1), n))
        latency = rng.lognormal(math.log(40), 0.6, n)
        error = rng.random(n) < self.base_error_rate
        if self.incident is not None:
            hit = np.array([self.servers[i][0] == self.incident.server for i in server_idx])
            hit &= times >= self.incident.start_ms
            latency = np.where(hit, latency * self.incident.latency_factor, latency)
            error |= hit & (rng.random(n) < self.incident.error_rate)
        nbytes = rng.lognormal(11, 1.5, n).astype(np.int64)
        session = rng.exponential(600, n)
        out = []
        for i in range(n):
            server, region = self.servers[server_idx[i]]
            a = int(acct[i])
            out.append({
                "account_id": f"acct-{a:06d}",
                "server": server,
                "region": region,
                "client_version": str(self.version[a]),
                "platform": str(self.platform[a]),
                "latency_ms": round(float(latency[i]), 1),
                "bytes": int(nbytes[i]),
                "error": bool(error[i]),
                "session_s": round(float(session[i]), 1),
                "event_time_ms": int(times[i]),
            })
        return out

    def stream(
        self, *, rate_per_s: float, start_ms: int, tick_ms: int = 100
    ) -> Iterator[list[dict]]:
        """Endless batches, one per tick of event time, at ~rate_per_s x diurnal load."""
        now = start_ms
        while True:
            expected = rate_per_s * tick_ms / 1000 * self.diurnal(now)
            yield self.events(int(self.rng.poisson(expected)), start_ms=now, end_ms=now + tick_ms)
            now += tick_ms
