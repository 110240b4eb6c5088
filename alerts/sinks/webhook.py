"""Webhook sink: JSON batches POSTed to a URL, signed with HMAC-SHA256 over timestamp and body.

Signed by default (``secret`` is required unless ``unsigned: true``). The timestamp header
(``X-Netobs-Timestamp``, Unix seconds) is covered by the signature: the receiver recomputes
``hmac_sha256(secret, f"{timestamp}.".encode() + body)``, compares it with the signature header
(``sha256=<hex>``) in constant time and refuses a timestamp outside its replay window
(:func:`verify` does all three). Each alert carries its fingerprint and state, so a receiver
can drop the rare duplicate (a crash between delivery and recording it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from datetime import datetime

from alerts.config import WebhookSinkConfig
from alerts.model import Alert, iso
from alerts.sinks._http import post

TIMESTAMP_HEADER = "X-Netobs-Timestamp"


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    return "sha256=" + hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(
    secret: bytes, body: bytes, signature: str, timestamp: str, now: float, window_s: float = 300
) -> bool:
    """What a receiver checks: the signature over timestamp and body, and the timestamp's age."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > window_s:
        return False  # a replay of an old (or a far-future) request
    return hmac.compare_digest(sign(secret, body, ts), signature)


def body(alerts: Sequence[Alert], route: str, now: datetime) -> bytes:
    doc = {
        "version": 1,
        "sender": "netobs",
        "route": route,
        "sent_at": iso(now),
        "alerts": [{**a.to_json(), "state": a.state} for a in alerts],
    }
    return json.dumps(doc, sort_keys=True).encode()


class WebhookSink:
    def __init__(self, config: WebhookSinkConfig):
        self.config = config

    def send(self, alerts: Sequence[Alert], route: str, now: datetime) -> None:
        c = self.config
        for i in range(0, len(alerts), c.max_batch):
            data = body(alerts[i : i + c.max_batch], route, now)
            headers = {"Content-Type": "application/json", "User-Agent": "netobs-alerts"}
            if c.secret is not None:
                ts = int(time.time())
                headers[TIMESTAMP_HEADER] = str(ts)
                headers[c.signature_header] = sign(c.secret.get_secret_value().encode(), data, ts)
            if c.bearer_token is not None:
                headers["Authorization"] = f"Bearer {c.bearer_token.get_secret_value()}"
            post(
                c.url,
                data,
                headers,
                timeout_s=c.timeout_s,
                retries=c.retries,
                backoff_s=c.backoff_s,
                tls=c.tls,
            )
