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
    Window,
)
from analytics.detectors import (
    detect_center_shift,
    detect_dr_traffic,
    detect_elephants,
    detect_fanout,
    detect_gaps,
    detect_new_dependencies,
)
from analytics.detectors.dr_traffic import known_kinds
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


# Volume: see tests/analytics/test_volume_log.py (log-space, multi-scale, sampled series).


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
    assert f.type == "center_failover" and f.entities["away_from"] == "dc1"
    assert f.severity == severity
    assert f.window_start == window.index[10].to_pydatetime()


def test_center_shift_quiet_when_balanced():
    df = pair()
    assert detect_center_shift(df.iloc[4 * 168 :], df.iloc[: 4 * 168], {}, ShiftConfig(), HOUR) == []
    assert detect_center_shift(pd.DataFrame(), pd.DataFrame(), {}, ShiftConfig(), HOUR) == []


def thin_pair(rng):
    """Scaled bytes and sampled packets per hour of a thin tenant at 1:1000 (packets of 600 and 1200
    bytes), five weeks; dc1 fails over to dc2 for four hours in the last week."""
    idx = pd.date_range(T0, periods=5 * 168, freq="h", tz="UTC")
    day = 1 + 0.8 * np.sin((idx.hour.to_numpy() - 6) / 24 * 2 * np.pi)
    weekend = np.where(idx.day_of_week.to_numpy() >= 5, 0.5, 1.0)
    rate = rng.uniform(20, 40) * day * weekend  # sampled packets an hour per center and packet size
    small, large = rng.poisson(rate, (2, len(idx))), rng.poisson(rate, (2, len(idx)))
    fail = slice(4 * 168 + 34, 4 * 168 + 38)
    for n in (small, large):
        n[1, fail] += n[0, fail]
        n[0, fail] = 0
    sampled = pd.DataFrame({"dc1": small[0] + large[0], "dc2": small[1] + large[1]}, index=idx).astype(float)
    nbytes = pd.DataFrame({c: (small[i] * 600 + large[i] * 1200) * 1000.0 for i, c in enumerate(("dc1", "dc2"))},
                          index=idx)  # fmt: skip
    return nbytes, sampled


def test_center_shift_a_thin_tenants_sampled_share_is_no_shift_a_failover_is():
    """A few dozen sampled packets an hour: the share of the pair swings by a quarter by chance, which
    is no shift; the failover (everything to dc2) is one."""
    seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"seed {seed}")
    nbytes, sampled = thin_pair(np.random.default_rng(seed))
    cut = 4 * 168
    got = detect_center_shift(nbytes.iloc[cut:], nbytes.iloc[:cut], {}, ShiftConfig(), HOUR, (), None,
                              sampled.iloc[cut:])  # fmt: skip
    fail = (nbytes.index[cut + 34], nbytes.index[cut + 38])
    assert got and all(fail[0] <= f.window_start < f.window_end <= fail[1] for f in got), got  # nothing else
    assert {f.entities["away_from"] for f in got} == {"dc1"} and got[0].window_start == fail[0], got


def test_center_shift_a_night_tenant_of_a_few_packets_is_no_shift():
    """A tenant 100 times thinner (a packet or two an hour per center at night): its baseline share is
    itself a few packets, 0 % or 100 % at night, and a move from it is no evidence; judged under the share
    pooled from the bucket and its baseline, the week is quiet. A failover of a fat tenant is still found
    (test above and test_center_shift_failover)."""
    seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    idx = pd.date_range(T0, periods=5 * 168, freq="h", tz="UTC")
    day = 1 + 0.9 * np.sin((idx.hour.to_numpy() - 6) / 24 * 2 * np.pi)
    rate = rng.uniform(0.3, 1.5) * day
    small, large = rng.poisson(rate, (2, len(idx))), rng.poisson(rate, (2, len(idx)))
    sampled = pd.DataFrame({"dc1": small[0] + large[0], "dc2": small[1] + large[1]}, index=idx).astype(float)
    nbytes = pd.DataFrame({c: (small[i] * 600 + large[i] * 1200) * 1000.0 for i, c in enumerate(("dc1", "dc2"))},
                          index=idx)  # fmt: skip
    cut = 4 * 168
    cfg = ShiftConfig(min_volume=0)
    got = detect_center_shift(nbytes.iloc[cut:], nbytes.iloc[:cut], {}, cfg, HOUR, (), None,
                              sampled.iloc[cut:])  # fmt: skip
    assert got == [], (seed, [(f.window_start, f.summary) for f in got])


