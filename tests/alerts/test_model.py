"""Pure parts: alerts from rows, merge/settle, routing, config checks, payloads and signatures."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from alerts import routing
from alerts.config import AlertsConfig, LinksConfig, RouteConfig
from alerts.model import Alert, from_finding, from_violation, gathered, merge, settle
from alerts.sinks import SINKS, AlertmanagerSink, EmailSink, WebhookSink, make_sink
from alerts.sinks._http import _redacted
from alerts.sinks.alertmanager import payload
from alerts.sinks.email import subject
from alerts.sinks.webhook import sign, verify
from alerts.source import Cursor, findings_sql, start_cursor
from netobs_app.settings import ConfigError, Settings, dump, load

T = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
MS = int(T.timestamp() * 1000)


def frow(**over):
    row = {
        "id": "f1",
        "detector": "shift",
        "severity": "critical",
        "score": 3.5,
        "window_start_ms": MS - 300_000,
        "window_end_ms": MS,
        "entity_keys": ["center_pair", "kind", "away-from"],
        "entity_values": ["dc1-dc2", "failover", "dc1"],
        "summary": "dc1 failed over",
        "evidence": '{"share": 0.95}',
    }
    return row | over


def test_from_finding_labels_and_links():
    a = from_finding(frow(), LinksConfig(runbook_url="https://wiki/{name}", generator_url="https://ui/{id}"))
    assert a.labels["center"] == "dc1,dc2" and a.labels["away_from"] == "dc1"  # label names sanitised
    assert a.labels["alertname"] == "shift" and a.labels["source"] == "findings"
    assert a.annotations["runbook_url"] == "https://wiki/shift" and a.generator_url == "https://ui/f1"
    assert '"share": 0.95' in a.annotations["description"]
    assert (a.starts_at, a.last_seen, a.firing) == (T - timedelta(minutes=5), T, True)
    # the same entities in another window: the same alert
    assert from_finding(frow(id="f2", window_end_ms=MS + 300_000), LinksConfig()).fingerprint == a.fingerprint
    assert (
        from_finding(frow(entity_values=["dc1-dc3", "failover", "dc1"]), LinksConfig()).fingerprint
        != a.fingerprint
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"severity": "urgent"},
        {"window_end_ms": MS - 600_000},
        {"entity_keys": ["x"]},
        {"summary": None} | {"score": "x"},
    ],
)
def test_malformed_finding_rows_raise(bad):
    with pytest.raises((ValueError, TypeError, KeyError)):
        from_finding(frow(**bad), LinksConfig())


def test_gathered():
    assert gathered({"src_center": "dc1", "dst_center": "dc3", "tenant": "a", "src_zone": ""}) == {
        "center": "dc1,dc3",
        "tenant": "a",
    }


def alert(last_seen=T, ends_at=None, severity="critical", deleted=False, starts=None):
    return Alert(
        "fp",
        "findings",
        "x",
        severity,
        {"severity": severity, "center": "dc1,dc3"},
        {"summary": "s"},
        starts or last_seen - timedelta(minutes=5),
        last_seen,
        ends_at,
        deleted=deleted,
    )


def test_merge_and_settle():
    first = alert()
    later = alert(T + timedelta(minutes=5))
    m = merge(first, later, T)
    assert m is not None and m.starts_at == first.starts_at and m.last_seen == later.last_seen
    older = merge(later, first, T)  # a rerun of an older window: only starts_at moves back
    assert older == replace(later, starts_at=first.starts_at)
    assert merge(None, alert(deleted=True), T) is None
    gone = merge(later, alert(T + timedelta(minutes=5), deleted=True), T + timedelta(minutes=6))
    assert gone is not None and gone.ends_at == T + timedelta(minutes=6)
    resolved = settle(later, T + timedelta(minutes=20), 900)
    assert resolved.ends_at == later.last_seen and resolved.content_hash != later.content_hash
    assert settle(later, T + timedelta(minutes=10), 900) == later
    again = merge(resolved, alert(T + timedelta(hours=1)), T)
    assert (
        again is not None and again.firing and again.starts_at == T + timedelta(minutes=55)
    )  # a new episode
    assert Alert.from_json(later.to_json()) == later


def test_routing():
    routes = [
        RouteConfig(name="dr", sinks=("am",), labels={"center": ("dc3",)}, continue_matching=True),
        RouteConfig(name="crit", sinks=("mail", "hook"), min_severity="high", sources=("findings",)),
        RouteConfig(name="rest", sinks=("hook",)),
    ]
    assert routing.targets(routes, alert()) == ["dr/am", "crit/mail", "crit/hook"]
    assert routing.targets(routes, alert(severity="warning")) == ["dr/am", "rest/hook"]
    grouped = routing.group(
        RouteConfig(name="g", sinks=("x",), group_by=("severity",)), [alert(severity="warning"), alert()]
    )
    assert [[a.severity for a in g] for g in grouped] == [["critical"], ["warning"]]


def test_config_checks_and_env_secrets(tmp_path, monkeypatch):
    with pytest.raises(ValidationError, match="needs at least one route"):
        AlertsConfig(enabled=True)
    with pytest.raises(ValidationError, match="unknown sink 'nope'"):
        AlertsConfig(routes=[{"name": "r", "sinks": ["nope"]}])
    with pytest.raises(ValidationError, match="must be below sink 'am' resolve_timeout_s"):
        AlertsConfig(
            sinks={"am": {"type": "alertmanager", "url": "http://x"}},
            routes=[{"name": "r", "sinks": ["am"], "repeat_interval_s": 300}],
        )
    with pytest.raises(ValidationError, match="either username/password or bearer_token"):
        AlertsConfig(
            sinks={
                "am": {
                    "type": "alertmanager",
                    "url": "u",
                    "username": "a",
                    "password": "b",
                    "bearer_token": "t",
                }
            }
        )
    bad = tmp_path / "bad.yaml"
    bad.write_text("alerts:\n  sinks:\n    x: {type: pager, url: u}\n")
    with pytest.raises(ConfigError, match="alerts.sinks.x"):
        load(bad)
    good = tmp_path / "good.yaml"
    good.write_text(
        "alerts:\n  sinks:\n    hook: {type: webhook, url: 'http://127.0.0.1:1/h', secret: s3cr3t-value}\n"
        "  routes:\n    - {name: noc, sinks: [hook], min_severity: high, labels: {tenant: [retail]}}\n"
    )
    s = load(good)
    assert s.alerts.sinks["hook"].secret.get_secret_value() == "s3cr3t-value"
    monkeypatch.setenv("NETOBS__ALERTS__SINKS__HOOK__SECRET", "from-env")
    assert load(good).alerts.sinks["hook"].secret.get_secret_value() == "from-env"
    monkeypatch.delenv("NETOBS__ALERTS__SINKS__HOOK__SECRET")
    assert "s3cr3t-value" not in dump(s) and "s3cr3t-value" not in repr(s)
    assert Settings().alerts.enabled is False


def test_sink_table_and_payloads():
    assert SINKS == {"alertmanager": AlertmanagerSink, "webhook": WebhookSink, "email": EmailSink}
    cfg = AlertsConfig(sinks={"h": {"type": "webhook", "url": "http://x", "unsigned": True}})
    assert isinstance(make_sink(cfg.sinks["h"]), WebhookSink)
    body = payload([alert(), alert(ends_at=T)])
    assert "endsAt" not in body[0] and body[1]["endsAt"] == "2026-11-30T10:00:00.000Z"
    assert body[0]["startsAt"] == "2026-11-30T09:55:00.000Z"
    # RFC 4231 test case 2, the message split as timestamp "what do ya want for nothing?" can't be;
    # so: the HMAC of "<ts>." + body, checked against Python's hmac, and the replay window
    mac = hmac.new(b"Jefe", b"1700000000." + b"{}", hashlib.sha256).hexdigest()
    assert sign(b"Jefe", b"{}", 1700000000) == f"sha256={mac}"
    assert verify(b"Jefe", b"{}", f"sha256={mac}", "1700000000", now=1700000100)
    assert not verify(b"Jefe", b"{}", f"sha256={mac}", "1700000000", now=1700000000 + 301)  # replayed late
    assert not verify(b"Jefe", b"{ }", f"sha256={mac}", "1700000000", now=1700000000)  # body changed
    assert not verify(b"Jefe", b"{}", f"sha256={mac}", "1700000001", now=1700000000)  # timestamp changed
    with pytest.raises(ValueError, match="secret"):
        AlertsConfig(sinks={"h": {"type": "webhook", "url": "http://x"}})  # signing is the default
    alerts = [alert(), alert(), alert(severity="warning"), alert(ends_at=T)]
    assert subject("[netobs]", "noc", alerts) == "[netobs] noc: 2 critical, 1 warning firing; 1 resolved"


def test_source_sql_and_cursor():
    c = start_cursor("violations", T)
    assert c.position == 2 * MS - 1
    assert start_cursor("findings", T).position == MS - 1
    sql = findings_sql("netobs", Cursor(MS, "abc"), "high", 10)
    assert "severity IN ('critical', 'high')" in sql and f"> ({MS}, 'abc')" in sql and "LIMIT 10" in sql
    assert "FROM `netobs`.`findings` FINAL" in sql


def test_from_violation_unnamed_end_and_tombstone():
    row = {
        "id": "v1",
        "policy": "bank",
        "rule": "no-internet",
        "rule_type": "deny",
        "severity": "high",
        "owner": "",
        "regulations": [],
        "src_tenant": "retail",
        "src_namespace": "web",
        "src_workload": "api",
        "src_zone": "production",
        "src_center": "dc2",
        "dst_ip": "203.0.113.7",
        "bytes": 10,
        "packets": 2,
        "flows": 1,
        "window_start_ms": MS - 3_600_000,
        "window_end_ms": MS,
        "first_seen_ms": MS - 60_000,
        "last_seen_ms": MS - 30_000,
        "deleted": 1,
    }
    a = from_violation(row, LinksConfig(report_url="https://r/{policy}/{rule}"))
    assert (
        a.annotations["summary"]
        == "no-internet (bank): retail/web/api (dc2,production) → 203.0.113.7: 1 flows, 10 bytes"
    )
    assert a.annotations["report_url"] == "https://r/bank/no-internet" and "owner" not in a.labels
    assert a.deleted and a.labels["center"] == "dc2" and "dst_ip" not in a.labels


def test_alertmanager_auth_headers_and_redaction():
    def headers(**auth):
        cfg = AlertsConfig(sinks={"am": {"type": "alertmanager", "url": "http://am:9093/", **auth}})
        sink = make_sink(cfg.sinks["am"])
        assert sink.url == "http://am:9093/api/v2/alerts"
        return sink._headers()

    assert headers(bearer_token="tok")["Authorization"] == "Bearer tok"
    assert headers(username="u", password="p")["Authorization"] == "Basic dTpw"
    assert "Authorization" not in headers()
    with pytest.raises(ValidationError, match="needs both username and password"):
        headers(username="u")
    assert _redacted("https://user:pw@hooks.example/x") == "https://hooks.example/x"
    assert _redacted("https://hooks.example/a@b") == "https://hooks.example/a@b"
