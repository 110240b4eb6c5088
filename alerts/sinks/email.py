"""E-mail sink: one digest per run and route (plain text + HTML), over SMTP with STARTTLS or TLS.

The subject counts the alerts by severity, firing and resolved apart, so a mailbox rule or a
glance at the inbox tells a critical digest from a routine one.
"""

from __future__ import annotations

import html
import smtplib
import ssl
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from alerts.config import SEVERITY_RANK, EmailSinkConfig
from alerts.model import Alert, iso
from alerts.sinks._http import SinkError, ssl_context


def subject(prefix: str, route: str, alerts: Sequence[Alert]) -> str:
    firing = Counter(a.severity for a in alerts if a.firing)
    parts = [f"{n} {s}" for s, n in sorted(firing.items(), key=lambda x: -SEVERITY_RANK.get(x[0], 0))]
    resolved = sum(1 for a in alerts if not a.firing)
    text = ", ".join(parts) + " firing" if parts else ""
    if resolved:
        text += ("; " if text else "") + f"{resolved} resolved"
    return f"{prefix} {route}: {text}".strip()


def _line(a: Alert) -> str:
    when = f"since {iso(a.starts_at)}" if a.firing else f"resolved {iso(a.ends_at or a.last_seen)}"
    return (
        f"[{a.severity.upper()}] {a.state} {a.source}/{a.name}: {a.annotations.get('summary', '')} ({when})"
    )


def message(config: EmailSinkConfig, route: str, alerts: Sequence[Alert], now: datetime) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject(config.subject_prefix, route, alerts)
    msg["From"] = config.sender
    msg["To"] = ", ".join(config.to)
    msg["Date"] = formatdate(now.timestamp(), usegmt=True)
    msg["Message-ID"] = make_msgid("netobs-alerts")
    lines = [f"netobs alerts, route {route}, {iso(now)}", ""]
    for a in alerts:
        lines.append(_line(a))
        for key in ("description", "runbook_url", "report_url"):
            if a.annotations.get(key):
                lines.append(f"    {key}: {a.annotations[key]}")
    msg.set_content("\n".join(lines) + "\n")
    rows = "".join(
        f"<tr><td>{html.escape(a.severity)}</td><td>{a.state}</td><td>{html.escape(a.source)}</td>"
        f"<td>{html.escape(a.name)}</td><td>{html.escape(a.annotations.get('summary', ''))}</td>"
        f"<td>{iso(a.starts_at)}</td></tr>"
        for a in alerts
    )
    msg.add_alternative(
        f"<html><body><h3>netobs alerts, route {html.escape(route)}</h3><table border='1'>"
        "<tr><th>severity</th><th>state</th><th>source</th><th>name</th><th>summary</th><th>since</th></tr>"
        f"{rows}</table></body></html>",
        subtype="html",
    )
    return msg


class EmailSink:
    def __init__(self, config: EmailSinkConfig):
        self.config = config

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        if c.security == "tls":
            return smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout_s, context=ssl_context(c.tls))
        smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_s)
        if c.security == "starttls":
            smtp.starttls(context=ssl_context(c.tls))
        return smtp

    def send(self, alerts: Sequence[Alert], route: str, now: datetime) -> None:
        c = self.config
        try:
            with self._connect() as smtp:
                if c.username is not None and c.password is not None:
                    smtp.login(c.username, c.password.get_secret_value())
                smtp.send_message(message(c, route, alerts, now))
        except (smtplib.SMTPException, OSError, ssl.SSLError) as e:
            raise SinkError(f"SMTP {c.host}:{c.port}: {type(e).__name__}: {e}") from None