def noisy_day_pair(rng):
    """Eight days of a fat tenant at 1:1000: hundreds of sampled packets an hour per center, each center's
    traffic with noise of its own (log-normal, sigma 0.06 an hour); dc1 fails over to dc2 for two hours on
    the fourth day analysed."""
    idx = pd.date_range(T0, periods=8 * 24, freq="h", tz="UTC")
    day = 1 + 0.8 * np.sin((idx.hour.to_numpy() - 6) / 24 * 2 * np.pi)
    rate = rng.uniform(300, 600) * day * rng.lognormal(0, 0.06, (2, len(idx)))
    n = rng.poisson(rate).astype(float)
    fail = slice(24 + 3 * 24 + 10, 24 + 3 * 24 + 12)
    n[1, fail] += n[0, fail]
    n[0, fail] = 0
    sampled = pd.DataFrame({"dc1": n[0], "dc2": n[1]}, index=idx)
    return sampled * 900_000.0, sampled, (idx[fail][0], idx[fail][-1] + HOUR)


def test_center_shift_a_day_of_history_and_traffic_noise_is_no_shift():
    """One day of history, and each center's traffic with noise of its own beside the sampling: the week
    is quiet but for the failover, found from its first hour."""
    seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"seed {seed}")
    nbytes, sampled, (start, end) = noisy_day_pair(np.random.default_rng(seed))
    got = detect_center_shift(nbytes.iloc[24:], nbytes.iloc[:24], {}, ShiftConfig(), HOUR, (), None,
                              sampled.iloc[24:])  # fmt: skip
    assert [(f.window_start, f.window_end, f.entities["away_from"]) for f in got] == [
        (start.to_pydatetime(), end.to_pydatetime(), "dc1")
    ], (seed, [(f.window_start, f.summary) for f in got])


def test_center_shift_a_baseline_of_one_day_is_as_uncertain_as_the_bucket():
    """A share of 128 sampled packets moves from 64 % (the one day of history at that hour, itself 128
    packets) to 36 %: 4.6 standard errors of the difference of two such shares, no shift at min_z 5. (Taken
    as the median of three or more days, the baseline would leave 5.3 and a shift.)"""
    idx = pd.date_range(T0, periods=8 * 24, freq="h", tz="UTC")
    sampled = pd.DataFrame({"dc1": 64.0, "dc2": 64.0}, index=idx)
    sampled.iloc[23] = (82.5, 45.5)  # the history's hour 23: 64 %
    sampled.iloc[24 + 2 * 24 + 23] = (45.5, 82.5)  # the same hour two days later: 36 %
    nbytes = sampled * 1_000_000.0
    got = detect_center_shift(nbytes.iloc[24:], nbytes.iloc[:24], {}, ShiftConfig(), HOUR, (), None,
                              sampled.iloc[24:])  # fmt: skip
    assert got == [], [(f.window_start, f.summary) for f in got]
    # with more packets behind the same move it is one
    got = detect_center_shift(nbytes.iloc[24:], nbytes.iloc[:24], {}, ShiftConfig(), HOUR, (), None,
                              sampled.iloc[24:] * 4)  # fmt: skip
    assert [f.window_start for f in got] == [idx[24 + 2 * 24 + 23].to_pydatetime()], got


# --- DR traffic -----------------------------------------------------------------------------


def dr_rows(times, client_workload="api", workload="db", zone="production", nbytes=1e7):
    return pd.DataFrame(
        {
            "t": times,
            "client_center": "dc1",
            "server_center": "dc3",
            "client_zone": zone,
            "server_zone": zone,
            "tenant": "retail",
            "workload": workload,
            "client_workload": client_workload,
            "port": "5432",
            "proto": "6",
            "bytes": nbytes,
            "sampled": 50.0,
        }
    )


