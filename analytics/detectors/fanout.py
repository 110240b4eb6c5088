"""Detector 6: fan-out and scanning: one source reaching unusually many destinations or ports."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from analytics.config import FanoutConfig
from analytics.findings import Finding


def detect_fanout(
    current: pd.DataFrame,
    usual: pd.Series,
    cfg: FanoutConfig,
    window: tuple[datetime, datetime],
    min_distinct: int | None = None,
    scale: str = "5m",
) -> list[Finding]:
    """``current`` rows: src, distinct_dst, distinct_ports (in the window); ``usual``: src → typical fan-out.

    A source is flagged when its fan-out (the larger of destinations and ports) reaches
    ``min_distinct`` and ``ratio`` times its usual fan-out (sources never seen before count
    as a usual of 1). ``min_distinct`` overrides the configured one (longer scales: slow scans).
    """
    floor = cfg.min_distinct if min_distinct is None else min_distinct
    if current.empty:
        return []
    out = []
    for row in current.itertuples(index=False):
        fan = max(int(row.distinct_dst), int(row.distinct_ports))
        base = max(float(usual.get(row.src, 1.0)), 1.0)
        if fan < floor or fan < cfg.ratio * base:
            continue
        kind = "port_scan" if row.distinct_ports >= row.distinct_dst else "host_scan"
        out.append(
            Finding(
                detector="fanout",
                type=kind,
                severity=cfg.severity,
                score=round(fan / base, 2),
                window_start=window[0],
                window_end=window[1],
                entities={
                    "src": str(row.src),
                    "tenant": str(getattr(row, "tenant", "") or ""),
                    "workload": str(getattr(row, "workload", "") or ""),
                    "center": str(getattr(row, "center", "") or ""),
                    "scale": scale,
                },
                summary=f"{row.src} reached {row.distinct_dst} hosts / {row.distinct_ports} ports in {scale} "
                f"(usually {base:.0f})",
                evidence={
                    "distinct_dst": int(row.distinct_dst),
                    "distinct_ports": int(row.distinct_ports),
                    "usual": base,
                },
            )
        )
    return out
