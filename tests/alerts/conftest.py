"""Fixtures of the alert tests: a real chdb store with findings and violations, a real HTTP
receiver checking webhook signatures, a real SMTP server (aiosmtpd), and Alertmanager."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from analytics import findings_table as fstore
from analytics.findings import Finding
from analytics.policy.evaluate import COLUMNS, VIOLATIONS, create_violations
from tests.services import _require
from tests.services.alertmanager import alertmanager  # noqa: F401

DB = "netobs"
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
SECRET = "webhook-test-secret"


@pytest.fixture
def store(store_factory):
    return store_factory(retention_days=0)


def finding(detector="dr_traffic", severity="critical", end=NOW, tenant="retail", score=9.0, **entities):
    ents = {"src_center": "dc1", "dst_center": "dc3", "tenant": tenant, **entities}
    return Finding(detector, severity, score, end - timedelta(minutes=5), end, ents, f"{detector} {tenant}")


def save_findings(store, *found: Finding) -> None:
    fstore.save(store.query_arrow, DB, list(found))


_seq = [0]


def save_violation(
    store, rule="prod-nonprod-separation", severity="critical", end=NOW, deleted=0, **over
) -> dict:
    """One violations row inserted as analytics.policy.evaluate writes them (version 2 × ms + 1, tombstones 2 × ms)."""
    for sql in create_violations(DB):
        store.execute(sql)
    _seq[0] += 1
    ms = int(time.time() * 1000) + _seq[0]
    ts = lambda t: t.strftime("%Y-%m-%d %H:%M:%S.000")  # noqa: E731
    row = {name: "" for name, _ in COLUMNS}
    row |= {
        "id": over.pop("id", f"v-{rule}-{int(end.timestamp())}"),
        "policy": "bank",
        "rule": rule,
        "rule_type": "deny",
        "severity": severity,
        "owner": "secops",
        "regulations": ["PCI DSS 4.0 1.3.1"],
        "window_start": ts(end - timedelta(hours=1)),
        "window_end": ts(end),
        "src_tenant": "retail",
        "src_namespace": "retail-web",
        "src_workload": "web",
        "src_zone": "production",
        "src_center": "dc1",
        "dst_tenant": "retail",
        "dst_namespace": "retail-staging",
        "dst_workload": "db",
        "dst_zone": "staging",
        "dst_center": "dc2",
        "src_ip": "10.1.0.5",
        "dst_ip": "10.2.0.9",
        "bytes": 100000,
        "packets": 1000,
        "flows": 1,
        "first_seen": ts(end - timedelta(minutes=50)),
        "last_seen": ts(end - timedelta(minutes=10)),
        "evidence": [],
        "version": 2 * ms + (0 if deleted else 1),
        "deleted": deleted,
    }
    row |= over
    store.execute(f"INSERT INTO `{DB}`.`{VIOLATIONS}` FORMAT JSONEachRow\n" + json.dumps(row))
    return row


@pytest.fixture(scope="session")
def cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl), used as its own CA by the clients."""
    if not shutil.which("openssl"):
        _require.unavailable("openssl not installed")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return d / "cert.pem", d / "key.pem"


class Receiver:
    """A real HTTP(S) server recording webhook bodies whose HMAC checks out; ``mode`` makes it fail."""

    def __init__(self, cert=None) -> None:
        self.bodies: list[dict] = []
        self.bad_signatures = 0
        self.requests = 0
        self.mode = "ok"  # ok | error | slow
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                receiver.requests += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.mode == "slow":
                    time.sleep(1.5)
                if receiver.mode == "error":
                    self.send_response(500)
                    self.end_headers()
                    return
                # the receiver's check written out (not alerts.sinks.webhook.verify): timestamp
                # covered by the signature, within a 5-minute replay window
                ts = self.headers.get("X-Netobs-Timestamp", "")
                signed = f"{ts}.".encode() + body
                want = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
                fresh = ts.isdigit() and abs(time.time() - int(ts)) <= 300
                if not fresh or not hmac.compare_digest(want, self.headers.get("X-Netobs-Signature", "")):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if cert is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self) -> list[dict]:
        return [a for b in self.bodies for a in b["alerts"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def tls_receiver(cert) -> Iterator[Receiver]:
    r = Receiver(cert)
    yield r
    r.close()