def test_dr_traffic_new_kind_named_by_the_service():
    times = pd.date_range(T0, periods=4, freq="h", tz="UTC")
    (f,) = detect_dr_traffic(dr_rows(times), set(), DrTrafficConfig(), HOUR)
    assert f.type == "dr_traffic_new"
    assert f.entities == {
        "tenant": "retail", "workload": "db", "src_center": "dc1", "dst_center": "dc3", "port": "5432",
        "proto": "6", "client_workload": "api",
    }  # fmt: skip
    assert f.window_end == (times[-1] + HOUR).to_pydatetime()


def test_dr_replication_known_from_history_and_non_production_are_normal():
    times = pd.date_range(T0, periods=4, freq="h", tz="UTC")
    history = dr_rows(times, client_workload="db").drop(columns="t").assign(days=5)
    known = known_kinds(history, 1)
    assert detect_dr_traffic(dr_rows(times, client_workload="db"), known, DrTrafficConfig(), HOUR) == []
    # a new kind beside the known replication (the api reaching the standby database) is not normal
    (f,) = detect_dr_traffic(dr_rows(times), known, DrTrafficConfig(), HOUR)
    assert f.entities["client_workload"] == "api"
    assert detect_dr_traffic(dr_rows(times, zone="test"), set(), DrTrafficConfig(), HOUR) == []
    assert detect_dr_traffic(dr_rows(times[:0]), set(), DrTrafficConfig(), HOUR) == []
    assert known_kinds(history, 6) == set()  # seen on fewer days than needed: not yet a baseline


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
    assert f.entities == {
        "src_service": "web", "dst_service": "db", "src_center": "dc1", "dst_center": "dc2", "tenant": "db",
        "workload": "",
    }  # fmt: skip


# Asymmetric paths: see tests/analytics/test_asymmetry.py.


# --- fan-out --------------------------------------------------------------------------------


def test_fanout_scan_and_usual_busy_source():
    cur = pd.DataFrame(
        {"src": ["10.0.0.9", "10.0.0.5"], "distinct_dst": [3, 400], "distinct_ports": [900, 2]}
    )
    usual = pd.Series({"10.0.0.5": 350.0})  # a monitoring box that always talks to many hosts
    (f,) = detect_fanout(cur, usual, FanoutConfig(), (T0, T0 + HOUR))
    assert f.type == "port_scan" and f.entities["src"] == "10.0.0.9" and f.entities["scale"] == "5m"


def test_fanout_slow_scan_needs_the_longer_scale():
    cur = pd.DataFrame({"src": ["10.0.0.9"], "distinct_dst": [3], "distinct_ports": [240]})
    assert detect_fanout(cur, pd.Series(dtype=float), FanoutConfig(min_distinct=300), (T0, T0 + HOUR)) == []
    (f,) = detect_fanout(cur, pd.Series(dtype=float), FanoutConfig(), (T0, T0 + HOUR), 150, "1h")
    assert f.entities["scale"] == "1h"


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
    got = sorted((f.entities["exporter"], f.type, f.window_start) for f in findings)
    assert got == [
        ("node-2", "collection_gap_loss", window[3].to_pydatetime()),
        ("node-2", "collection_gap_silent", window[6].to_pydatetime()),
        ("node-3", "collection_gap_silent", window[0].to_pydatetime()),
    ]
    assert not gaps["node-1"].any() and gaps["node-2"].sum() == 5 and gaps["node-3"].all()


