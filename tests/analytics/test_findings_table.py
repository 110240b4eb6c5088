"""The findings table on real chdb: reruns of a window update findings instead of duplicating them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analytics import findings_table as fstore
from analytics.findings import Finding

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def findings(score):
    return [
        Finding(
            "volume",
            "warning",
            score,
            T0,
            T0 + timedelta(hours=1),
            {"tenant": "a", "kind": "spike"},
            "x",
            {"observed": [1.0]},
        ),
        Finding(
            "dr_traffic",
            "critical",
            score,
            T0 + timedelta(hours=2),
            T0 + timedelta(hours=3),
            {"tenant": "b"},
            "y",
        ),
    ]


def test_rerun_updates_not_duplicates(store):
    assert fstore.save(store.query_arrow, "netobs", findings(1.0)) == 2
    fstore.save(store.query_arrow, "netobs", findings(7.0))  # the same window analysed again
    t = fstore.load(store.query_arrow, "netobs", "2026-11-01 00:00:00", "2026-11-03 00:00:00")
    assert t.num_rows == 2
    assert sorted(t.column("score").to_pylist()) == [7.0, 7.0]
    assert dict(t.column("entities")[0].as_py()) in ({"tenant": "a", "kind": "spike"}, {"tenant": "b"})


def test_window_overlap_filter_and_empty(store):
    assert fstore.save(store.query_arrow, "netobs", []) == 0
    fstore.save(store.query_arrow, "netobs", findings(1.0))
    t = fstore.load(store.query_arrow, "netobs", "2026-11-02 02:30:00", "2026-11-02 05:00:00")
    assert t.column("detector").to_pylist() == ["dr_traffic"]
