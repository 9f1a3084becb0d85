"""Where fired alerts go besides the alerts topic: a webhook and Alertmanager.

Both are best-effort with retries: the alerts topic is the durable record.
A delivery that still fails after the retries is logged and counted
(``privmon_alert_deliveries_failed_total{sink}``), never silently dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from privmon.agents.alerts.records import Alert, Resolution

log = logging.getLogger("privmon.alerts")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def alertmanager_payload(alert: Alert, *, now_ms: int, hold_windows: float = 3.0,
                         resolved: bool = False,
                         generator_url: str | None = None) -> dict[str, Any]:
    """One alert in Alertmanager's v2 API shape (POST /api/v2/alerts takes a list).

    Labels identify the alert (rule, stream, cell): Alertmanager merges posts with the
    same labels into one alert, so repeats and a second alert agent (which computes the
    same labels from the same releases) make no second alert. While the rule holds,
    ``endsAt`` is ``hold_windows`` windows after the post (it is posted again every
    window it holds, and expires if the agent stops); when it stops holding, ``endsAt``
    is now, and Alertmanager resolves it at once."""
    v = alert.value
    labels = {"alertname": alert.rule, "severity": alert.severity, "stream": alert.stream,
              "source": "privmon", **{k: str(x) for k, x in alert.cell.items()}}
    ends_ms = now_ms if resolved else now_ms + int(hold_windows * alert.window_ms)
    body: dict[str, Any] = {
        "labels": labels,
        "annotations": {
            "summary": alert.summary,
            "description": alert.describe(),
            "value": f"{v.value:.6g}",
            "noise_std": f"{v.noise_std:.6g}",
            "ci95": f"[{v.ci95_low:.6g}, {v.ci95_high:.6g}]",
            "confidence": f"{alert.confidence:g}",
            "window_start": _iso(alert.window_start_ms),
        },
        "startsAt": _iso(min(alert.window_end_ms, now_ms)),
        "endsAt": _iso(ends_ms),
    }
    if generator_url:
        body["generatorURL"] = generator_url
    return body


def _now_ms() -> int:
    return int(time.time() * 1000)


class HttpSink:
    """POSTs JSON to a URL with retries; ``kind`` is 'webhook' or 'alertmanager'."""

    def __init__(self, kind: str, url: str, *, attempts: int = 3, timeout_s: float = 5.0,
                 backoff_s: float = 0.5, hold_windows: float = 3.0,
                 clock: Callable[[], int] = _now_ms) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--{kind} {url!r}: expected an http:// or https:// URL")
        self.kind = kind
        self.url = url.rstrip("/") + "/api/v2/alerts" if kind == "alertmanager" else url
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.hold_windows = hold_windows
        self.clock = clock
        self.delivered = 0
        self.failed = 0

    def body(self, alerts: Sequence[Alert], resolved: Sequence[Resolution] = ()) -> bytes:
        if self.kind == "alertmanager":
            now = self.clock()
            payload: Any = [
                *(alertmanager_payload(a, now_ms=now, hold_windows=self.hold_windows)
                  for a in alerts),
                *(alertmanager_payload(r.alert, now_ms=now, resolved=True) for r in resolved)]
        else:
            payload = {"alerts": [a.to_dict() for a in alerts],
                       "resolved": [r.to_dict() for r in resolved]}
        return json.dumps(payload).encode()

    def _post(self, data: bytes) -> None:
        req = urllib.request.Request(self.url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            if not 200 <= resp.status < 300:
                raise urllib.error.HTTPError(self.url, resp.status, resp.reason, resp.headers,
                                             None)

    async def send(self, alerts: Sequence[Alert], resolved: Sequence[Resolution] = ()) -> bool:
        """Deliver a batch; True if delivered, False after the last failed attempt."""
        if not alerts and not resolved:
            return True
        data = self.body(alerts, resolved)
        for attempt in range(1, self.attempts + 1):
            try:
                await asyncio.to_thread(self._post, data)
                self.delivered += len(alerts) + len(resolved)
                return True
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                log.warning("%s %s: attempt %d/%d failed: %s", self.kind, self.url, attempt,
                            self.attempts, exc)
                if attempt < self.attempts:
                    await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        self.failed += len(alerts) + len(resolved)
        log.error("%s %s: %d alert(s) and %d resolution(s) not delivered (they are on the "
                  "alerts topic)", self.kind, self.url, len(alerts), len(resolved))
        return False
