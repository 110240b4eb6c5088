"""Detector 3: a new kind of traffic with a disaster-recovery center.

DR centers do carry traffic: databases replicate to their standby there, backups land there. So
the baseline is the kinds of DR traffic seen in history, a kind being (client center, server
center, the service's tenant, workload, port, proto, the client's workload). A
production kind never seen before is reported, named by the affected service (the server end's
tenant and workload, the centers, the port), not by the client network; known kinds are normal.
Planned drills are handled like every planned window (:mod:`analytics.planned`).
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from analytics.config import DrTrafficConfig
from analytics.detectors._common import runs
from analytics.findings import Finding

KIND = ["client_center", "server_center", "tenant", "workload", "client_workload", "port", "proto"]


def known_kinds(history: pd.DataFrame, min_days: int) -> set[tuple]:
    """Kinds of DR traffic seen on at least ``min_days`` days of history."""
    if history.empty:
        return set()
    days = history.groupby(KIND)["days"].max()
    return {tuple(str(x) for x in k) for k in days[days >= min_days].index}


def detect_dr_traffic(
    current: pd.DataFrame, known: set[tuple], cfg: DrTrafficConfig, bucket: timedelta
) -> list[Finding]:
    """``current`` rows (:func:`analytics.model.dr_kinds` per bucket): t, client_center, server_center,
    client_zone, server_zone, tenant, workload, client_workload, port, proto, bytes, sampled."""
    if current.empty:
        return []
    prod = set(cfg.production_zones)
    rows = current[current["client_zone"].isin(prod) | current["server_zone"].isin(prod)]
    out = []
    for kind, g in rows.groupby(KIND, sort=True):
        kind = tuple(str(x) for x in kind)
        if kind in known:
            continue
        per = g.groupby("t")[["bytes", "sampled"]].sum().sort_index()
        per = per[per["bytes"] >= cfg.min_bytes]
        if per.empty:
            continue
        mask = pd.Series(True, index=pd.DatetimeIndex(per.index))
        full = mask.reindex(pd.date_range(mask.index[0], mask.index[-1], freq=bucket), fill_value=False)
        client_center, server_center, tenant, workload, client_workload, port, proto = kind
        clients = [client_workload] if client_workload else []
        for start, end, sel in runs(full, bucket):
            part = per.loc[per.index.isin(sel)]
            out.append(
                Finding(
                    detector="dr_traffic",
                    type="dr_traffic_new",
                    severity=cfg.severity,
                    score=round(float(part["bytes"].sum()), 1),
                    confidence=round(min(1.0, float(part["sampled"].sum()) / 20.0), 3),
                    window_start=start,
                    window_end=end,
                    entities={
                        "tenant": tenant,
                        "workload": workload,
                        "src_center": client_center,
                        "dst_center": server_center,
                        "port": port,
                        "proto": proto,
                        "client_workload": client_workload,
                    },  # fmt: skip
                    summary=f"new kind of DR traffic: {clients or ['?']} in {client_center} → {tenant}/"
                    f"{workload or '?'}:{port} in {server_center} ({part['bytes'].sum():,.0f} bytes)",
                    evidence={
                        "buckets": [t.isoformat() for t in part.index],
                        "bytes": part["bytes"].round(1).tolist(),
                        "sampled_packets": part["sampled"].astype(float).tolist(),
                        "client_workloads": clients,
                        "baseline": f"{len(known)} kinds of DR traffic known from history",
                    },
                )
            )
    return out