@pytest.mark.parametrize("per_event", [1, 2])
def test_gaps_a_thin_exporter_silent_by_chance_is_no_gap_a_long_silence_is(per_event):
    """sFlow at 1:1000 on a quiet node sends a datagram every few minutes (Poisson): empty buckets
    are chance, not a gap; six silent hours of the same exporter, or an hour of a busy one, are.
    ``per_event`` 2: OVS bridge IPFIX reports each sampled flow at ingress and at egress, so its
    records come in pairs (half as many independent events as records)."""
    seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    window = pd.date_range(T0, periods=7 * 288, freq="5min", tz="UTC")
    day = 1 + 0.8 * np.sin(np.arange(len(window)) / 288 * 2 * np.pi)
    thin = per_event * rng.poisson(rng.uniform(0.5, 1.5) * day)
    busy = rng.poisson(20, len(window))
    thin[1500:1572], busy[1000:1012] = 0, 0  # six hours by day, one hour
    rows = [{"time": t, "exporter": e, "flows": int(n), "datagrams": int(n), "lost": 0}
            for e, counts in (("thin", thin), ("busy", busy)) for t, n in zip(window, counts, strict=True) if n]  # fmt: skip
    findings, gaps = detect_gaps(
        pd.DataFrame(rows), ["thin", "busy"], window, GapConfig(), timedelta(minutes=5)
    )
    got = sorted((f.entities["exporter"], f.window_start, f.window_end) for f in findings)
    assert [g[0] for g in got] == ["busy", "thin"], got
    assert got[0][1:] == (window[1000].to_pydatetime(), window[1012].to_pydatetime())
    # the thin exporter's chance empty buckets next to the silence join it (at most a couple of hours)
    assert window[1476] <= got[1][1] <= window[1500] and window[1572] <= got[1][2] <= window[1596], got
    assert 72 <= gaps["thin"].sum() <= 120 and gaps["busy"].sum() == 12


def test_gaps_cold_start_judges_a_new_exporter_from_its_first_record():
    window = pd.date_range(T0, periods=12, freq="5min", tz="UTC")
    rows = [{"time": t, "exporter": "new", "flows": 1, "datagrams": 1, "lost": 0} for t in window[6:]]
    findings, _ = detect_gaps(
        pd.DataFrame(rows), ["new"], window, GapConfig(silent_after_s=600), timedelta(minutes=5),
        {"new": window[6]},
    )  # fmt: skip
    assert findings == []


# --- findings -------------------------------------------------------------------------------


def test_finding_id_is_stable_and_entity_sensitive():
    a = Finding("volume", "warning", 1.0, T0, T0 + HOUR, {"tenant": "x"}, "s")
    b = Finding("volume", "warning", 9.0, T0, T0 + HOUR, {"tenant": "x"}, "other text")
    c = Finding("volume", "warning", 1.0, T0, T0 + HOUR, {"tenant": "y"}, "s")
    d = Finding("volume", "warning", 1.0, T0, T0 + HOUR, {"tenant": "x"}, "s", type="volume_drop")
    assert a.id == b.id != c.id != d.id
    assert a.to_json()["start"] == "2026-11-02T00:00:00Z" and a.type == "volume"
    with pytest.raises(ValueError):
        Finding("volume", "bad", 1.0, T0, T0, {}, "s")


def test_ewma_reference_flags_big_outliers():
    s = diurnal(1)
    s.iloc[100] *= 20
    assert ewma_baseline(s).iloc[100]


@pytest.mark.parametrize("takeover", [0.3, 0.45])
def test_center_shift_a_failover_that_loses_part_of_the_traffic_is_one(takeover):
    """dc1 fails and dc2 takes over only part of its traffic (clients that give up during the failover;
    a 14-day scenario bank's night failover moved 46 % of it): the pair is on one center, a failover. A
    drop in dc1 alone (dc2 as usual) is still no shift."""
    df = pair()
    history, window = df.iloc[: 4 * 168], df.iloc[4 * 168 :].copy()
    lost = window.iloc[10:14, 0].copy()
    window.iloc[10:14, 0] *= 0.02
    alone = window.copy()
    window.iloc[10:14, 1] += takeover * lost * 0.98
    (f,) = detect_center_shift(window, history, {"tenant": "retail"}, ShiftConfig(), HOUR)
    assert f.type == "center_failover" and f.entities["away_from"] == "dc1"
    assert f.window_start == window.index[10].to_pydatetime()
    assert detect_center_shift(alone, history, {"tenant": "retail"}, ShiftConfig(), HOUR) == []
