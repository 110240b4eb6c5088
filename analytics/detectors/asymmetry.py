"""Detector 5: asymmetric paths, judged per conversation from its observation points.

A conversation (client, server, service port, proto, by the counting model's initiator) is
asymmetric when its two directions take different paths. What shows it: an observation point
that normally sees both directions of the conversations crossing it (an OVS bridge, a probe that
reports what its node receives too, a router) saw one direction of this conversation and (almost)
none of the other: at most ``MISSING_SHARE`` of what it should have seen, judged from what it saw of
the first direction and the conversation's reply/request ratio where each direction was seen most,
with at least ``min_records`` sampled packets missing, and only if independent sampling at the two
points makes it less likely than ``max_chance``: each point on the usual path samples every packet of
both directions on its own (1:N), so of the missing direction's sampled packets at this point and at the
other two-way point that saw the most of it, this point's number is binomial with its share of the two
sampling rates (one half at equal rates), on counts divided by the points' learned dispersion (1 when
the counts are Poisson, as they are once each exporter's sample is counted once; below 1 where the points
share one sample). "Almost":
other connections between the same two pods on the usual path add a little of the missing
direction in the same hour. Which points are two-way is
learned from the data: the share of the cross-node conversations they saw in both directions.
Inside one center and across centers alike.

Two points each lacking the direction the other saw (requests by one path, replies by another) are
also judged together: the sum of their counts against independent sampling. Every table judged (and
every such pair) is a test: the chance each must beat is ``false_per_day`` over the tests of a day, at
most ``max_chance``. A point's deficit that fades once the next or the last bucket is added to it
(the point had next door what it lacked) is a direction dated across the boundary (sFlow dates a sample
by its datagram, a flow record by its end; exporters' clocks, caches and export lags differ), not a
missing one.

Where every point that saw a conversation is one-way (a probe exporting only what its node
sends, marked egress), both directions look the same whichever path they took: the
conversation is **not observable**, and is reported as such (never as a finding, never silently).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd

from analytics.detectors._common import runs
from analytics.findings import Finding

CONV = ["client", "server", "port", "proto"]
#: A direction is missing at a point that saw at most this share of what it should have seen.
MISSING_SHARE = 0.25


@dataclass
class AsymmetryReport:
    """What could not be judged, and why."""

    conversations: int = 0
    judged: int = 0
    not_observable: list[dict] = field(default_factory=list)  # only one-way observation points
    one_way_only: int = 0  # one direction seen anywhere (a one-way flow, or sampling)
    thin: int = 0  # too few sampled packets to tell
    dispersion: float = 1.0  # spread of two points' counts of one direction, in sampled packets
    tests: int = 0  # tables (and pairs of points) judged
    threshold: float = 0.0  # the chance each had to beat
    one_way_exporters: list[str] = field(default_factory=list)
    degraded: list[tuple[str, str]] = field(default_factory=list)  # (bucket, exporter) not taken as witness

    def to_json(self, limit: int = 20) -> dict:
        return {
            "conversations": self.conversations,
            "judged": self.judged,
            "not_observable": len(self.not_observable),
            "not_observable_examples": self.not_observable[:limit],
            "one_direction_only": self.one_way_only,
            "thin": self.thin,
            "dispersion": round(self.dispersion, 2),
            "tests": self.tests,
            "max_chance_per_test": float(f"{self.threshold:.3g}"),
            "one_way_exporters": self.one_way_exporters[:limit],
            "degraded_points": [list(x) for x in self.degraded[:limit]],
            "why": "a conversation seen only by exporters that report one direction (what their node sends) "
            "looks the same whichever path its directions took",
        }


def two_way_exporters(obs: pd.DataFrame, share: float = 0.5, min_sampled: float = 10.0) -> set[str]:
    """Exporters that saw both directions of at least ``share`` of the cross-node conversations they saw
    with at least ``min_sampled`` sampled packets (all of them where none has as many): a scan's one-packet
    probes, whose replies sampling rarely keeps, say nothing of what the exporter can see."""
    cross = obs[(obs["client_node"] != obs["server_node"]) | (obs["client_node"] == "")]
    per = cross.groupby(["exporter", *CONV]).agg(
        lo=("reply", "min"), hi=("reply", "max"), n=("sampled", "sum")
    )
    both = (per["lo"] != per["hi"]).groupby(level="exporter").mean()
    sure = per[per["n"] >= min_sampled]
    enough = (sure["lo"] != sure["hi"]).groupby(level="exporter").mean()
    both.loc[enough.index] = enough
    return set(both[both >= share].index)


def detect_asymmetric(
    obs: pd.DataFrame,
    bucket: timedelta,
    *,
    min_records: float = 10.0,
    two_way_share: float = 0.5,
    max_chance: float = 1e-5,
    false_per_day: float = 0.02,
    severity: str = "warning",
) -> tuple[list[Finding], AsymmetryReport]:
    """``obs`` rows (:func:`analytics.model.conversation_observations`): t, client, server, port, proto,
    client_center, server_center, client_node, server_node, tenant, workload, reply, exporter,
    exporter_center, sampled and, if known, rate (the exporter's 1:N; equal at every point if not)."""
    report = AsymmetryReport()
    if obs.empty:
        return [], report
    obs = obs.assign(reply=obs["reply"].astype(bool))
    two_way = two_way_exporters(obs, two_way_share, min_records)
    report.one_way_exporters = sorted(set(obs["exporter"]) - two_way)
    report.conversations = int(obs.groupby(CONV).ngroups)
    # Per bucket, conversation and direction: the most sampled packets any point saw.
    most = obs.groupby(["t", *CONV, "reply"])["sampled"].max().unstack("reply", fill_value=0)
    most = most.reindex(columns=[False, True], fill_value=0)
    # Per bucket, conversation and two-way point: the sampled packets it saw of each direction.
    at = obs[obs["exporter"].isin(two_way)].groupby(["t", *CONV, "exporter", "reply"])["sampled"].sum()
    at = at.unstack("reply", fill_value=0).reindex(columns=[False, True], fill_value=0).reset_index()
    at = at.rename(columns={False: "req", True: "rep"})
    observable = {tuple(k) for k in at[CONV].drop_duplicates().itertuples(index=False)}
    tables = _tables(at)
    # A point that reported less than half of what it did the bucket before and after (an exporter
    # down for part of it: a collection gap) witnesses no missing direction in that bucket.
    down = _degraded(obs, bucket)
    if down:
        keep = [(t, e) not in down for t, e in zip(tables["t"], tables["exporter"], strict=True)]
        tables = tables[np.array(keep, dtype=bool)]
        report.degraded = sorted({(str(t), e) for t, e in down})
    # Each point's sampling rate (1:N; equal when not given): its share of what two points sample.
    rates = obs.groupby("exporter")["rate"].max().astype(float).to_dict() if "rate" in obs else {}
    dispersion = _dispersion(tables)
    report.dispersion = dispersion
    # What each point saw of each direction per bucket: a deficit that fades once the next (or the last)
    # bucket is added to it was timed across the boundary (sFlow dates a sample by its datagram; exporters'
    # clocks and export lags differ), not routed elsewhere (``shifted`` below).
    seen = {
        (row.t, (row.client, row.server, row.port, row.proto), row.exporter, bool(row.missing)): (
            row.got,
            row.want,
        )
        for row in tables.itertuples(index=False)
    }
    # Every 2×2 table with both directions somewhere is a test, and so is every pair of points judged
    # together below: the chance each must beat is the false-finding budget over the tests of a day
    # (at most ``max_chance``), so a bank with more conversations asks more of each one.
    candidates = []
    halves: dict[tuple, list] = {}
    tests = 0
    for row in tables.itertuples(index=False):
        # got/have: the missing and the other direction at this point; want/other: the same at the
        # two-way point that saw the most of the missing direction. What it should have seen: what it
        # saw of the other direction times the ratio there (a point that sees less of the conversation
        # expects less). The evidence: how likely sampling alone leaves this point at most ``got`` of the
        # ``got + want`` sampled packets of the direction the two points saw (binomial at its share of
        # the sampling rates), on counts divided by the points' dispersion.
        got, have, want, other = row.got, row.have, row.want, row.other
        if not have or not want:
            continue
        tests += 1
        expect = have * want / max(other, have)
        if got > expect * MISSING_SHARE:
            continue
        share = (1 / rates.get(row.exporter, 1.0)) / (
            1 / rates.get(row.exporter, 1.0) + 1 / rates.get(row.ref, 1.0)
        )
        k, n = int(round(got / dispersion)), int(round((got + want) / dispersion))
        conv = (row.client, row.server, row.port, row.proto)
        candidates.append((row.t, conv, row.exporter, bool(row.missing), k, n, share, expect - got))
        # Directions missing at a point but short of evidence alone, per bucket and conversation: two
        # points each lacking the direction the other saw (requests by one path, replies by another) are
        # judged together.
        halves.setdefault((row.t, conv), []).append(candidates[-1][2:])
    tests += sum(1 for hs in halves.values() if len({h[1] for h in hs}) == 2)
    days = max(1.0, obs["t"].nunique() * bucket.total_seconds() / 86400)
    threshold = min(max_chance, false_per_day * days / max(1, tests))
    report.tests, report.threshold = tests, threshold
    flagged: dict[tuple, list] = {}
    alone = set()

    def shifted(t, conv, points: list[tuple[str, bool]], share: float) -> bool:
        """Whether the deficit at ``t`` of ``points`` (exporter, missing direction) fades once the next (or
        the last) bucket is added: what the points lacked they had next door."""
        for step in (bucket, -bucket):
            got = want = 0.0
            for exporter, missing in points:
                for at in (t, t + step):
                    g, w = seen.get((at, conv, exporter, missing), (0.0, 0.0))
                    got, want = got + g, want + w
            n = int(round((got + want) / dispersion))
            if binomial_low(int(round(got / dispersion)), n, share) > SHIFT_CHANCE:
                return True
        return False

    for t, conv, exporter, missing, k, n, share, gap in candidates:
        chance = binomial_low(k, n, share)
        if gap >= min_records and chance <= threshold and not shifted(t, conv, [(exporter, missing)], share):
            flagged.setdefault(conv, []).append((t, exporter, "reply" if missing else "request", chance))
            alone.add((t, conv))
    for (t, conv), hs in halves.items():
        if (t, conv) in alone:
            continue
        # One point lacking replies and another lacking requests: under sampling alone the two counts are
        # independent binomials; their sum is judged at the smaller share (an upper bound on the chance).
        best = None
        for a in (h for h in hs if h[1]):
            for b in (h for h in hs if not h[1] and h[0] != a[0]):
                if a[5] + b[5] < min_records:
                    continue
                chance = binomial_low(a[2] + b[2], a[3] + b[3], min(a[4], b[4]))
                if chance > threshold or shifted(t, conv, [(a[0], a[1]), (b[0], b[1])], min(a[4], b[4])):
                    continue
                if best is None or chance < best[2]:
                    best = (a[0], b[0], chance)
        if best:
            flagged.setdefault(conv, []).extend(
                [(t, best[0], "reply", best[2]), (t, best[1], "request", best[2])]
            )
    _account(obs, most, observable, two_way, min_records, report)
    first = obs.drop_duplicates(CONV).set_index(CONV)
    out = []
    for conv, hits in sorted(flagged.items(), key=lambda kv: str(kv[0])):
        info = first.loc[conv]
        times = pd.Series(True, index=pd.DatetimeIndex(sorted({h[0] for h in hits})))
        full = times.reindex(pd.date_range(times.index[0], times.index[-1], freq=bucket), fill_value=False)
        for start, end, _sel in runs(full, bucket):
            mine = [h for h in hits if start <= h[0].to_pydatetime() < end]
            where = obs[(obs[CONV] == pd.Series(dict(zip(CONV, conv, strict=True)))).all(axis=1)]
            where = where[(where["t"] >= pd.Timestamp(start)) & (where["t"] < pd.Timestamp(end))]
            fwd = sorted(set(where.loc[~where["reply"], "exporter"]))
            rev = sorted(set(where.loc[where["reply"], "exporter"]))
            client, server, port, proto = conv
            out.append(
                Finding(
                    detector="asymmetric_path",
                    type="asymmetric_path",
                    severity=severity,
                    score=float(len(mine)),
                    window_start=start,
                    window_end=end,
                    entities={
                        "tenant": str(info["tenant"]),
                        "workload": str(info["workload"]),
                        "src_center": str(info["client_center"]),
                        "dst_center": str(info["server_center"]),
                        "port": str(port),
                        "proto": str(proto),
                        "client": str(client),
                        "server": str(server),
                    },  # fmt: skip
                    summary=f"{client} → {server}:{port} takes different paths: requests seen at {fwd}, "
                    f"replies at {rev}",
                    evidence={
                        "requests_seen_at": fwd,
                        "replies_seen_at": rev,
                        "missing": sorted({f"{h[2]} at {h[1]}" for h in mine}),
                        "min_records": min_records,
                        "chance": min(h[3] for h in mine),
                        "dispersion": round(dispersion, 2),
                    },
                )
            )
    return out, report


def _account(obs, most, observable, two_way, min_records, report: AsymmetryReport) -> None:
    """Count what was judged and what could not be, and why."""
    per = most.groupby(level=CONV).max()
    # Per client and server, once: the first row (tenant, workload) and the exporters that saw it.
    pairs = obs.groupby(["client", "server"], sort=False)
    first = pairs[["tenant", "workload"]].first()
    seen_by = pairs["exporter"].unique()
    for conv, row in per.iterrows():
        lo = min(float(row[False]), float(row[True]))
        if lo == 0:
            report.one_way_only += 1
        elif conv not in observable:
            info = first.loc[(conv[0], conv[1])]
            report.not_observable.append(
                {
                    "client": conv[0],
                    "server": conv[1],
                    "port": str(conv[2]),
                    "tenant": str(info["tenant"]),
                    "workload": str(info["workload"]),
                    "exporters": sorted(str(e) for e in seen_by.loc[(conv[0], conv[1])]),
                }  # fmt: skip
            )
        elif lo < min_records:
            report.thin += 1
        else:
            report.judged += 1


def _degraded(obs: pd.DataFrame, bucket: timedelta, share: float = 0.5) -> set[tuple]:
    """(bucket, exporter) where the exporter's sampled packets fell below ``share`` of both its neighbours'."""
    tot = obs.groupby(["exporter", "t"])["sampled"].sum()
    out = set()
    for exporter, s in tot.groupby(level="exporter"):
        s = s.droplevel("exporter")
        full = s.reindex(pd.date_range(s.index.min(), s.index.max(), freq=bucket), fill_value=0)
        before, after = full.shift(1), full.shift(-1)
        low = (full < share * before) & (full < share * after)
        out |= {(t, exporter) for t in full.index[low.to_numpy()]}
    return out


def _tables(at: pd.DataFrame) -> pd.DataFrame:
    """One 2×2 table per bucket, conversation, two-way point and direction: what the point saw of the
    direction (``got``) and of the other one (``have``), and the same (``want``, ``other``) at the other
    two-way point that saw the most of that direction (``ref``). Points alone with a conversation give none."""
    keys = ["t", *CONV]
    out = []
    for missing, col, rest in ((True, "rep", "req"), (False, "req", "rep")):
        s = at.sort_values(col, ascending=False, kind="stable")
        rank = s.groupby(keys, sort=False).cumcount()
        cols = [*keys, "exporter", col, rest]
        first = s.loc[rank == 0, cols].rename(columns={"exporter": "q1", col: "w1", rest: "o1"})
        second = s.loc[rank == 1, cols].rename(columns={"exporter": "q2", col: "w2", rest: "o2"})
        m = at.merge(first, on=keys).merge(second, on=keys)
        mine = m["exporter"] == m["q1"]
        out.append(
            pd.DataFrame(
                {
                    **{k: m[k] for k in keys},
                    "exporter": m["exporter"],
                    "ref": m["q2"].where(mine, m["q1"]),
                    "missing": missing,
                    "got": m[col].to_numpy(float),
                    "have": m[rest].to_numpy(float),
                    "want": m["w2"].where(mine, m["w1"]).to_numpy(float),
                    "other": m["o2"].where(mine, m["o1"]).to_numpy(float),
                }
            )
        )
    return pd.concat(out, ignore_index=True)


#: Points that agree exactly (the same packets selected at both) still leave this much doubt.
MIN_DISPERSION = 0.05
#: Median of χ² with one degree of freedom.
_CHI2_MEDIAN = 0.4549


def _dispersion(tables: pd.DataFrame, min_total: float = 20.0) -> float:
    """How much wider than Poisson two points' counts of the same direction spread, learned from the data:
    the median Pearson χ² of the tables over the median of χ²₁ (1 with too few tables to tell, or when
    the median's confidence bound reaches 1). Each
    exporter's sample counted once (the counting model's first rule) is Poisson (about 1); flow records cut
    at each exporter's own timeouts land in different buckets, and an exporter reporting a sampled packet
    at several ports lumps it (> 1). Points that select the same packets (hash-based selection, RFC 5475;
    one sampled count shared by the points) agree better than independent sampling (< 1, floored at
    ``MIN_DISPERSION``): a direction one of them lacks is then stronger evidence. A real asymmetry is rare
    and leaves the median alone."""
    # Each pair of points' table appears once per point and direction (four times, transposed): once here.
    lo = tables["exporter"].where(tables["exporter"] < tables["ref"], tables["ref"])
    hi = tables["ref"].where(tables["exporter"] < tables["ref"], tables["exporter"])
    tables = tables[~pd.DataFrame({"t": tables["t"], **{k: tables[k] for k in CONV}, "lo": lo, "hi": hi})
                    .duplicated().to_numpy()]  # fmt: skip
    a, b, c, d = (tables[k].to_numpy(float) for k in ("got", "have", "want", "other"))
    n = a + b + c + d
    den = (a + b) * (c + d) * (a + c) * (b + d)
    ok = (den > 0) & (n >= min_total)
    if ok.sum() < 20:
        return 1.0
    chi2 = np.sort(n[ok] * (a[ok] * d[ok] - b[ok] * c[ok]) ** 2 / den[ok])
    spread = max(MIN_DISPERSION, float(np.median(chi2)) / _CHI2_MEDIAN)
    # Below Poisson only when the median's upper 97.5 % confidence bound (its order statistic) is too:
    # with few tables a median below χ²₁'s by chance would take independent points for points sharing
    # one sample and make ordinary sampling noise look like a missing direction.
    m = len(chi2)
    upper = float(chi2[min(m - 1, int(math.ceil(m / 2 + 1.96 * math.sqrt(m) / 2)))]) / _CHI2_MEDIAN
    return 1.0 if spread < 1.0 <= upper else spread


#: A point's deficit that is no longer this unlikely once the next (or the last) bucket is added to it
#: was timed across the boundary (the point had next door what it lacked), not routed elsewhere.
SHIFT_CHANCE = 1e-3


def binomial_low(k: int, n: int, p: float) -> float:
    """P(X ≤ k) for X ~ Binomial(n, p)."""
    if k >= n:
        return 1.0
    if p <= 0:
        return 1.0
    if p >= 1:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    total = 0.0
    for x in range(0, k + 1):
        total += math.exp(
            math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1) + x * lp + (n - x) * lq
        )
    return min(1.0, total)
