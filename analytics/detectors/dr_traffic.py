"""Detector 3: production traffic to or from the disaster-recovery center outside drill windows."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from analytics.config import DrTrafficConfig, Window
from analytics.findings import Finding


def detect_dr_traffic(
    traffic: pd.DataFrame, cfg: DrTrafficConfig, bucket: timedelta, windows: tuple[Window, ...] = ()
) -> list[Finding]:
    """``traffic`` rows: time, src_center, dst_center, src_zone, dst_zone, tenant, bytes (scaled)."""
    if traffic.empty:
        return []
    dr = set(cfg.dr_centers)
    prod = set(cfg.production_zones)
    touches_dr = traffic["src_center"].isin(dr) | traffic["dst_center"].isin(dr)
    production = traffic["src_zone"].isin(prod) | traffic["dst_zone"].isin(prod)
    rows = traffic[touches_dr & production & (traffic["src_center"] != traffic["dst_center"])].copy()
    if rows.empty:
        return []
    # Both directions of a conversation are one finding: name the DR end dst_center.
    src_is_dr = rows["src_center"].isin(dr)
    rows["dr_center"] = rows["dst_center"].where(~src_is_dr, rows["src_center"])
    rows["other_center"] = rows["src_center"].where(~src_is_dr, rows["dst_center"])
    out = []
    for (other, dr_center, tenant), group in rows.groupby(["other_center", "dr_center", "tenant"], sort=True):
        per_bucket = group.groupby("time")["bytes"].sum().sort_index()
        per_bucket = per_bucket[per_bucket >= cfg.min_bytes]
        # Exports trail the traffic by up to a bucket: a drill also covers the bucket after it.
        drill = [
            any(
                w.kind == "dr_drill"
                and (
                    w.covers(t.to_pydatetime(), dr_center)
                    or w.covers((t - bucket).to_pydatetime(), dr_center)
                )
                for w in windows
            )
            for t in per_bucket.index
        ]
        unplanned = per_bucket[[not d for d in drill]]
        if unplanned.empty:
            continue
        entities = {"src_center": other, "dst_center": dr_center, "tenant": tenant}
        out.append(
            Finding(
                detector="dr_traffic",
                severity=cfg.severity,
                score=round(float(unplanned.sum()), 1),
                window_start=unplanned.index[0].to_pydatetime(),
                window_end=(unplanned.index[-1] + bucket).to_pydatetime(),
                entities=entities,
                summary=f"production traffic between {other} and DR center {dr_center} for tenant {tenant} "
                f"outside any drill ({unplanned.sum():,.0f} bytes)",
                evidence={
                    "buckets": [t.isoformat() for t in unplanned.index],
                    "bytes": unplanned.round(1).tolist(),
                },
            )
        )
    return out
