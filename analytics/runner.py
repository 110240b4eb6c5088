"""Run every detector over a window: query the model, apply the detectors (looked up in
:data:`analytics.detectors.DETECTORS`), correlate, mark planned windows, save.

Correlation keeps the NOC's view clean: a volume drop explained by a collection gap (the
exporters of that center were silent) or by a center shift (the tenant failed over) is not
reported again as a volume anomaly. Planned windows are honoured the same way for every detector
(:mod:`analytics.planned`). ``notes`` says, per detector, what it could not judge and why: series
without enough history (cold start) or evidence, conversations whose asymmetry is not observable.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analytics import model, planned
from analytics.baseline import ewma_baseline
from analytics.config import AnalyticsConfig
from analytics.detectors import DETECTORS
from analytics.detectors._common import runs
from analytics.detectors.dependency import so_far
from analytics.detectors.dr_traffic import known_kinds
from analytics.detectors.volume import SeriesSet
from analytics.findings import Finding

Query = Callable[[str], pa.Table]


def _df(query: Query, sql: str) -> pd.DataFrame:
    return _frame(query(sql))


def _frame(table: pa.Table) -> pd.DataFrame:
    df = table.to_pandas()
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
        detectors: dict[str, Callable[..., Any]] | None = None,
    ):
        self.q, self.db, self.cfg = query, db, cfg
        self.start, self.end = start, end
        self.h_start = start - timedelta(days=history_days)
        self.bucket = timedelta(seconds=cfg.bucket_s)
        self.index = pd.date_range(start, end, freq=self.bucket, inclusive="left", tz="UTC")
        self.detectors: dict[str, Callable[..., Any]] = DETECTORS if detectors is None else detectors
        self.notes: dict[str, dict[str, Any]] = {}
        self._kept: dict[tuple[tuple[str, ...], bool, str], pa.Table] = {}

    def series(
        self, keys: tuple[str, ...], history: bool, where: str = "", keep: bool = False
    ) -> pd.DataFrame:
        """Rollup series of the window or its history. ``keep``: a later call for the same series takes
        this result instead of querying again (the center-shift and the tenant volume views share one)."""
        return _frame(self._rollup(keys, history, where, keep))

    def _rollup(self, keys: tuple[str, ...], history: bool, where: str = "", keep: bool = False) -> pa.Table:
        key = (keys, history, where)
        if key in self._kept:
            return self._kept.pop(key)
        lo, hi = (self.h_start, self.start) if history else (self.start, self.end)
        # A week at a time: the engine groups a week of buckets, not the whole history, at once.
        table = _concat([
            self.q(model.rollup_series(self.db, a, b, self.cfg.bucket_s, keys, where))
            for a, b in _spans(lo, hi, WEEK_S, [self.cfg.bucket_s])
        ])  # fmt: skip
        if keep:
            self._kept[key] = table  # kept as Arrow: a fraction of the frame's memory
        return table

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
        out += self.plaintext_downgrades()
        out += self.rate_limits()
        out += self.link_qos()
        return planned.apply(out, self.cfg.windows, self.bucket)

    # --- detectors ------------------------------------------------------------------------

    def gaps(self) -> tuple[list[Finding], dict[str, pd.Series]]:
        # History only says which exporters to expect; the window's activity is judged per bucket.
        known = set(_df(self.q, model.exporters_seen(self.db, self.h_start, self.start))["exporter"].tolist())
        now = _df(self.q, model.exporter_activity(self.db, self.start, self.end, self.cfg.bucket_s))
        if not known and now.empty:
            self.notes["collection_gap"] = {"exporters": 0, "cold": "no exporter has sent anything"}
            return [], {}
        now["exporter"] = now["exporter"].astype(object)
        first = now.groupby("exporter", sort=False)["t"].min()
        expected = sorted(known | set(first.index))
        cold = {e: first[e] for e in expected if e not in known}
        self.notes["collection_gap"] = {
            "exporters": len(expected),
            "without_history": sorted(cold),
            "needs": "an exporter is expected from its first record on; one with no history is judged "
            "from its first record in the window",
        }
        health = now.rename(columns={"t": "time"})
        health = health.assign(datagrams=health["flows"], lost=0)
        per = _df(
            self.q, model.exporter_records_per_conversation(self.db, self.start, self.end, self.cfg.bucket_s)
        )
        per_event = {
            str(e): r / c
            for e, r, c in zip(per["exporter"], per["records"], per["conversations"], strict=True)
            if c
        }
        findings, gaps = self.detectors["collection_gap"](
            health, expected, self.index, self.cfg.gaps, self.bucket, cold, per_event
        )
        centers = _df(self.q, model.exporter_centers(self.db, self.h_start, self.end))
        center_of = dict(zip(centers["exporter"], centers["center"], strict=True))
        by_center: dict[str, pd.Series] = {}
        for exporter, mask in gaps.items():
            c = center_of.get(exporter, "")
            by_center[c] = by_center.get(c, pd.Series(False, index=self.index)) | mask
        for f in findings:
            f.entities.setdefault("center", center_of.get(f.entities["exporter"], ""))
        return findings, by_center

    #: Volume views: rollup keys (columns or ``expression AS name``) → finding entity names, and a
    #: filter. Tenants per center first; center pairs and services only report what the tenant view
    #: did not already show. A service is its server end (by who opened the conversation).
    VOLUME_VIEWS = (
        (("src_tenant", "src_center"), ("tenant", "center"), ""),
        (("src_center", "dst_center"), ("src_center", "dst_center"), ""),
        # A service is its server end: requests (by who opened the conversation) to a port; the rollups
        # keep the destination port only, so replies (to the client's port) are left to the other views.
        (
            ("dst_tenant", "dst_center", "dst_port", "proto"),
            ("tenant", "dst_center", "port", "proto"),
            "(initiator = 'src' OR (initiator = '' AND dst_port < 32768))",
        ),
    )

    def _series_set(self, keys: tuple[str, ...], names: tuple[str, ...], where: str) -> SeriesSet | None:
        """The view's series as matrices, built from the engine's Arrow columns (no frame of the
        whole history: it cost ~4x the Arrow table); series numbered in the order of their keys."""
        now, hist = self._rollup(keys, False, where), self._rollup(keys, True, where)
        if not now.num_rows:
            return None
        parts = [now, hist] if hist.num_rows else [now]
        cols = [model._name(k) for k in keys]
        sid, values = _series_ids(
            [pa.chunked_array([c for p in parts for c in p.column(k).chunks]) for k in cols]
        )
        entities = [dict(zip(names, (str(v) for v in row), strict=True)) for row in values]
        keep = np.array([all(v not in ("", "0") for v in e.values()) for e in entities])
        h_index = pd.date_range(self.h_start, self.start, freq=self.bucket, inclusive="left", tz="UTC")
        n_now = now.num_rows

        def column(name: str) -> np.ndarray:
            return np.concatenate([p.column(name).to_numpy().astype(float, copy=False) for p in parts])

        t_ns = np.concatenate([_ns(p.column("t")) for p in parts])

        def matrix(rows: slice, index: pd.DatetimeIndex, values: np.ndarray, before_nan: bool) -> np.ndarray:
            out = np.zeros((len(entities), len(index)))
            pos = _positions(t_ns[rows], index, self.bucket)
            ok = pos >= 0
            ids = sid[rows][ok]
            np.add.at(out, (ids, pos[ok]), values[rows][ok])
            if before_nan:  # a series did not exist before its first record: not zero traffic
                first = np.full(len(entities), len(index))
                np.minimum.at(first, ids, pos[ok])
                out[np.arange(len(index))[None, :] < first[:, None]] = np.nan
            return out

        obs, hst = slice(0, n_now), slice(n_now, None)
        nbytes, records = column("bytes"), column("raw_packets")
        scaled = np.bincount(sid, weights=column("packets"), minlength=len(entities))
        sampled = scaled > 1.5 * np.bincount(sid, weights=records, minlength=len(entities))
        sel = np.flatnonzero(keep)
        return SeriesSet(
            entities=[entities[i] for i in sel],
            hist_bytes=matrix(hst, h_index, nbytes, True)[sel],
            hist_records=matrix(hst, h_index, records, True)[sel],
            hist_index=h_index,
            obs_bytes=matrix(obs, self.index, nbytes, False)[sel],
            obs_records=matrix(obs, self.index, records, False)[sel],
            obs_index=self.index,
            sampled=sampled[sel],
        )

    def volumes(self, center_gaps: dict[str, pd.Series], shifts: list[Finding]) -> list[Finding]:
        out: list[Finding] = []
        notes: dict[str, Any] = {}
        for keys, names, where in self.VOLUME_VIEWS:
            s = self._series_set(keys, names, where)
            if s is None:
                continue
            blind = np.stack([self._blind(e, center_gaps, shifts).to_numpy() for e in s.entities])
            found, report = self.detectors["volume"](s, self.cfg.volume, self.bucket, blind)
            notes["/".join(names)] = report
            found = [
                f
                for f in found
                if not (f.type == "volume_spike" and f.entities.get("tenant") and _within(f, shifts))
            ]
            out += [self._named(f) for f in found if not _shown(f, out)]
        self.notes["volume"] = notes
        return out

    def _named(self, f: Finding) -> Finding:
        """A service finding named by its workload (the rollups know tenants and ports, not workloads)."""
        if "port" not in f.entities or "tenant" not in f.entities:
            return f
        df = _df(
            self.q,
            model.service_workloads(
                self.db, f.window_start, f.window_end, f.entities["tenant"], int(f.entities["port"])
            ),
        )
        if df.empty:
            return f
        return replace(f, entities={**f.entities, "workload": str(df["workload"].iloc[0])})

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
        step = timedelta(seconds=max(self.cfg.shift.bucket_s, self.cfg.bucket_s))
        shared = keys in (
            k for k, _, w in self.VOLUME_VIEWS if not w
        )  # the tenant volume view reads them too
        now, hist = (_coarse(df, step) for df in (self.series(keys, False, keep=shared),
                                                  self.series(keys, True, keep=shared)))  # fmt: skip
        hist_of = dict(tuple(hist.groupby("src_tenant", sort=False))) if not hist.empty else {}
        index = pd.date_range(self.start, self.end, freq=step, inclusive="left", tz="UTC")
        blind = blind.groupby(blind.index.floor(step)).any().reindex(index, fill_value=False)
        out = []
        cold = []
        for tenant, g in now.groupby("src_tenant"):
            if not tenant:
                continue
            obs = (
                g.pivot_table(index="t", columns="src_center", values="bytes", aggfunc="sum")
                .reindex(index)
                .fillna(0)
            )
            h = hist_of.get(tenant, hist.iloc[:0]).pivot_table(
                index="t", columns="src_center", values="bytes", aggfunc="sum"
            )
            if a not in h or b not in h:
                cold.append(tenant)
                continue
            counts = (
                g.pivot_table(index="t", columns="src_center", values="raw_packets", aggfunc="sum")
                .reindex(index)
                .fillna(0)
            )
            for c in (a, b):
                if c not in obs:
                    obs[c] = 0.0
                if c not in counts:
                    counts[c] = 0.0
            out += self.detectors["center_shift"](
                obs, h.fillna(0), {"tenant": tenant}, self.cfg.shift, step, (), blind, counts
            )
        self.notes["center_shift"] = {
            "tenants_without_history": cold,
            "needs": f"history of the tenant in both {a} and {b}",
        }
        return out

    def dr_traffic(self) -> list[Finding]:
        cfg = self.cfg.dr_traffic
        hist = _df(self.q, model.dr_kinds(self.db, self.h_start, self.start, cfg.dr_centers, None))
        cur = _df(self.q, model.dr_kinds(self.db, self.start, self.end, cfg.dr_centers, self.cfg.bucket_s))
        for df in (hist, cur):
            for c in ("port", "proto"):
                if c in df:
                    df[c] = df[c].astype(str)
        known = known_kinds(hist, cfg.min_days)
        days = (self.start - self.h_start).days
        self.notes["dr_traffic"] = {
            "known_kinds": len(known),
            "history_days": days,
            "needs": f"kinds of DR traffic seen on {cfg.min_days} day(s) of history are normal (replication)",
        }
        return self.detectors["dr_traffic"](cur, known, cfg, self.bucket)

    def dependencies(self) -> list[Finding]:
        cols = ["src_service", "dst_service", "src_center", "dst_center"]
        renamed = {"client_center": "src_center", "server_center": "dst_center"}
        known = _df(self.q, model.service_pairs(self.db, self.h_start, self.start)).rename(columns=renamed)
        baseline = set(map(tuple, known[cols].to_numpy())) if not known.empty else set()
        # Only pairs that cross centers can be new: the engine leaves the rest out (and its groups).
        cur = _df(
            self.q, model.service_pairs(self.db, self.start, self.end, self.cfg.bucket_s, cross_only=True)
        ).rename(columns=renamed)
        history_s = (self.start - self.h_start).total_seconds()
        self.notes["new_dependency"] = {
            "known_pairs": len(baseline),
            "needs": f"{self.cfg.dependency.min_records:g} sampled packets of a pair in the window, and a rate "
            f"that history ({history_s / 86_400:g} days) could not have missed with P ≥ "
            f"{self.cfg.dependency.max_unseen_p:g}",
        }
        out: list[Finding] = []
        # Only pairs that are not known can be new: the rest is not looked at per bucket.
        if baseline and not cur.empty:
            cur = cur[[k not in baseline for k in zip(*(cur[c] for c in cols), strict=True)]]
        if cur.empty:
            return out
        for t, g, elapsed in so_far(cur, self.start, self.bucket):
            found = self.detectors["new_dependency"](
                g, baseline, self.cfg.dependency, self._window(t), history_s=history_s, elapsed_s=elapsed
            )
            out += found
            baseline |= {tuple(f.entities[k] for k in cols) for f in found}  # report a new pair once
        return out

    def asymmetry(self) -> list[Finding]:
        cfg = self.cfg.asymmetry
        obs = _df(self.q, model.conversation_observations(self.db, self.start, self.end, cfg.bucket_s))
        found, report = self.detectors["asymmetric_path"](
            obs,
            timedelta(seconds=cfg.bucket_s),
            min_records=cfg.min_records,
            two_way_share=cfg.two_way_share,
            max_chance=cfg.max_chance,
            false_per_day=cfg.false_per_day,
            severity=cfg.severity,
        )
        self.notes["asymmetric_path"] = report.to_json()
        return found

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
                        {"tenant": tenant, "center": center},
                        "ewma",
                        type=f"volume_{kind}",
                    )
                )
        return out

    def _window(self, t: pd.Timestamp) -> tuple[datetime, datetime]:
        return t.to_pydatetime(), (t + self.bucket).to_pydatetime()

    def fanout(self) -> list[Finding]:
        """Fan-out at 5 minutes (fast scans), one hour and one day (slow ones, and what sampling leaves
        of them); a longer scale reports only sources no shorter one already did at that time."""
        cfg = self.cfg.fanout
        per_window: list[Finding] = []
        scales = (
            ("5m", self.cfg.bucket_s, cfg.min_distinct),
            ("1h", 3600, cfg.min_distinct_1h),
            ("1d", 86_400, cfg.min_distinct_1d),
        )
        # One query per day: a day's (period, source) groups of every scale are all inside it, and
        # the engine holds one day's distinct-count states at a time, not the window's.
        spec = tuple((b, f) for _, b, f in scales)
        parts = [
            _df(self.q, model.fanout_scales(self.db, lo, hi, spec))
            for lo, hi in _spans(self.start, self.end, DAY_S, [b for _, b, _ in scales])
        ]
        cur_all = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        for scale, bucket_s, floor in scales:
            cur = cur_all[cur_all["scale_s"] == bucket_s] if not cur_all.empty else cur_all
            if cur.empty:
                continue
            # The usual fan-out of the sources judged only: each source's figure is of its own rows.
            sources = sorted(set(cur["src"].astype(str)))
            usual = _df(self.q, model.usual_fanout(self.db, self.h_start, self.start, bucket_s, sources))
            usual_s = (
                pd.Series(usual["usual"].to_numpy(dtype=float), index=usual["src"])
                if not usual.empty
                else pd.Series(dtype=float)
            )
            step = timedelta(seconds=bucket_s)
            found = [
                f
                for t, g in cur.groupby("t")
                for f in self.detectors["fanout"](
                    g, usual_s, cfg, (t.to_pydatetime(), (t + step).to_pydatetime()), floor, scale
                )
            ]
            merged = _merge_consecutive(found)
            per_window += [f for f in merged if scale == "5m" or not _overlaps_any(f, per_window)]
        return per_window

    def dns_tunnelling(self) -> list[Finding]:
        cfg = self.cfg.dns_tunnel
        cur = _df(
            self.q, model.dns_long_names(self.db, self.start, self.end, self.cfg.bucket_s, cfg.min_length)
        )
        if cur.empty:
            return []
        found = [
            f for t, g in cur.groupby("t") for f in self.detectors["dns_tunnelling"](g, cfg, self._window(t))
        ]
        return _merge_consecutive(found)

    def plaintext_downgrades(self) -> list[Finding]:
        cur = _df(self.q, model.plaintext_after_tls(self.db, self.h_start, self.start, self.end))
        if cur.empty:
            return []
        return self.detectors["plaintext_downgrade"](
            cur, self.cfg.plaintext_downgrade, (self.start, self.end)
        )

    def rate_limits(self) -> list[Finding]:
        """Pods against their Kube-OVN rate limits (none configured in the metadata: nothing to do)."""
        try:
            rows = self.q(model.pod_limits_sql(self.db, self.start, self.end)).to_pylist()
        except Exception as e:  # no metadata store: no limit is known
            if "UNKNOWN_TABLE" in str(e) or "doesn't exist" in str(e):
                self.notes["rate_limit"] = {"cold": "no metadata_versions table: no pod limit is known"}
                return []
            raise
        limits = model.pod_limits(rows)
        self.notes["rate_limit"] = {
            "limited_pods": int(limits[["namespace", "pod"]].drop_duplicates().shape[0])
        }
        if limits.empty:
            return []
        parts = _df(self.q, model.pod_rates(self.db, self.start, self.end, self.cfg.bucket_s))
        usage = model.spread_rates(parts, self.start, self.end, self.cfg.bucket_s)
        return self.detectors["rate_limit"](usage, limits, self.cfg.rate_limit, self.bucket)

    def link_qos(self) -> list[Finding]:
        """Declared traffic classes on links a Kube-OVN QoSPolicy limits (EIPs, NAT gateways)."""
        cfg = self.cfg.link_qos
        if not cfg.classes:
            self.notes["link_qos"] = {"off": "no traffic class declared (analytics.link_qos.classes)"}
            return []
        try:
            rows = self.q(model.link_versions_sql(self.db, self.start, self.end)).to_pylist()
        except Exception as e:  # no metadata store: no limit is known
            if "UNKNOWN_TABLE" in str(e) or "doesn't exist" in str(e):
                self.notes["link_qos"] = {"cold": "no metadata_versions table: no link limit is known"}
                return []
            raise
        rules, problems = model.link_rules(rows)
        notes: dict[str, Any] = {"limited_links": int(rules["link"].nunique()) if not rules.empty else 0}
        if problems:
            notes["problems"] = problems
        self.notes["link_qos"] = notes
        if rules.empty:
            return []
        sql = model.link_rates(
            self.db, self.start, self.end, self.cfg.bucket_s, rules["address"].tolist(),
            [c.codes() for c in cfg.classes], remotes=bool((rules["match_net"] != "").any()),
        )  # fmt: skip
        parts = _df(self.q, sql)
        spread = model.spread_rates(parts, self.start, self.end, self.cfg.bucket_s, model.LINK_KEYS)
        usage = model.link_usage(spread, rules, self.cfg.bucket_s)
        return self.detectors["link_qos"](usage, cfg, self.bucket, notes)

    def elephants(self) -> list[Finding]:
        if not self.cfg.elephant.link_capacity_bps:
            return []
        usage = self.series(("src_center", "dst_center"), False).rename(columns={"t": "time"})
        top = _df(self.q, model.top_flows(self.db, self.start, self.end))
        return self.detectors["elephant"](usage, self.cfg.elephant, self.bucket, top)


#: Chunks of a query whose groups are periods of a few scales: a day (fan-out), a week (rollup series).
DAY_S, WEEK_S = 86_400, 7 * 86_400


def _spans(
    start: datetime, end: datetime, step_s: int, periods: list[int]
) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at multiples of ``step_s`` since the epoch, where periods (seconds) are aligned
    as ``toStartOfInterval`` aligns them: a period dividing ``step_s`` is never cut in two, so
    per-chunk results are the whole one's rows. Whole when a period does not divide ``step_s``."""
    if any(p <= 0 or step_s % p for p in periods):
        return [(start, end)]
    t0, t1 = start.timestamp(), end.timestamp()
    first, last = int(t0 // step_s + 1) * step_s, int(-(-t1 // step_s)) * step_s
    bounds = [t0, *(float(c) for c in range(first, last, step_s)), t1]
    tz = start.tzinfo
    spans = [
        (datetime.fromtimestamp(lo, tz), datetime.fromtimestamp(hi, tz))
        for lo, hi in itertools.pairwise(bounds)
        if lo < hi
    ]
    return spans or [(start, end)]


def _concat(tables: list[pa.Table]) -> pa.Table:
    """Chunk results as one table (an empty result may carry no types: left out)."""
    full = [t for t in tables if t.num_rows]
    if len(full) == 1:
        return full[0]
    return pa.concat_tables(full) if full else tables[0]


def _series_ids(columns: list[pa.ChunkedArray]) -> tuple[np.ndarray, list[tuple[Any, ...]]]:
    """Per row, the number of its key (the columns' values) in sorted key order (the order of a
    sorted pandas group-by), and the keys in that order."""
    sid = np.zeros(len(columns[0]) if columns else 0, dtype=np.int64)
    for col in columns:
        u = pc.unique(col)
        u = u.take(pc.array_sort_indices(u))
        codes = pc.index_in(col, value_set=u).to_numpy().astype(np.int64)
        _, sid = np.unique(sid * len(u) + codes, return_inverse=True)
        sid = sid.reshape(-1)
    row = np.zeros(int(sid.max()) + 1 if len(sid) else 0, dtype=np.int64)
    row[sid] = np.arange(len(sid))  # a row of each key
    keys = list(zip(*(col.take(pa.array(row)).to_pylist() for col in columns), strict=True))
    return sid, keys


def _ns(t: pa.ChunkedArray) -> np.ndarray:
    """Bucket times as epoch nanoseconds: chdb hands DateTime to Arrow as uint32 seconds, a server
    store as timestamps."""
    if pa.types.is_timestamp(t.type):
        per_s = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[t.type.unit]
        return t.cast(pa.int64()).to_numpy() * (1_000_000_000 // per_s)
    return t.to_numpy().astype(np.int64) * 1_000_000_000


def _positions(t_ns: np.ndarray, index: pd.DatetimeIndex, bucket: timedelta) -> np.ndarray:
    """Each time's column in ``index`` (a regular range), -1 when it is not one of its times."""
    if not len(index):
        return np.full(len(t_ns), -1)
    step = int(bucket.total_seconds() * 1_000_000_000)
    d = t_ns - index.as_unit("ns").asi8[0]
    pos = d // step
    return np.where((d % step == 0) & (pos >= 0) & (pos < len(index)), pos, -1)


def _coarse(df: pd.DataFrame, step: timedelta) -> pd.DataFrame:
    """Rollup series summed into periods of ``step``."""
    if df.empty:
        return df
    keys = [c for c in df.columns if c not in ("t", "bytes", "packets", "raw_packets", "flows")]
    df = df.assign(t=df["t"].dt.floor(step))
    return df.groupby(["t", *keys], as_index=False)[["bytes", "packets", "raw_packets", "flows"]].sum()


def _overlaps_any(f: Finding, others: list[Finding]) -> bool:
    return any(
        o.entities.get("src") == f.entities.get("src")
        and o.window_start < f.window_end
        and f.window_start < o.window_end
        for o in others
    )


def _merge_consecutive(findings: list[Finding]) -> list[Finding]:
    """Join findings with the same detector, type and entities whose windows touch into one."""
    out: list[Finding] = []
    for f in sorted(findings, key=lambda f: (f.detector, f.type, sorted(f.entities.items()), f.window_start)):
        last = out[-1] if out else None
        if (
            last
            and last.detector == f.detector
            and last.type == f.type
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
    """Whether a tenant-level volume finding already shows this one (same type, overlapping, related)."""
    for e in earlier:
        if e.type != f.type or "center" not in e.entities:
            continue
        if not (e.window_start < f.window_end and f.window_start < e.window_end):
            continue
        if f.entities.get("tenant") == e.entities["tenant"]:
            return True
        if e.entities["center"] in (f.entities.get("src_center"), f.entities.get("dst_center")):
            return True
    return False


def _within(f: Finding, shifts: list[Finding]) -> bool:
    tenant = f.entities.get("tenant")
    return any(
        s.entities.get("tenant") == tenant and s.window_start <= f.window_start < s.window_end for s in shifts
    )
