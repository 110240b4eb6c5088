"""Each detector on small crafted series: it fires where it must, stays quiet where it must not,
and neither crashes nor invents findings on empty or partial data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from analytics.baseline import ewma_baseline, seasonal
from analytics.config import (
    DependencyConfig,
    DrTrafficConfig,
    ElephantConfig,
    FanoutConfig,
    GapConfig,
    ShiftConfig,
    VolumeConfig,
    Window,
)
from analytics.detectors import (
    detect_asymmetric,
    detect_center_shift,
    detect_dr_traffic,
    detect_elephants,
    detect_fanout,
    detect_gaps,
    detect_new_dependencies,
    detect_volume,
)
from analytics.findings import Finding

HOUR = timedelta(hours=1)
T0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday


def diurnal(weeks: int, seed: int = 0, base: float = 5e7) -> pd.Series:
    """Hourly bytes with a day/night cycle, a quieter weekend and 5 % noise."""
    idx = pd.date_range(T0, periods=weeks * 168, freq="h", tz="UTC")
    rng = np.random.default_rng(seed)
    day = 1 + 0.8 * np.sin((idx.hour.to_numpy() - 6) / 24 * 2 * np.pi)
    weekend = np.where(idx.day_of_week.to_numpy() >= 5, 0.5, 1.0)
    return pd.Series(base * day * weekend * rng.normal(1, 0.05, len(idx)), index=idx)


def split(series: pd.Series, at: int):
    return series.iloc[:at], series.iloc[at:]


# --- volume ---------------------------------------------------------------------------------


def test_volume_spike_and_drop_found_where_injected():
    s = diurnal(5)
    history, window = split(s, 4 * 168)
    window = window.copy()
    window.iloc[30:33] *= 8  # a three-hour spike
    window.iloc[100] *= 0.02  # a one-hour drop
    found = detect_volume(window, history, {"tenant": "retail"}, VolumeConfig(min_expected=1e6), HOUR)
    kinds = {(f.entities["kind"], f.window_start, f.window_end) for f in found}
    assert kinds == {
        ("spike", window.index[30].to_pydatetime(), window.index[33].to_pydatetime()),
        ("drop", window.index[100].to_pydatetime(), window.index[101].to_pydatetime()),
    }


def test_volume_quiet_on_normal_week_and_weekend():
    s = diurnal(5, seed=3)
    history, window = split(s, 4 * 168)
    assert detect_volume(window, history, {}, VolumeConfig(), HOUR) == []


def test_volume_drop_suppressed_by_collection_gap():
    s = diurnal(5)
    history, window = split(s, 4 * 168)
    window = window.copy()
    window.iloc[50:52] = 0
    gap = pd.Series(False, index=window.index)
    gap.iloc[50:52] = True
    assert detect_volume(window, history, {}, VolumeConfig(), HOUR, suppressed=gap) == []
    assert len(detect_volume(window, history, {}, VolumeConfig(), HOUR)) == 1


def test_volume_warm_up_and_empty():
    s = diurnal(2)
    history, window = split(s, 168 + 100)  # too little history for most slots: not judged
    window = window.copy() * 10
    assert detect_volume(window, history.iloc[:10], {}, VolumeConfig(), HOUR) == []
    assert detect_volume(pd.Series(dtype=float), history, {}, VolumeConfig(), HOUR) == []


def test_baseline_falls_back_to_hour_of_day_by_day_type():
    s = diurnal(1)
    exp = seasonal(s.iloc[:96], pd.DatetimeIndex(s.index[96:106]), min_history=3)  # Mon-Thu judge Friday
    assert (exp.support == 4).all()  # support counts days, not buckets
    weekend = seasonal(s.iloc[:120], pd.DatetimeIndex(s.index[120:130]), min_history=3)
    assert (weekend.support == 0).all()  # weekdays never judge a Saturday


# --- center shift ---------------------------------------------------------------------------


def pair(weeks=5, share=0.5):
    total = diurnal(weeks)
    return pd.DataFrame({"dc1": total * share, "dc2": total * (1 - share)})


@pytest.mark.parametrize(
    "windows, severity, planned",
    [
        ((), "critical", False),
        ((Window(start=T0, end=T0 + timedelta(weeks=10), kind="maintenance"),), "info", True),
    ],
)
def test_center_shift_failover(windows, severity, planned):
    df = pair()
    history, window = df.iloc[: 4 * 168], df.iloc[4 * 168 :].copy()
    window.iloc[10:14, 0] *= 0.02  # dc1 fails: dc2 takes its traffic
    window.iloc[10:14, 1] *= 1.98
    (f,) = detect_center_shift(window, history, {"tenant": "retail"}, ShiftConfig(), HOUR, windows)
    assert f.entities["kind"] == "failover" and f.entities["away_from"] == "dc1"
    assert f.severity == severity and bool(f.evidence["planned"]) is planned
    assert f.window_start == window.index[10].to_pydatetime()


def test_center_shift_quiet_when_balanced():
    df = pair()
    assert detect_center_shift(df.iloc[4 * 168 :], df.iloc[: 4 * 168], {}, ShiftConfig(), HOUR) == []
    assert detect_center_shift(pd.DataFrame(), pd.DataFrame(), {}, ShiftConfig(), HOUR) == []


# --- DR traffic -----------------------------------------------------------------------------


def dr_rows(times, src="dc1", dst="dc3", zone="production", nbytes=1e7):
    return pd.DataFrame(
        {
            "time": times,
            "src_center": src,
            "dst_center": dst,
            "src_zone": zone,
            "dst_zone": zone,
            "tenant": "retail",
            "bytes": nbytes,
        }
    )


def test_dr_traffic_outside_drill():
    times = pd.date_range(T0, periods=4, freq="h", tz="UTC")
    (f,) = detect_dr_traffic(dr_rows(times), DrTrafficConfig(), HOUR)
    assert f.entities == {"src_center": "dc1", "dst_center": "dc3", "tenant": "retail"}
    assert f.window_end == (times[-1] + HOUR).to_pydatetime()


def test_dr_traffic_during_drill_and_non_production_is_fine():
    times = pd.date_range(T0, periods=4, freq="h", tz="UTC")
    drill = (Window(start=T0, end=T0 + 4 * HOUR, kind="dr_drill", centers=("dc3",)),)
    assert detect_dr_traffic(dr_rows(times), DrTrafficConfig(), HOUR, drill) == []
    assert detect_dr_traffic(dr_rows(times, zone="test"), DrTrafficConfig(), HOUR) == []
    assert detect_dr_traffic(dr_rows(times, dst="dc2"), DrTrafficConfig(), HOUR) == []
    assert detect_dr_traffic(dr_rows(times[:0]), DrTrafficConfig(), HOUR) == []


# --- new dependency -------------------------------------------------------------------------


def test_new_cross_center_dependency():
    cur = pd.DataFrame(
        {
            "src_service": ["web", "web", "batch"],
            "dst_service": ["db", "cache", "db"],
            "src_center": ["dc1", "dc1", "dc2"],
            "dst_center": ["dc2", "dc1", "dc2"],
            "bytes": [1e6, 1e6, 1e6],
            "first_seen": [T0, T0, T0],
        }
    )
    known = {("web", "db", "dc1", "dc2")}
    assert detect_new_dependencies(cur, known, DependencyConfig(), (T0, T0 + HOUR)) == []
    (f,) = detect_new_dependencies(cur, set(), DependencyConfig(), (T0, T0 + HOUR))
    assert f.entities == {"src_service": "web", "dst_service": "db", "src_center": "dc1", "dst_center": "dc2"}


# --- asymmetric paths -----------------------------------------------------------------------


def conv(rows):
    return pd.DataFrame(
        rows, columns=["src", "dst", "proto", "src_port", "dst_port", "exporter_center", "bytes"]
    )


def test_asymmetric_path():
    c = conv(
        [
            ("10.0.0.1", "10.1.0.1", 6, 40000, 443, "dc1", 100),
            ("10.1.0.1", "10.0.0.1", 6, 443, 40000, "dc2", 50),
        ]
    )
    (f,) = detect_asymmetric(c, (T0, T0 + HOUR))
    assert f.evidence == {"forward_centers": ["dc1"], "reverse_centers": ["dc2"]}
    sym = conv(
        [
            ("10.0.0.1", "10.1.0.1", 6, 40000, 443, "dc1", 100),
            ("10.1.0.1", "10.0.0.1", 6, 443, 40000, "dc1", 50),
        ]
    )
    assert detect_asymmetric(sym, (T0, T0 + HOUR)) == []
    one_way = conv([("10.0.0.1", "10.1.0.1", 17, 5000, 53, "dc1", 100)])
    assert detect_asymmetric(one_way, (T0, T0 + HOUR)) == []


# --- fan-out --------------------------------------------------------------------------------


def test_fanout_scan_and_usual_busy_source():
    cur = pd.DataFrame(
        {"src": ["10.0.0.9", "10.0.0.5"], "distinct_dst": [3, 400], "distinct_ports": [900, 2]}
    )
    usual = pd.Series({"10.0.0.5": 350.0})  # a monitoring box that always talks to many hosts
    (f,) = detect_fanout(cur, usual, FanoutConfig(), (T0, T0 + HOUR))
    assert f.entities == {"src": "10.0.0.9", "kind": "port_scan"}


# --- elephants ------------------------------------------------------------------------------


def test_elephant_against_capacity():
    times = pd.date_range(T0, periods=3, freq="h", tz="UTC")
    usage = pd.DataFrame(
        {"time": times, "src_center": "dc1", "dst_center": "dc2", "bytes": [1e12, 4.0e12, 1e12]}
    )
    cfg = ElephantConfig(link_capacity_bps={"dc2-dc1": 10e9})
    (f,) = detect_elephants(usage, cfg, HOUR)
    assert f.window_start == times[1].to_pydatetime() and f.score == pytest.approx(
        4e12 * 8 / 3600 / 10e9, rel=1e-3
    )
    assert detect_elephants(usage, ElephantConfig(), HOUR) == []  # no capacity configured: nothing to judge


# --- collection gaps ------------------------------------------------------------------------


def test_gaps_silent_and_lossy():
    window = pd.date_range(T0, periods=12, freq="5min", tz="UTC")
    rows = [{"time": t, "exporter": "node-1", "flows": 10, "datagrams": 10, "lost": 0} for t in window]
    rows += [
        {"time": t, "exporter": "node-2", "flows": 10, "datagrams": 10, "lost": 5 if i == 3 else 0}
        for i, t in enumerate(window)
        if not 6 <= i < 10
    ]
    findings, gaps = detect_gaps(
        pd.DataFrame(rows),
        ["node-1", "node-2", "node-3"],
        window,
        GapConfig(silent_after_s=600),
        timedelta(minutes=5),
    )
    got = sorted((f.entities["exporter"], f.entities["kind"], f.window_start) for f in findings)
    assert got == [
        ("node-2", "loss", window[3].to_pydatetime()),
        ("node-2", "silent", window[6].to_pydatetime()),
        ("node-3", "silent", window[0].to_pydatetime()),
    ]
    assert not gaps["node-1"].any() and gaps["node-2"].sum() == 5 and gaps["node-3"].all()


# --- findings -------------------------------------------------------------------------------


def test_finding_id_is_stable_and_entity_sensitive():
    a = Finding("volume", "warning", 1.0, T0, T0 + HOUR, {"tenant": "x"}, "s")
    b = Finding("volume", "warning", 9.0, T0, T0 + HOUR, {"tenant": "x"}, "other text")
    c = Finding("volume", "warning", 1.0, T0, T0 + HOUR, {"tenant": "y"}, "s")
    assert a.id == b.id != c.id
    assert a.to_json()["window_start"] == "2026-11-02T00:00:00Z"
    with pytest.raises(ValueError):
        Finding("volume", "bad", 1.0, T0, T0, {}, "s")


def test_ewma_reference_flags_big_outliers():
    s = diurnal(1)
    s.iloc[100] *= 20
    assert ewma_baseline(s).iloc[100]
