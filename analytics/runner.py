"""Run every detector over a window: query the model, apply the detectors, correlate, save.

Correlation keeps the NOC's view clean: a volume drop explained by a collection gap (the
exporters of that center were silent) or by a center shift (the tenant failed over) is not
reported again as a volume anomaly.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pandas as pd
import pyarrow as pa

from analytics import model
from analytics.config import AnalyticsConfig
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

Query = Callable[[str], pa.Table]


def _df(query: Query, sql: str) -> pd.DataFrame:
    df = query(sql).to_pandas()
    if "t" in df:
        df["t"] = pd.to_datetime(df["t"], utc=True)
    return df


class Analysis:
    """One analysis of [start, end) against ``history_days`` of history before it."""

    def __init__(
        self,
        query: Query,
        db: str,
        cfg: AnalyticsConfig,
        start: datetime,
        end: datetime,
        history_days: int = 28,
    ):
        self.q, self.db, self.cfg = query, db, cfg
        self.start, self.end = start, end
        self.h_start = start - timedelta(days=history_days)
        self.bucket = timedelta(seconds=cfg.bucket_s)
        self.index = pd.date_range(start, end, freq=self.bucket, inclusive="left", tz="UTC")

    def series(self, keys: tuple[str, ...], history: bool) -> pd.DataFrame:
        lo, hi = (self.h_start, self.start) if history else (self.start, self.end)
        return _df(self.q, model.rollup_series(self.db, lo, hi, self.cfg.bucket_s, keys))

    def run(self) -> list[Finding]:
        gap_findings, center_gaps = self.gaps()
        shifts = self.shifts()
        out = gap_findings + shifts
        out += self.volumes(center_gaps, shifts)
        out += self.dr_traffic()
        out += self.dependencies()
        out += self.asymmetry()
        out += self.fanout()
        out += self.elephants()
        return out

    # --- detectors ------------------------------------------------------------------------

    def gaps(self) -> tuple[list[Finding], dict[str, pd.Series]]:
        hist = _df(self.q, model.exporter_activity(self.db, self.h_start, self.end, self.cfg.bucket_s))
        if hist.empty:
            return [], {}
        expected = sorted(hist.loc[hist["t"] < pd.Timestamp(self.start), "exporter"].unique())
        health = hist[hist["t"] >= pd.Timestamp(self.start)].rename(columns={"t": "time"})
        health = health.assign(datagrams=health["flows"], lost=0)
        findings, gaps = detect_gaps(health, expected, self.index, self.cfg.gaps, self.bucket)
        centers = _df(self.q, model.exporter_centers(self.db, self.h_start, self.end))
        center_of = dict(zip(centers["exporter"], centers["center"], strict=True))
        by_center: dict[str, pd.Series] = {}
        for exporter, mask in gaps.items():
            c = center_of.get(exporter, "")
            by_center[c] = by_center.get(c, pd.Series(False, index=self.index)) | mask
        for f in findings:
            f.entities.setdefault("center", center_of.get(f.entities["exporter"], ""))
        return findings, by_center

    def volumes(self, center_gaps: dict[str, pd.Series], shifts: list[Finding]) -> list[Finding]:
        keys = ("src_tenant", "src_center")
        now, hist = self.series(keys, False), self.series(keys, True)
        out = []
        for (tenant, center), g in now.groupby(list(keys)):
            if not tenant or not center:
                continue
            observed = g.set_index("t")["bytes"].astype(float).reindex(self.index, fill_value=0.0)
            h = (
                hist[(hist["src_tenant"] == tenant) & (hist["src_center"] == center)]
                .set_index("t")["bytes"]
                .astype(float)
            )
            suppressed = center_gaps.get(center, pd.Series(False, index=self.index)).copy()
            for s in shifts:
                if s.entities.get("tenant") == tenant:
                    suppressed |= (self.index >= pd.Timestamp(s.window_start)) & (
                        self.index < pd.Timestamp(s.window_end)
                    )
            found = detect_volume(
                observed, h, {"tenant": tenant, "center": center}, self.cfg.volume, self.bucket, suppressed
            )
            out += [f for f in found if not (f.entities["kind"] == "spike" and _within(f, shifts, tenant))]
        return out

    def shifts(self) -> list[Finding]:
        a, b = self.cfg.shift.production_centers
        keys = ("src_tenant", "src_center")
        now, hist = self.series(keys, False), self.series(keys, True)
        out = []
        for tenant, g in now.groupby("src_tenant"):
            if not tenant:
                continue
            obs = (
                g.pivot_table(index="t", columns="src_center", values="bytes", aggfunc="sum")
                .reindex(self.index)
                .fillna(0)
            )
            h = hist[hist["src_tenant"] == tenant].pivot_table(
                index="t", columns="src_center", values="bytes", aggfunc="sum"
            )
            if a not in h or b not in h:
                continue
            for c in (a, b):
                if c not in obs:
                    obs[c] = 0.0
            out += detect_center_shift(
                obs, h.fillna(0), {"tenant": tenant}, self.cfg.shift, self.bucket, self.cfg.windows
            )
        return out

    def dr_traffic(self) -> list[Finding]:
        keys = ("src_center", "dst_center", "src_zone", "dst_zone", "src_tenant")
        df = self.series(keys, False).rename(columns={"t": "time", "src_tenant": "tenant"})
        return detect_dr_traffic(df, self.cfg.dr_traffic, self.bucket, self.cfg.windows)

    def dependencies(self) -> list[Finding]:
        known = _df(self.q, model.service_pairs(self.db, self.h_start, self.start))
        cols = ["src_service", "dst_service", "src_center", "dst_center"]
        baseline = set(map(tuple, known[cols].to_numpy())) if not known.empty else set()
        cur = _df(self.q, model.service_pairs(self.db, self.start, self.end, self.cfg.bucket_s))
        out: list[Finding] = []
        for t, g in cur.groupby("t") if not cur.empty else []:
            found = detect_new_dependencies(g, baseline, self.cfg.dependency, self._window(t))
            out += found
            baseline |= {tuple(f.entities[k] for k in cols) for f in found}  # report a new pair once
        return out

    def asymmetry(self) -> list[Finding]:
        cur = _df(
            self.q, model.conversations_by_exporter_center(self.db, self.start, self.end, self.cfg.bucket_s)
        )
        out: list[Finding] = []
        for t, g in cur.groupby("t") if not cur.empty else []:
            out += detect_asymmetric(g, self._window(t))
        return out

    def _window(self, t: pd.Timestamp) -> tuple[datetime, datetime]:
        return t.to_pydatetime(), (t + self.bucket).to_pydatetime()

    def fanout(self) -> list[Finding]:
        cfg = self.cfg.fanout
        cur = _df(self.q, model.fanout(self.db, self.start, self.end, self.cfg.bucket_s, cfg.min_distinct))
        if cur.empty:
            return []
        usual = _df(self.q, model.usual_fanout(self.db, self.h_start, self.start, self.cfg.bucket_s))
        usual_s = (
            pd.Series(usual["usual"].to_numpy(dtype=float), index=usual["src"])
            if not usual.empty
            else pd.Series(dtype=float)
        )
        out = []
        for t, g in cur.groupby("t"):
            out += detect_fanout(g, usual_s, cfg, self._window(t))
        return out

    def elephants(self) -> list[Finding]:
        if not self.cfg.elephant.link_capacity_bps:
            return []
        usage = self.series(("src_center", "dst_center"), False).rename(columns={"t": "time"})
        top = _df(self.q, model.top_flows(self.db, self.start, self.end))
        return detect_elephants(usage, self.cfg.elephant, self.bucket, top)


def _within(f: Finding, shifts: list[Finding], tenant: str) -> bool:
    return any(
        s.entities.get("tenant") == tenant and s.window_start <= f.window_start < s.window_end for s in shifts
    )
