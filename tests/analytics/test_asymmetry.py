"""Asymmetric paths judged per conversation from its observation points, inside a center and across."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from analytics.detectors import detect_asymmetric
from analytics.detectors.asymmetry import two_way_exporters

T0 = datetime(2026, 11, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)
COLS = ["t", "client", "server", "port", "proto", "client_center", "server_center", "client_node",
        "server_node", "tenant", "workload", "reply", "exporter", "exporter_center", "sampled"]  # fmt: skip


def obs(rows):
    return pd.DataFrame(rows, columns=COLS)


def conversation(client, server, port, seen, centers=("dc1", "dc2"), nodes=("n1", "n2"), n=50, t=T0):
    """Rows of one conversation: ``seen`` maps exporter → directions it saw ("req", "rep")."""
    out = []
    for exporter, dirs in seen.items():
        for d in dirs:
            out.append((pd.Timestamp(t), client, server, port, 6, *centers, *nodes, "shop", "api", d == "rep",
                        exporter, centers[0], n))  # fmt: skip
    return out


def normal(k, two_way=True):
    """Background conversations that show which exporters see both directions."""
    rows = []
    for i in range(k):
        seen = {"e1": ("req", "rep"), "e2": ("req", "rep")} if two_way else {"e1": ("req",), "e2": ("rep",)}
        rows += conversation(f"10.0.0.{i}", f"10.1.0.{i}", 443, seen)
    return rows


def test_asymmetric_across_centers_and_inside_one():
    cross = conversation("10.0.9.1", "10.1.9.1", 8080, {"e1": ("req",), "e2": ("rep",)})
    local = conversation(
        "10.0.9.2", "10.0.9.3", 8080, {"e1": ("req",), "e2": ("rep",)}, centers=("dc1", "dc1")
    )
    found, report = detect_asymmetric(obs(normal(5) + cross + local), HOUR)
    assert sorted((f.entities["src_center"], f.entities["dst_center"]) for f in found) == [
        ("dc1", "dc1"),
        ("dc1", "dc2"),
    ]
    f = found[0]
    assert f.type == "asymmetric_path" and f.entities["tenant"] == "shop" and f.entities["workload"] == "api"
    assert f.entities["port"] == "8080" and f.window_start == T0 and f.window_end == T0 + HOUR
    assert report.judged == 7 and not report.not_observable


def test_symmetric_conversations_at_two_way_points_are_quiet():
    found, report = detect_asymmetric(obs(normal(6)), HOUR)
    assert found == [] and report.judged == 6


def test_one_way_exporters_make_asymmetry_not_observable():
    # Probes exporting what their node sends: e1 sees requests, e2 replies, whatever the path.
    rows = normal(5, two_way=False) + conversation(
        "10.0.9.1", "10.1.9.1", 8080, {"e1": ("req",), "e2": ("rep",)}
    )
    found, report = detect_asymmetric(obs(rows), HOUR)
    assert found == []
    assert len(report.not_observable) == 6 and report.one_way_exporters == ["e1", "e2"]
    assert "one direction" in report.to_json()["why"]
    assert two_way_exporters(obs(rows)) == set()


def test_too_few_sampled_packets_to_expect_the_missing_direction():
    thin = conversation("10.0.9.1", "10.1.9.1", 8080, {"e1": ("req",), "e2": ("rep",)}, n=3)
    found, report = detect_asymmetric(obs(normal(5) + thin), HOUR)
    assert found == [] and report.thin == 1


def test_empty():
    found, report = detect_asymmetric(obs([]), HOUR)
    assert found == [] and report.conversations == 0


def test_asymmetry_beside_symmetric_traffic_of_the_same_two_pods():
    """Inside one center: requests leave through e1 only, replies through e2 only, while other connections
    of the same two pods on the usual path add a few packets of each direction at both points in the hour.
    A symmetric conversation whose points report doubled counts (an OVS bridge's ingress and egress) beside
    a probe's single ones stays quiet."""
    rows = []
    for exporter, req, rep in (("e1", 130, 3), ("e2", 2, 1050)):
        for reply, n in ((False, req), (True, rep)):
            rows.append((pd.Timestamp(T0), "10.0.9.2", "10.0.9.3", 8080, 6, "dc1", "dc1", "n1", "n2", "shop", "api",
                         reply, exporter, "dc1", n))  # fmt: skip
    for exporter, k in (("e1", 2), ("e2", 1)):
        for reply, n in ((False, 40 * k), (True, 320 * k)):
            rows.append((pd.Timestamp(T0), "10.0.9.4", "10.0.9.5", 8080, 6, "dc1", "dc2", "n1", "n2", "shop", "api",
                         reply, exporter, "dc1", n))  # fmt: skip
    found, _ = detect_asymmetric(obs(normal(5) + rows), HOUR)
    assert [(f.entities["client"], f.entities["src_center"], f.entities["dst_center"]) for f in found] == [
        ("10.0.9.2", "dc1", "dc1")
    ]
