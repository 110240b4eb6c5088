"""The notifier end to end on a real chdb store and a real HTTP receiver: read → route → send → record."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from alerts.config import AlertsConfig
from alerts.service import Notifier
from netobs.metrics import REGISTRY
from tests.alerts.conftest import DB, NOW, SECRET, finding, save_findings, save_violation


def config(url, tls=None, **over):
    webhook = {
        "type": "webhook",
        "url": url,
        "secret": SECRET,
        "retries": 1,
        "backoff_s": 0.01,
        "timeout_s": 0.5,
    }
    if tls:
        webhook["tls"] = tls
    data = {
        "min_severity": "warning",
        "sinks": {"hook": webhook},
        "routes": [{"name": "noc", "sinks": ["hook"], "repeat_interval_s": 600}],
        **over,
    }
    return AlertsConfig(**data)


def failures(route="noc", sink="hook"):
    return (
        REGISTRY.get_sample_value("netobs_alerts_delivery_failures_total", {"route": route, "sink": sink})
        or 0.0
    )


def test_deliver_once_then_rate_limited_then_repeated(store, receiver):
    save_findings(store, finding(), finding("volume", "info", tenant="corp"))  # info is below the threshold
    save_violation(store)
    n = Notifier(config(receiver.url), store.query_arrow, DB)
    t = NOW + timedelta(minutes=1)
    r = n.run_once(t)
    assert r.read == {"findings": 1, "violations": 1} and r.sent == 2 and r.failed == 0
    got = {a["source"]: a for a in receiver.alerts()}
    assert receiver.bad_signatures == 0 and len(receiver.bodies) == 1  # one batch per route and run
    f = got["findings"]
    assert f["labels"]["center"] == "dc1,dc3" and f["labels"]["tenant"] == "retail"
    assert f["labels"]["severity"] == "critical" and f["state"] == "firing" and f["ends_at"] is None
    v = got["violations"]
    assert v["labels"]["rule"] == "prod-nonprod-separation" and v["labels"]["zone"] == "production,staging"
    assert "retail/retail-web/web (dc1,production) → retail/retail-staging/db" in v["annotations"]["summary"]

    assert n.run_once(t + timedelta(minutes=1)).sent == 0  # unchanged: not before repeat_interval_s
    save_findings(store, finding(end=NOW + timedelta(minutes=5)))  # next window, same alert
    r = n.run_once(t + timedelta(minutes=6))
    assert r.read["findings"] == 1 and r.sent == 0  # refreshed, not changed
    r = n.run_once(t + timedelta(minutes=11))
    assert r.sent == 2 and len(receiver.bodies) == 2  # repeat interval reached


def test_restart_neither_loses_nor_duplicates(store, receiver):
    save_findings(store, finding())
    t = NOW + timedelta(minutes=1)
    assert Notifier(config(receiver.url), store.query_arrow, DB).run_once(t).sent == 1
    again = Notifier(config(receiver.url), store.query_arrow, DB)  # a restarted process
    assert again.run_once(t + timedelta(seconds=30)).sent == 0
    save_findings(store, finding("elephant", "warning"))
    r = again.run_once(t + timedelta(seconds=60))
    assert r.read["findings"] == 1 and r.sent == 1 and len(receiver.alerts()) == 2


def test_finding_that_ended_is_resolved(store, receiver):
    save_findings(store, finding())
    n = Notifier(config(receiver.url), store.query_arrow, DB)
    n.run_once(NOW + timedelta(minutes=1))
    r = n.run_once(NOW + timedelta(minutes=16))  # findings_resolve_after_s 900 after the window's end
    assert r.sent == 1
    last = receiver.alerts()[-1]
    assert last["state"] == "resolved" and last["ends_at"].startswith(NOW.strftime("%Y-%m-%dT%H:%M"))
    assert n.run_once(NOW + timedelta(hours=2)).sent == 0  # resolved and delivered: done


def test_tombstoned_violation_resolves(store, receiver):
    row = save_violation(store)
    n = Notifier(config(receiver.url), store.query_arrow, DB)
    assert n.run_once(NOW + timedelta(minutes=1)).sent == 1
    save_violation(store, id=row["id"], deleted=1)  # re-evaluated with an exemption
    r = n.run_once(NOW + timedelta(minutes=2))
    assert r.read["violations"] == 1 and r.sent == 1 and receiver.alerts()[-1]["state"] == "resolved"


@pytest.mark.slow
def test_sink_down_is_counted_and_delivered_next_run(store, receiver):
    save_findings(store, finding())
    n = Notifier(config(receiver.url), store.query_arrow, DB)
    before = failures()
    receiver.mode = "error"
    r = n.run_once(NOW + timedelta(minutes=1))
    assert r.sent == 0 and r.failed == 1 and "HTTP 500" in r.errors[0]
    assert receiver.requests == 2  # one retry
    receiver.mode = "slow"
    r = n.run_once(NOW + timedelta(minutes=2))
    assert r.failed == 1 and "timed out" in r.errors[0]
    assert failures() == before + 2
    receiver.mode = "ok"
    r = n.run_once(NOW + timedelta(minutes=3))
    assert r.sent == 1 and len(receiver.alerts()) == 1
    assert n.run_once(NOW + timedelta(minutes=4)).sent == 0


def test_routes_by_label_and_severity_and_dry_run(store, receiver):
    save_findings(store, finding(), finding("dependency", "warning", tenant="corp", dst_center="dc2"))
    cfg = config(
        receiver.url,
        routes=[
            {"name": "dr", "sinks": ["hook"], "labels": {"center": ["dc3"]}, "min_severity": "critical"},
            {"name": "rest", "sinks": ["hook"], "sources": ["findings"]},
        ],
    )
    dry = Notifier(cfg, store.query_arrow, DB, dry_run=True)
    r = dry.run_once(NOW + timedelta(minutes=1))
    assert sorted((t, [a.name for a in al]) for t, al in r.planned) == [
        ("dr/hook", ["dr_traffic"]),
        ("rest/hook", ["dependency"]),
    ]
    assert receiver.requests == 0 and r.sent == 0 and r.unrouted == 0
    r = Notifier(cfg, store.query_arrow, DB).run_once(NOW + timedelta(minutes=1))  # dry run moved nothing
    assert r.sent == 2 and sorted(b["route"] for b in receiver.bodies) == ["dr", "rest"]


def test_malformed_row_is_counted_not_fatal(store, receiver):
    save_findings(store, finding())
    store.execute(  # a window that ends before it starts: dropped and counted, the others go on
        f"INSERT INTO `{DB}`.findings (id, detector, severity, score, window_start, window_end, entities, "
        "summary, evidence, analyzed_at) VALUES ('x1', 'volume', 'critical', 1, now(), now() - 600, "
        "map('tenant', 'a'), 's', '', now64(3))"
    )
    key = {"source": "findings", "reason": "malformed"}
    before = REGISTRY.get_sample_value("netobs_alerts_dropped_rows_total", key) or 0.0
    n = Notifier(config(receiver.url), store.query_arrow, DB)
    r = n.run_once(NOW + timedelta(minutes=1))
    assert r.read["findings"] == 1 and r.sent == 1 and r.failed == 0
    assert REGISTRY.get_sample_value("netobs_alerts_dropped_rows_total", key) == before + 1
    assert n.run_once(NOW + timedelta(minutes=2)).read["findings"] == 0  # the cursor moved past it


def test_store_down_tick_counts_and_survives(store, receiver):
    n = Notifier(config(receiver.url), store.query_arrow, DB)
    store.stop()
    before = REGISTRY.get_sample_value("netobs_alerts_run_errors_total") or 0.0
    assert n.tick() is None
    assert REGISTRY.get_sample_value("netobs_alerts_run_errors_total") == before + 1
    store.start()
    save_findings(store, finding())
    assert n.tick() is not None


def test_start_stop_thread(store, receiver):
    save_findings(store, finding(end=NOW + timedelta(hours=1)))
    n = Notifier(config(receiver.url, interval_s=0.2), store.query_arrow, DB)
    n.start()
    try:
        for _ in range(100):
            if receiver.bodies:
                break
            time.sleep(0.05)
    finally:
        n.stop()
    assert len(receiver.alerts()) == 1
    assert (REGISTRY.get_sample_value("netobs_alerts_runs_total") or 0) >= 1


def test_webhook_over_https_checks_the_certificate(store, tls_receiver, cert):
    save_findings(store, finding())
    plain = config(tls_receiver.url)  # system CAs: the self-signed certificate is refused
    r = Notifier(plain, store.query_arrow, DB).run_once(NOW + timedelta(minutes=1))
    assert r.failed == 1 and "CERTIFICATE_VERIFY_FAILED" in r.errors[0]
    trusted = config(tls_receiver.url, tls={"ca_file": str(cert[0])})
    r = Notifier(trusted, store.query_arrow, DB).run_once(NOW + timedelta(minutes=2))
    assert r.sent == 1 and tls_receiver.bodies


def test_alert_matching_no_route_is_counted(store, receiver):
    save_findings(store, finding(), finding("fanout", "warning", tenant="corp", src="10.0.0.9"))
    cfg = config(receiver.url, routes=[{"name": "crit", "sinks": ["hook"], "min_severity": "critical"}])
    key = {"source": "findings", "reason": "unrouted"}
    before = REGISTRY.get_sample_value("netobs_alerts_dropped_rows_total", key) or 0.0
    r = Notifier(cfg, store.query_arrow, DB).run_once(NOW + timedelta(minutes=1))
    assert r.sent == 1 and r.unrouted == 1
    assert REGISTRY.get_sample_value("netobs_alerts_dropped_rows_total", key) == before + 1
