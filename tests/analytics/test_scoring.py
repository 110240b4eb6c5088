"""Scoring findings against labels: matches, planned and negative labels, delays."""

from datetime import UTC, datetime, timedelta

from analytics.findings import Finding
from analytics.scoring import score, table

T0 = datetime(2026, 11, 2, 10, tzinfo=UTC)
MS = int(T0.timestamp() * 1000)
H = 3_600_000
B = timedelta(minutes=5)


def lab(det, start, end, planned=False, negative=False, **entities):
    return {
        "detector": det,
        "start_ms": MS + start,
        "end_ms": MS + end,
        "entities": entities,
        "planned": planned,
        "negative": negative,
    }


def f(det, start_min, minutes, severity="warning", planned=False, **entities):
    s = T0 + timedelta(minutes=start_min)
    kind = entities.pop("kind", None)
    return Finding(
        det, severity, 1.0, s, s + timedelta(minutes=minutes), entities, "x",
        type=f"{det}_{kind}" if kind else "", planned=planned,
    )  # fmt: skip


def test_hits_misses_false_positives_and_delay():
    labels = [
        lab("volume", 0, H, tenant="t1", kind="spike"),
        lab("volume", 5 * H, 6 * H, tenant="t2", kind="drop"),
    ]
    findings = [
        f("volume", 10, 20, tenant="t1", center="dc1", kind="spike"),  # detected 10 min late
        f("volume", 200, 5, tenant="t9", center="dc1", kind="spike"),  # unexplained
    ]
    s = score(findings, labels, B)["volume"]
    assert (s.labels, s.detected, s.findings, s.true_findings) == (2, 1, 2, 1)
    assert s.precision == 0.5 and s.recall == 0.5 and s.f1 == 0.5
    (row,) = table({"volume": s}, days=7)
    assert row["median_delay_min"] == 10.0 and row["false_per_day"] == round(1 / 7, 2)


def test_wrong_entity_or_detector_does_not_match():
    labels = [lab("dr_traffic", 0, H, tenant="t5", dst_center="dc3")]
    s = score(
        [f("dr_traffic", 0, 60, tenant="t6", dst_center="dc3"), f("volume", 0, 60, tenant="t5")], labels, B
    )
    assert s["dr_traffic"].detected == 0 and s["volume"].true_findings == 0


def test_planned_needs_info_and_negative_counts_false():
    labels = [
        lab("center_shift", 0, H, planned=True, tenant="t4"),
        lab("dr_traffic", 2 * H, 3 * H, negative=True, tenant="t6"),
    ]
    ok = score([f("center_shift", 0, 60, "info", tenant="t4")], labels, B)["center_shift"]
    assert ok.detected == 1 and ok.precision == 1.0
    alarm = score([f("center_shift", 0, 60, "critical", tenant="t4")], labels, B)["center_shift"]
    assert alarm.detected == 0 and alarm.precision == 0.0
    neg = score([f("dr_traffic", 125, 30, tenant="t6")], labels, B)["dr_traffic"]
    assert neg.labels == 0 and neg.findings == 1 and neg.precision == 0.0


def test_services_match_by_workload_and_tenant_prefix():
    labels = [lab("new_dependency", 0, H, tenant="tenant07", src_service="api", dst_service="cache")]
    fd = f(
        "new_dependency",
        5,
        5,
        src_service="tenant07/api",
        dst_service="tenant07/cache",
        src_center="dc1",
        dst_center="dc2",
    )
    assert score([fd], labels, B)["new_dependency"].detected == 1


def test_a_label_of_another_kind_does_not_match():
    labels = [lab("volume", 0, H, tenant="t1", kind="drop")]
    assert score([f("volume", 0, 60, tenant="t1", kind="spike")], labels, B)["volume"].detected == 0


def test_a_drill_reported_as_planned_info_is_neither_true_nor_false():
    labels = [lab("dr_traffic", 2 * H, 3 * H, negative=True, tenant="t6")]
    s = score([f("dr_traffic", 125, 30, "info", planned=True, tenant="t6")], labels, B)["dr_traffic"]
    assert s.findings == 0 and s.explained == 1


def test_labels_the_data_cannot_show_are_left_out_with_their_reason():
    labels = [
        lab("collection_gap", 0, H, exporter="192.0.2.23"),
        lab("collection_gap", 2 * H, 3 * H, exporter="x"),
    ]
    s = score([f("collection_gap", 125, 30, exporter="x")], labels, B, {0: "no such exporter"})[
        "collection_gap"
    ]
    assert (s.labels, s.detected, s.f1) == (1, 1, 1.0)
    (row,) = table({"collection_gap": s}, days=7)
    assert row["not_observable"] == ["no such exporter"]


def test_an_event_its_own_detector_cannot_see_still_explains_its_consequences():
    """A cross-center asymmetry under probe_egress is not observable as an asymmetry, but the conversation it
    injected is new all the same: the new-dependency finding it causes is neither true nor false."""
    labels = [
        lab("asymmetric_path", 2 * H, 3 * H, tenant="t8"),
        lab("new_dependency", 5 * H, 6 * H, tenant="t7"),
    ]
    found = [f("new_dependency", 120, 5, tenant="t8"), f("new_dependency", 300, 5, tenant="t7")]
    s = score(found, labels, B, {0: "same records whichever path"})
    assert (s["new_dependency"].findings, s["new_dependency"].explained, s["new_dependency"].f1) == (
        1,
        1,
        1.0,
    )
    assert s["asymmetric_path"].labels == 0
    unrelated = score([f("new_dependency", 120, 5, tenant="t9")], labels[:1], B, {0: "n/o"})
    assert unrelated["new_dependency"].findings == 1  # another tenant: still a false finding


def test_an_event_left_out_as_thin_but_found_anyway_is_neither_true_nor_false():
    """An asymmetric path with too few sampled packets to count on is left out of the scores; its detector
    finding it all the same reports a real event (not a false one), and finding something else is false."""
    labels = [lab("asymmetric_path", 2 * H, 3 * H, tenant="t8")]
    thin = {0: "too few sampled packets"}
    s = score([f("asymmetric_path", 130, 60, tenant="t8")], labels, B, thin)["asymmetric_path"]
    assert (s.labels, s.findings, s.explained) == (0, 0, 1)
    s = score([f("asymmetric_path", 130, 60, tenant="t9")], labels, B, thin)["asymmetric_path"]
    assert (s.labels, s.findings, s.explained) == (0, 1, 0)
