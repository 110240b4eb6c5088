"""The e-mail sink against a real SMTP server (aiosmtpd): plain + login, STARTTLS, implicit TLS, failures."""

from __future__ import annotations

import email
import ssl
from datetime import timedelta
from email.message import Message

import pytest

from alerts.config import AlertsConfig
from alerts.service import Notifier
from tests.alerts.conftest import DB, NOW, finding, save_findings, save_violation
from tests.services import _require
from tests.services._proc import free_port

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword
except ImportError:  # the dev extra; a failure, not a skip, when services are required
    Controller = None


@pytest.fixture(autouse=True)
def _aiosmtpd() -> None:
    if Controller is None:
        _require.unavailable("aiosmtpd not installed (pip install -e '.[dev]')")


USER, PASSWORD = "netobs", "smtp-test-pw"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535


def smtp_server(inbox: Inbox, cert=None, implicit=False) -> Controller:
    kwargs: dict = {"hostname": "127.0.0.1", "port": free_port(), "authenticator": inbox.authenticate}
    if cert is not None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        # aiosmtpd counts only STARTTLS as TLS for AUTH; an implicit-TLS session is TLS from the start
        kwargs |= (
            {"ssl_context": ctx, "auth_require_tls": False}
            if implicit
            else {"tls_context": ctx, "require_starttls": True}
        )
    else:
        kwargs["auth_require_tls"] = False
    controller = Controller(inbox, **kwargs)
    controller.start()
    return controller


def config(port, security="none", password=PASSWORD, ca=None):
    return AlertsConfig(
        min_severity="warning",
        sinks={
            "mail": {
                "type": "email",
                "host": "127.0.0.1",
                "port": port,
                "security": security,
                "username": USER,
                "password": password,
                "sender": "netobs@bank.example",
                "to": ["noc@bank.example", "compliance@bank.example"],
                "timeout_s": 5,
                "tls": {"ca_file": ca},
            }
        },
        routes=[{"name": "noc", "sinks": ["mail"], "repeat_interval_s": 3600}],
    )


def parts(msg: Message) -> dict[str, str]:
    return {
        p.get_content_type(): p.get_payload(decode=True).decode() for p in msg.walk() if not p.is_multipart()
    }


def test_digest_per_run_with_counts(store):
    save_findings(store, finding(), finding("volume", "warning", tenant="corp", kind="spike"))
    save_violation(store, severity="critical")
    inbox = Inbox()
    server = smtp_server(inbox)
    try:
        n = Notifier(config(server.port), store.query_arrow, DB)
        r = n.run_once(NOW + timedelta(minutes=1))
        assert r.sent == 3 and len(inbox.messages) == 1 and inbox.logins
        msg = inbox.messages[0]
        assert msg["Subject"] == "[netobs] noc: 2 critical, 1 warning firing"
        assert msg["To"] == "noc@bank.example, compliance@bank.example"
        body = parts(msg)
        assert set(body) == {"text/plain", "text/html"}
        assert "[CRITICAL] firing violations/prod-nonprod-separation" in body["text/plain"]
        assert "<td>dr_traffic</td>" in body["text/html"]
        assert n.run_once(NOW + timedelta(minutes=2)).sent == 0 and len(inbox.messages) == 1
        r = n.run_once(NOW + timedelta(minutes=16))  # the findings' windows are over
        assert inbox.messages[-1]["Subject"] == "[netobs] noc: 2 resolved"
    finally:
        server.stop()


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_tls(store, cert, implicit):
    save_findings(store, finding())
    inbox = Inbox()
    server = smtp_server(inbox, cert, implicit)
    try:
        cfg = config(server.port, "tls" if implicit else "starttls", ca=str(cert[0]))
        r = Notifier(cfg, store.query_arrow, DB).run_once(NOW + timedelta(minutes=1))
        assert r.sent == 1 and len(inbox.messages) == 1 and inbox.logins, r.errors
    finally:
        server.stop()


def test_bad_login_and_down_fail_then_retry(store, cert):
    save_findings(store, finding())
    inbox = Inbox()
    server = smtp_server(inbox, cert)
    try:
        bad = config(server.port, "starttls", password="nope", ca=str(cert[0]))
        r = Notifier(bad, store.query_arrow, DB).run_once(NOW + timedelta(minutes=1))
        assert r.failed == 1 and "SMTPAuthenticationError" in r.errors[0] and "nope" not in r.errors[0]
        down = config(free_port(), "starttls", ca=str(cert[0]))
        r = Notifier(down, store.query_arrow, DB).run_once(NOW + timedelta(minutes=2))
        assert r.failed == 1 and "ConnectionRefusedError" in r.errors[0]
        good = config(server.port, "starttls", ca=str(cert[0]))
        r = Notifier(good, store.query_arrow, DB).run_once(NOW + timedelta(minutes=3))
        assert r.sent == 1 and len(inbox.messages) == 1
    finally:
        server.stop()


def test_untrusted_certificate_fails(store, cert):
    save_findings(store, finding())
    inbox = Inbox()
    server = smtp_server(inbox, cert)
    try:
        r = Notifier(config(server.port, "starttls"), store.query_arrow, DB).run_once(
            NOW + timedelta(minutes=1)
        )
        assert r.failed == 1 and "CERTIFICATE_VERIFY_FAILED" in r.errors[0]  # system CAs do not know it
        assert not inbox.messages
    finally:
        server.stop()
