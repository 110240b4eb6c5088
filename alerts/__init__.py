"""Alert sinks (Alertmanager, webhook, e-mail) for findings and policy violations.

Reads the ``findings`` and ``violations`` tables by SQL (never the detectors' code), routes
alerts by severity, source and labels, and delivers them with state kept in the store.
"""

from alerts.model import Alert
from alerts.service import Notifier, RunReport
from alerts.sinks import SINKS, SinkError, make_sink

__all__ = ["SINKS", "Alert", "Notifier", "RunReport", "SinkError", "make_sink"]
