"""Run every detector over a window: query the model, apply the detectors, correlate, save.

Correlation keeps the NOC's view clean: a volume drop explained by a collection gap (the
exporters of that center were silent) or by a center shift (the tenant failed over) is not
reported again as a volume anomaly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import pandas as pd
import pyarrow as pa

from analytics import model
from analytics.baseline import ewma_baseline
from analytics.config import AnalyticsConfig
from analytics.detectors import (
    detect_asymmetric,
    detect_center_shift,
    detect_dns_tunnelling,
    detect_dr_traffic,
    detect_elephants,
    detect_fanout,
    detect_gaps,
    detect_new_dependencies,
    detect_volume,
)
from analytics.detectors._common import runs
from analytics.findings import Finding

Query = Callable[[str], pa.Table]


def _df(query: Query, sql: str) -> pd.DataFrame:
    df = query(sql).to_pandas()
    if "t" in df:
        # chdb hands DateTime columns to Arrow as uint32 seconds; a server store as timestamps.
        unit = "s" if pd.api.types.is_integer_dtype(df["t"]) else None
        df["t"] = pd.to_datetime(df["t"], unit=unit, utc=True)
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

    def series(self, keys: tuple[str, ...], history: bool, where: str = "") -> pd.DataFrame:
        lo, hi = (self.h_start, self.start) if history else (self.start, self.end)
        return _df(self.q, model.rollup_series(self.db, lo, hi, self.cfg.bucket_s, keys, where))

    def run(self) -> list[Finding]:
        gap_findings, center_gaps = self.gaps()
        shifts = self.shifts(center_gaps)
        out = gap_findings + shifts
        out += self.with_peers(self.volumes(center_gaps, shifts))
        out += self.dr_traffic()
        out += self.dependencies()
        out += self.asymmetry()
        out += self.fanout()
        out += self.elephants()
        out += self.dns_tunnelling()
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

    #: Volume entities: rollup keys → finding entity names. Tenants per center first; center pairs
    #: and services only report what the tenant view did not already show.
    VOLUME_VIEWS = (
        (("src_tenant", "src_center"), ("tenant", "center"), ""),
        (("src_center", "dst_center"), ("src_center", "dst_center"), ""),
        # Services are server ports: responses (to ephemeral ports) would make a series per client.
        (("dst_tenant", "dst_port", "proto"), ("tenant", "service_port", "proto"), "dst_port < 32768"),
    )

    def volumes(self, center_gaps: dict[str, pd.Series], shifts: list[Finding]) -> list[Finding]:
        out: list[Finding] = []
        for keys, names, where in self.VOLUME_VIEWS:
            now, hist = self.series(keys, False, where), self.series(keys, True, where)
            past = (
                {k: g.set_index("t")["bytes"].astype(float) for k, g in hist.groupby(list(keys))}
                if not hist.empty
                else {}
            )
            for key, g in now.groupby(list(keys)):
                entities = dict(zip(names, (str(k) for k in key), strict=True))
                if not all(v not in ("", "0") for v in entities.values()):
                    continue
                h = past.get(key)
                if h is None or h.median() < self.cfg.volume.min_expected:
                    continue  # nothing to judge against, or too small to matter
                observed = g.set_index("t")["bytes"].astype(float).reindex(self.index, fill_value=0.0)
                found = detect_volume(
                    observed,
                    h,
                    entities,
                    self.cfg.volume,
                    self.bucket,
                    self._blind(entities, center_gaps, shifts),
                )
                tenant = entities.get("tenant")
                found = [
                    f
                    for f in found
                    if not (f.entities["kind"] == "spike" and tenant and _within(f, shifts, tenant))
                ]
                out += [self._planned(f) for f in found if not _shown(f, out)]
        return out

    def with_peers(self, findings: list[Finding]) -> list[Finding]:
        """Add the distinct peers seen in each volume finding's window to its evidence (traffic model: peers)."""
        out = []
        for f in findings:
            keys = [k for k in ("tenant", "center") if k in f.entities]
            if f.detector != "volume" or keys != ["tenant", "center"]:
                out.append(f)
                continue
            sql = model.peer_series(
                self.db, f.window_start, f.window_end, self.cfg.bucket_s, ("src_tenant", "src_center")
            )
            df = _df(self.q, sql)
            mine = df[(df["src_tenant"] == f.entities["tenant"]) & (df["src_center"] == f.entities["center"])]
            out.append(replace(f, evidence={**f.evidence, "distinct_peers": [int(x) for x in mine["peers"]]}))
        return out

    def _planned(self, f: Finding) -> Finding:
        """A volume change inside a planned window (maintenance, DR drill) is reported as info."""
        for w in self.cfg.windows:
            if w.start <= f.window_start and f.window_end <= w.end + self.bucket:
                evidence = {**f.evidence, "planned": w.note or w.kind}
                return replace(
                    f, severity="info", summary=f"planned ({w.kind}): {f.summary}", evidence=evidence
                )
        return f

    def _blind(
        self, entities: dict[str, str], center_gaps: dict[str, pd.Series], shifts: list[Finding]
    ) -> pd.Series:
        """Buckets where a drop of this entity is explained: a gap in one of its centers, or its tenant's shift."""
        blind = pd.Series(False, index=self.index)
        for k in ("center", "src_center", "dst_center"):
            if k in entities:
                blind |= center_gaps.get(entities[k], pd.Series(False, index=self.index))
        for s in shifts:
            if entities.get("tenant") == s.entities.get("tenant"):
                blind |= (self.index >= pd.Timestamp(s.window_start)) & (
                    self.index < pd.Timestamp(s.window_end)
                )
        return blind

    def shifts(self, center_gaps: dict[str, pd.Series]) -> list[Finding]:
        a, b = self.cfg.shift.production_centers
        blind = center_gaps.get(a, pd.Series(False, index=self.index)) | center_gaps.get(
            b, pd.Series(False, index=self.index)
        )
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
                obs, h.fillna(0), {"tenant": tenant}, self.cfg.shift, self.bucket, self.cfg.windows, blind
            )
        return out

    def dr_traffic(self) -> list[Finding]:
        keys = ("src_center", "dst_center", "src_zone", "dst_zone", "src_tenant")
        df = self.series(keys, False).rename(columns={"t": "time", "src_tenant": "tenant"})
        return detect_dr_traffic(df, self.cfg.dr_traffic, self.bucket, self.cfg.windows)

    def dependencies(self) -> list[Finding]:
        cols = ["src_service", "dst_service", "src_center", "dst_center"]
        renamed = {"client_center": "src_center", "server_center": "dst_center"}
        known = _df(self.q, model.service_pairs(self.db, self.h_start, self.start)).rename(columns=renamed)
        baseline = set(map(tuple, known[cols].to_numpy())) if not known.empty else set()
        cur = _df(self.q, model.service_pairs(self.db, self.start, self.end, self.cfg.bucket_s)).rename(
            columns=renamed
        )
        out: list[Finding] = []
        for t, g in cur.groupby("t") if not cur.empty else []:
            found = detect_new_dependencies(g, baseline, self.cfg.dependency, self._window(t))
            out += [f for f in found if not self._in_drill(f)]
            baseline |= {tuple(f.entities[k] for k in cols) for f in found}  # report a new pair once
        return out

    def asymmetry(self) -> list[Finding]:
        """Judged over the whole window; each finding's window spans the buckets its conversation was seen in."""
        cur = _df(
            self.q, model.conversations_by_exporter_center(self.db, self.start, self.end, self.cfg.bucket_s)
        )
        if cur.empty:
            return []
        found = detect_asymmetric(cur.drop(columns="t"), (self.start, self.end))
        out = []
        for f in found:
            a, pa_ = f.entities["a"].rsplit(":", 1)
            b, pb = f.entities["b"].rsplit(":", 1)
            seen = cur[((cur["src"] == a) & (cur["dst"] == b)) | ((cur["src"] == b) & (cur["dst"] == a))]
            out.append(
                replace(
                    f,
                    window_start=seen["t"].min().to_pydatetime(),
                    window_end=(seen["t"].max() + self.bucket).to_pydatetime(),
                )
            )
        return out

    def _in_drill(self, f: Finding) -> bool:
        """A dependency on a DR center during its drill (plus the export lag of one bucket) is planned."""
        centers = {f.entities.get("src_center"), f.entities.get("dst_center")}
        return any(
            w.kind == "dr_drill"
            and (not w.centers or centers & set(w.centers))
            and w.start <= f.window_start < w.end + self.bucket
            for w in self.cfg.windows
        )

    def ewma_volumes(self) -> list[Finding]:
        """The Theia-style reference: EWMA with whole-series sigma on the same series as ``volumes``."""
        keys = ("src_tenant", "src_center")
        series = pd.concat([self.series(keys, True), self.series(keys, False)])
        out = []
        for (tenant, center), g in series.groupby(list(keys)):
            if not tenant or not center:
                continue
            s = g.set_index("t")["bytes"].astype(float).sort_index()
            flagged = ewma_baseline(s)
            flagged = flagged[flagged.index >= pd.Timestamp(self.start)].reindex(self.index, fill_value=False)
            for start, end, sel in runs(flagged, self.bucket):
                kind = (
                    "spike"
                    if s.reindex(sel).mean() > s[s.index < pd.Timestamp(self.start)].median()
                    else "drop"
                )
                out.append(
                    Finding(
                        "volume",
                        "warning",
                        1.0,
                        start,
                        end,
                        {"tenant": tenant, "center": center, "kind": kind},
                        "ewma",
                    )
                )
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
        per_bucket = [f for t, g in cur.groupby("t") for f in detect_fanout(g, usual_s, cfg, self._window(t))]
        return _merge_consecutive(per_bucket)

    def dns_tunnelling(self) -> list[Finding]:
        cfg = self.cfg.dns_tunnel
        cur = _df(
            self.q, model.dns_long_names(self.db, self.start, self.end, self.cfg.bucket_s, cfg.min_length)
        )
        if cur.empty:
            return []
        found = [f for t, g in cur.groupby("t") for f in detect_dns_tunnelling(g, cfg, self._window(t))]
        return _merge_consecutive(found)

    def elephants(self) -> list[Finding]:
        if not self.cfg.elephant.link_capacity_bps:
            return []
        usage = self.series(("src_center", "dst_center"), False).rename(columns={"t": "time"})
        top = _df(self.q, model.top_flows(self.db, self.start, self.end))
        return detect_elephants(usage, self.cfg.elephant, self.bucket, top)


