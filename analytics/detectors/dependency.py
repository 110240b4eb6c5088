"""Detector 4: a new cross-center dependency (a service pair never seen crossing centers in the baseline)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from analytics.config import DependencyConfig
from analytics.findings import Finding

PAIR = ("src_service", "dst_service", "src_center", "dst_center")


def detect_new_dependencies(
    current: pd.DataFrame,
    baseline_pairs: set[tuple[str, str, str, str]],
    cfg: DependencyConfig,
    window: tuple[datetime, datetime],
) -> list[Finding]:
    """``current`` rows: src_service, dst_service, src_center, dst_center, bytes, first_seen."""
    if current.empty:
        return []
    cross = current[
        (current["src_center"] != current["dst_center"])
        & (current["src_center"] != "")
        & (current["dst_center"] != "")
    ]
    agg = cross.groupby(list(PAIR), sort=True).agg(bytes=("bytes", "sum"), first_seen=("first_seen", "min"))
    out = []
    for key, row in agg.iterrows():
        if key in baseline_pairs or row["bytes"] < cfg.min_bytes:
            continue
        entities = dict(zip(PAIR, key, strict=True))
        tenant, _, workload = str(key[1]).partition("/")  # the service depended on names the finding
        entities |= {"tenant": tenant, "workload": workload}
        out.append(
            Finding(
                detector="new_dependency",
                type="new_dependency",
                severity=cfg.severity,
                score=round(float(row["bytes"]), 1),
                window_start=window[0],
                window_end=window[1],
                entities=entities,
                summary=f"new cross-center dependency {key[0]} ({key[2]}) → {key[1]} ({key[3]})",
                evidence={
                    "first_seen": pd.Timestamp(row["first_seen"]).isoformat(),
                    "bytes": float(row["bytes"]),
                },
            )
        )
    return out
