"""Alert sinks, chosen by the ``type`` field of each ``alerts.sinks`` entry.

A sink has ``send(alerts, route, now)``; it raises :class:`SinkError` when the delivery failed
(after its own retries), and the notifier keeps the alerts due for the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from alerts.model import Alert
from alerts.sinks._http import SinkError
from alerts.sinks.alertmanager import AlertmanagerSink
from alerts.sinks.email import EmailSink
from alerts.sinks.webhook import WebhookSink


class Sink(Protocol):
    def send(self, alerts: Sequence[Alert], route: str, now: datetime) -> None: ...


#: The sink plug-ins, by the ``type`` of a sink's config.
SINKS: dict[str, Callable[[Any], Sink]] = {
    "alertmanager": AlertmanagerSink,
    "webhook": WebhookSink,
    "email": EmailSink,
}


def make_sink(config: Any) -> Sink:
    return SINKS[config.type](config)


__all__ = ["SINKS", "AlertmanagerSink", "EmailSink", "Sink", "SinkError", "WebhookSink", "make_sink"]
