"""The Alertmanager sink against a real Alertmanager 0.25 with basic auth: post, read back, resolve."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.config import AlertsConfig
from alerts.service import Notifier
from netobs.metrics import REGISTRY
from tests.alerts.conftest import DB, NOW, finding, save_findings, save_violation
from tests.services.alertmanager import PASSWORD, USER

pytestmark = pytest.mark.integration


def config(am, password=PASSWORD, **sink):
    return AlertsConfig(
        min_severity="info",
        links={"generator_url": "https://netobs.example/{source}/{id}", "runbook_url": "https://wiki/{name}"},
        sinks={
            "am": {
                "type": "alertmanager",
                "url": am.url,
                "username": USER,
                "password": password,
                "retries": 0,
                **sink,
            }
        },
        routes=[{"name": "all", "sinks": ["am"], "repeat_interval_s": 60}],
    )


def ours(am):
    return {a["labels"]["alertname"]: a for a in am.alerts() if a["labels"].get("source")}


def test_post_read_back_and_resolve(alertmanager, store):
    save_findings(store, finding("shift", "critical", center_pair="dc1-dc2", kind="failover"))
    save_violation(store, rule="mgmt-from-bastion", severity="high")
    n = Notifier(config(alertmanager), store.query_arrow, DB)
    r = n.run_once(NOW + timedelta(minutes=1))
    assert r.sent == 2 and r.failed == 0, r.errors
    got = ours(alertmanager)
    shift = got["shift"]
    assert shift["labels"]["severity"] == "critical" and shift["labels"]["center"] == "dc1,dc2,dc3"
    assert shift["labels"]["kind"] == "failover" and shift["status"]["state"] == "active"
    assert shift["annotations"]["runbook_url"] == "https://wiki/shift"
    assert shift["generatorURL"].startswith("https://netobs.example/findings/")
    assert shift["startsAt"].startswith((NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"))
    bastion = got["mgmt-from-bastion"]
    assert bastion["labels"]["policy"] == "bank" and bastion["labels"]["owner"] == "secops"
    assert "PCI DSS 4.0 1.3.1" in bastion["annotations"]["description"]

    # an unchanged firing alert is re-sent after repeat_interval_s (Alertmanager would expire it)
    assert n.run_once(NOW + timedelta(seconds=90)).sent == 0
    assert n.run_once(NOW + timedelta(seconds=121)).sent == 2
    # the finding's window is long over: resolved with endsAt, and Alertmanager drops it from the active list
    r = n.run_once(NOW + timedelta(minutes=16))
    states = sorted((a.name, a.state) for _, alerts in r.planned for a in alerts)
    assert states == [("mgmt-from-bastion", "firing"), ("shift", "resolved")] and r.sent == 2
    assert sorted(ours(alertmanager)) == ["mgmt-from-bastion"]


def test_wrong_password_is_a_counted_failure(alertmanager, store):
    save_findings(store, finding("gaps", "warning", exporter="10.0.0.1"))
    key = {"route": "all", "sink": "am"}
    before = REGISTRY.get_sample_value("netobs_alerts_delivery_failures_total", key) or 0.0
    r = Notifier(config(alertmanager, password="wrong"), store.query_arrow, DB).run_once(
        NOW + timedelta(minutes=1)
    )
    assert r.failed == 1 and "HTTP 401" in r.errors[0] and "wrong" not in r.errors[0]
    assert REGISTRY.get_sample_value("netobs_alerts_delivery_failures_total", key) == before + 1
    r = Notifier(config(alertmanager), store.query_arrow, DB).run_once(NOW + timedelta(minutes=2))
    assert r.sent == 1 and "gaps" in ours(alertmanager)
