"""Alertmanager sink: ``POST /api/v2/alerts`` with labels, annotations, startsAt, endsAt, generatorURL.

A firing alert is sent without endsAt, so Alertmanager keeps it for its ``resolve_timeout``; the
routes to this sink repeat more often than that (the config checks it). A resolved alert carries
its endsAt and Alertmanager resolves it at once. Basic auth or a bearer token, TLS options.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime

from alerts.config import AlertmanagerSinkConfig
from alerts.model import Alert, iso
from alerts.sinks._http import post


def payload(alerts: Sequence[Alert]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for a in alerts:
        item: dict[str, object] = {
            "labels": dict(a.labels),
            "annotations": dict(a.annotations),
            "startsAt": iso(a.starts_at),
        }
        if a.ends_at is not None:
            item["endsAt"] = iso(a.ends_at)
        if a.generator_url:
            item["generatorURL"] = a.generator_url
        out.append(item)
    return out


class AlertmanagerSink:
    def __init__(self, config: AlertmanagerSinkConfig):
        self.config = config
        self.url = config.url.rstrip("/") + "/api/v2/alerts"

    def _headers(self) -> dict[str, str]:
        c = self.config
        headers = {"Content-Type": "application/json"}
        if c.bearer_token is not None:
            headers["Authorization"] = f"Bearer {c.bearer_token.get_secret_value()}"
        elif c.username is not None and c.password is not None:
            raw = f"{c.username}:{c.password.get_secret_value()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        return headers

    def send(self, alerts: Sequence[Alert], route: str, now: datetime) -> None:
        c = self.config
        body = json.dumps(payload(alerts)).encode()
        post(
            self.url,
            body,
            self._headers(),
            timeout_s=c.timeout_s,
            retries=c.retries,
            backoff_s=c.backoff_s,
            tls=c.tls,
        )
