"""Detector 7: elephant traffic against the configured inter-center link capacity."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from analytics.config import ElephantConfig
from analytics.detectors._common import runs
from analytics.findings import Finding


def capacity_of(cfg: ElephantConfig, a: str, b: str) -> float | None:
    return cfg.link_capacity_bps.get(f"{a}-{b}") or cfg.link_capacity_bps.get(f"{b}-{a}")


def detect_elephants(
    usage: pd.DataFrame, cfg: ElephantConfig, bucket: timedelta, top_flows: pd.DataFrame | None = None
) -> list[Finding]:
    """``usage`` rows: time, src_center, dst_center, bytes (scaled, per bucket, one direction).

    A center pair whose rate exceeds ``threshold`` × capacity is flagged; ``top_flows``
    (src_center, dst_center, src, dst, dst_port, bytes) become the evidence.
    """
    if usage.empty or not cfg.link_capacity_bps:
        return []
    out = []
    for (a, b), g in usage.groupby(["src_center", "dst_center"], sort=True):
        cap = capacity_of(cfg, a, b)
        if not cap or a == b:
            continue
        bps = g.groupby("time")["bytes"].sum().sort_index() * 8 / bucket.total_seconds()
        util = bps / cap
        for start, end, sel in runs(util >= cfg.threshold, bucket):
            evidence: dict = {"utilisation": [round(float(u), 3) for u in util.loc[sel]], "capacity_bps": cap}
            if top_flows is not None and not top_flows.empty:
                mine = top_flows[(top_flows["src_center"] == a) & (top_flows["dst_center"] == b)]
                evidence["top_flows"] = mine.nlargest(5, "bytes").to_dict("records")
            out.append(
                Finding(
                    detector="elephant",
                    type="elephant",
                    severity=cfg.severity,
                    score=round(float(util.loc[sel].max()), 3),
                    window_start=start,
                    window_end=end,
                    entities={"src_center": a, "dst_center": b},
                    summary=f"{a}→{b} at {float(util.loc[sel].max()):.0%} of its {cap / 1e9:g} Gbit/s link",
                    evidence=evidence,
                )
            )
    return out
