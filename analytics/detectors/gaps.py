"""Detector 8: collection gaps: an exporter gone silent or losing datagrams.

Besides findings it returns which buckets each exporter failed to cover, so that the
volume detector does not report the resulting "drop" as a traffic anomaly.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from analytics.config import GapConfig
from analytics.detectors._common import runs
from analytics.findings import Finding


def detect_gaps(
    health: pd.DataFrame,
    expected_exporters: list[str],
    window: pd.DatetimeIndex,
    cfg: GapConfig,
    bucket: timedelta,
    first_seen: dict[str, pd.Timestamp] | None = None,
) -> tuple[list[Finding], dict[str, pd.Series]]:
    """``health`` rows: time, exporter, flows, datagrams, lost (datagrams missing by sequence).

    Returns findings and, per exporter, a boolean series over ``window`` that is True where
    its collection was incomplete. ``first_seen``: exporters with no history are judged from
    their first record in the window on (cold start), not reported silent before it.
    """
    silent_buckets = max(1, int(cfg.silent_after_s // bucket.total_seconds()))
    out: list[Finding] = []
    gaps: dict[str, pd.Series] = {}
    # One pass over the rows (not one comparison of every row per exporter: hundreds of exporters).
    per = health.groupby(["exporter", "time"], sort=False)[["datagrams", "lost"]].sum()
    by_exporter = {e: g.droplevel(0) for e, g in per.groupby(level=0, sort=False)} if len(per) else {}
    empty = pd.DataFrame({"datagrams": [], "lost": []}, index=pd.DatetimeIndex([], tz="UTC"))
    for exporter in expected_exporters:
        mine = by_exporter.get(exporter, empty).reindex(window, fill_value=0)
        silent = mine["datagrams"] == 0
        if first_seen and exporter in first_seen:
            silent &= window >= first_seen[exporter]
        # A run shorter than the silence threshold is not yet a gap.
        silent = silent & silent.groupby((~silent).cumsum()).transform("size").ge(silent_buckets)
        lossy = mine["lost"] > cfg.loss_ratio * (mine["datagrams"] + mine["lost"]).clip(lower=1)
        gaps[exporter] = silent | lossy
        for kind, mask in (("silent", silent), ("loss", lossy & ~silent)):
            for start, end, sel in runs(mask, bucket):
                lost = int(mine.loc[sel, "lost"].sum())
                out.append(
                    Finding(
                        detector="collection_gap",
                        type=f"collection_gap_{kind}",
                        severity=cfg.severity,
                        score=float(len(sel))
                        if kind == "silent"
                        else round(lost / max(1, int(mine.loc[sel].sum().sum())), 3),
                        window_start=start,
                        window_end=end,
                        entities={"exporter": exporter},
                        summary=f"exporter {exporter} "
                        + ("sent nothing" if kind == "silent" else f"lost {lost} datagrams"),
                        evidence={"buckets": [t.isoformat() for t in sel]},
                    )
                )
    return out, gaps
