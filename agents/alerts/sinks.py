"""Where fired alerts go besides the alerts topic: a webhook and Alertmanager.

Both are best-effort with retries: the alerts topic is the durable record.
A delivery that still fails after the retries is logged and counted
(``privmon_alert_deliveries_failed_total{sink}``), never silently dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from privmon.agents.alerts.rules import Alert

log = logging.getLogger("privmon.alerts")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def alertmanager_payload(alert: Alert, *, resolve_after_ms: int,
                         generator_url: str | None = None) -> dict[str, Any]:
    """One alert in Alertmanager's v2 API shape (POST /api/v2/alerts takes a list).

    Labels identify the alert (rule, stream, cell), so Alertmanager groups and
    de-duplicates repeats; ``endsAt`` lets it resolve on its own when the rule
    stops firing (we re-post while it holds)."""
    v = alert.value
    labels = {"alertname": alert.rule, "severity": alert.severity, "stream": alert.stream,
              "source": "privmon", **{k: str(x) for k, x in alert.cell.items()}}
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
        "startsAt": _iso(alert.window_end_ms),
        "endsAt": _iso(alert.window_end_ms + resolve_after_ms),
    }
    if generator_url:
        body["generatorURL"] = generator_url
    return body


class HttpSink:
    """POSTs JSON to a URL with retries; ``kind`` is 'webhook' or 'alertmanager'."""

    def __init__(self, kind: str, url: str, *, attempts: int = 3, timeout_s: float = 5.0,
                 backoff_s: float = 0.5, resolve_after_ms: int = 300_000) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--{kind} {url!r}: expected an http:// or https:// URL")
        self.kind = kind
        self.url = url.rstrip("/") + "/api/v2/alerts" if kind == "alertmanager" else url
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.resolve_after_ms = resolve_after_ms
        self.delivered = 0
        self.failed = 0

    def body(self, alerts: list[Alert]) -> bytes:
        if self.kind == "alertmanager":
            payload: Any = [alertmanager_payload(a, resolve_after_ms=self.resolve_after_ms)
                            for a in alerts]
        else:
            payload = {"alerts": [a.to_dict() for a in alerts]}
        return json.dumps(payload).encode()

    def _post(self, data: bytes) -> None:
        req = urllib.request.Request(self.url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            if not 200 <= resp.status < 300:
                raise urllib.error.HTTPError(self.url, resp.status, resp.reason, resp.headers,
                                             None)

    async def send(self, alerts: list[Alert]) -> bool:
        """Deliver a batch; True if delivered, False after the last failed attempt."""
        if not alerts:
            return True
        data = self.body(alerts)
        for attempt in range(1, self.attempts + 1):
            try:
                await asyncio.to_thread(self._post, data)
                self.delivered += len(alerts)
                return True
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                log.warning("%s %s: attempt %d/%d failed: %s", self.kind, self.url, attempt,
                            self.attempts, exc)
                if attempt < self.attempts:
                    await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        self.failed += len(alerts)
        log.error("%s %s: %d alert(s) not delivered (they are on the alerts topic)",
                  self.kind, self.url, len(alerts))
        return False
