"""Planned windows are honoured the same way for every detector: expected effects become planned info."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from analytics import planned
from analytics.config import Window
from analytics.detectors import DETECTORS
from analytics.findings import Finding

T0 = datetime(2026, 11, 2, 10, tzinfo=UTC)
B = timedelta(minutes=5)
H = timedelta(hours=1)

ENTITIES = {
    "volume": {"tenant": "t1", "center": "dc1"},
    "center_shift": {"tenant": "t1", "center_pair": "dc1-dc2", "away_from": "dc1"},
    "dr_traffic": {"tenant": "t1", "workload": "db", "src_center": "dc1", "dst_center": "dc3"},
    "new_dependency": {
        "src_service": "t1/api",
        "dst_service": "t1/db",
        "src_center": "dc1",
        "dst_center": "dc3",
    },
    "asymmetric_path": {"tenant": "t1", "src_center": "dc1", "dst_center": "dc3"},
    "fanout": {"tenant": "t1", "src": "10.0.0.1", "center": "dc1"},
    "elephant": {"src_center": "dc1", "dst_center": "dc3"},
    "collection_gap": {"exporter": "192.0.2.11", "center": "dc1"},
    "dns_tunnelling": {"tenant": "t1", "src": "10.0.0.1", "center": "dc1"},
    "plaintext_downgrade": {"tenant": "t1", "src": "shop/web-1", "dst": "core/api-1"},
    "rate_limit": {"cluster": "", "namespace": "t1", "pod": "api-0", "direction": "egress"},
    "link_qos": {
        "cluster": "",
        "link": "eip/eip-pay",
        "policy": "q",
        "rule": "r",
        "direction": "egress",
        "class": "payments",
    },  # fmt: skip
}


def finding(detector, start=T0, hours=1):
    return Finding(detector, "critical", 1.0, start, start + hours * H, dict(ENTITIES[detector]), "s")


@pytest.mark.parametrize("detector", sorted(DETECTORS))
def test_every_detector_is_honoured_by_a_maintenance_window(detector):
    w = Window(start=T0 - H, end=T0 + 2 * H, kind="maintenance", centers=("dc1",), note="patching dc1")
    (f,) = planned.apply([finding(detector)], (w,), B)
    if detector in (
        "fanout",
        "dns_tunnelling",
        "plaintext_downgrade",
        "rate_limit",
        "link_qos",
    ):  # nobody plans a scan, tunnel, downgrade, unenforced limit, starved payments
        assert f.severity == "critical" and not f.planned
    else:
        assert f.severity == "info" and f.planned
        assert f.evidence["planned"]["note"] == "patching dc1" and f.summary.startswith(
            "planned (maintenance"
        )


def test_place_tenant_time_and_kind_must_all_match():
    w = Window(start=T0, end=T0 + H, kind="dr_drill", centers=("dc3",), tenants=("t1",), note="drill")
    inside = finding("dr_traffic")
    elsewhere = Finding("volume", "warning", 1, T0, T0 + H, {"tenant": "t1", "center": "dc2"}, "s")
    other_tenant = Finding(
        "dr_traffic", "critical", 1, T0, T0 + H, {"tenant": "t2", "dst_center": "dc3"}, "s"
    )
    later = finding("dr_traffic", start=T0 + 2 * H)
    lagging = finding("dr_traffic", start=T0 + H + timedelta(minutes=2))  # export lag: one bucket
    gap = finding("collection_gap")  # a drill does not expect exporters to fall silent
    out = planned.apply([inside, elsewhere, other_tenant, later, lagging, gap], (w,), B)
    assert [f.planned for f in out] == [True, False, False, False, True, False]
    assert [f.severity for f in out] == ["info", "warning", "critical", "critical", "info", "critical"]


def test_window_without_effect_and_explicit_expectations():
    w = Window(start=T0, end=T0 + H, kind="maintenance", expect=("collection_gap",))
    out = planned.apply([finding("volume"), finding("collection_gap")], (w,), B)
    assert [f.planned for f in out] == [False, True]
    assert (
        planned.apply([], (w,), B) == []
        and planned.apply([finding("volume")], (), B)[0].severity == "critical"
    )