def _merge_consecutive(findings: list[Finding]) -> list[Finding]:
    """Join findings with the same detector and entities whose windows touch into one."""
    out: list[Finding] = []
    for f in sorted(findings, key=lambda f: (f.detector, sorted(f.entities.items()), f.window_start)):
        last = out[-1] if out else None
        if (
            last
            and last.detector == f.detector
            and last.entities == f.entities
            and last.window_end >= f.window_start
        ):
            out[-1] = replace(
                last, window_end=max(last.window_end, f.window_end), score=max(last.score, f.score)
            )
        else:
            out.append(f)
    return out


def _shown(f: Finding, earlier: list[Finding]) -> bool:
    """Whether a tenant-level volume finding already shows this one (same kind, overlapping, related)."""
    for e in earlier:
        if e.entities.get("kind") != f.entities["kind"] or "center" not in e.entities:
            continue
        if not (e.window_start < f.window_end and f.window_start < e.window_end):
            continue
        if f.entities.get("tenant") == e.entities["tenant"]:
            return True
        if e.entities["center"] in (f.entities.get("src_center"), f.entities.get("dst_center")):
            return True
    return False


def _within(f: Finding, shifts: list[Finding], tenant: str) -> bool:
    return any(
        s.entities.get("tenant") == tenant and s.window_start <= f.window_start < s.window_end for s in shifts
    )
