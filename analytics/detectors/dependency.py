"""Detector 4: a new cross-center dependency (a service pair never seen crossing centers in the baseline).

Minimum evidence under sampling: a known pair that is rare (a few sampled packets a week at 1:1000)
may be absent from the sampled history and show up in the window. A pair is called new only once
it has ``min_records`` sampled packets in the window and, at the rate it shows there so far
(sampled packets over the time since the window began), the chance that the history would hold
none of its packets, ``exp(-rate × history)``, is below ``max_unseen_p``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta

import pandas as pd

from analytics.config import DependencyConfig
from analytics.findings import Finding

PAIR = ("src_service", "dst_service", "src_center", "dst_center")


def so_far(
    current: pd.DataFrame, start: datetime, bucket: timedelta
) -> Iterator[tuple[pd.Timestamp, pd.DataFrame, float]]:
    """Per bucket ``t`` of ``current`` (rows per bucket and pair): the rows with each pair's bytes and
    sampled packets summed, and first appearance, since the window began, and the seconds elapsed."""
    cur = current.sort_values("t", kind="stable").reset_index(drop=True)
    by_pair = cur.groupby(list(PAIR), sort=False)
    cur["sampled"] = by_pair["sampled"].cumsum()
    cur["bytes"] = by_pair["bytes"].cumsum()
    cur["first_seen"] = by_pair["first_seen"].cummin()
    for t, g in cur.groupby("t"):
        yield pd.Timestamp(t), g, (pd.Timestamp(t) + bucket - pd.Timestamp(start)).total_seconds()


def detect_new_dependencies(
    current: pd.DataFrame,
    baseline_pairs: set[tuple[str, str, str, str]],
    cfg: DependencyConfig,
    window: tuple[datetime, datetime],
    history_s: float | None = None,
    elapsed_s: float | None = None,
) -> list[Finding]:
    """``current`` rows: src_service, dst_service, src_center, dst_center, bytes, first_seen, and
    ``sampled`` (sampled packets so far in the window) when the evidence rule applies: with
    ``history_s`` (seconds of history the baseline covers) and ``elapsed_s`` (seconds of the window
    behind these rows)."""
    if current.empty:
        return []
    cross = current[
        (current["src_center"] != current["dst_center"])
        & (current["src_center"] != "")
        & (current["dst_center"] != "")
    ]
    aggs = {"bytes": ("bytes", "sum"), "first_seen": ("first_seen", "min")}
    evidence = history_s is not None and elapsed_s is not None and "sampled" in cross
    if evidence:
        aggs["sampled"] = ("sampled", "sum")
    agg = cross.groupby(list(PAIR), sort=True).agg(**aggs)
    out = []
    for key, row in agg.iterrows():
        if key in baseline_pairs or row["bytes"] < cfg.min_bytes:
            continue
        unseen_p = None
        if evidence:
            k = float(row["sampled"])
            unseen_p = math.exp(-k * float(history_s or 0) / max(float(elapsed_s or 0), 1.0))
            if k < cfg.min_records or unseen_p > cfg.max_unseen_p:
                continue  # not yet evidence enough: a rare known pair unsampled in history looks the same
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
                    **(
                        {
                            "sampled_packets": float(row["sampled"]),
                            "p_unsampled_in_history": float(f"{unseen_p:.3g}"),
                            "min_evidence": {"records": cfg.min_records, "p": cfg.max_unseen_p},
                        }
                        if unseen_p is not None
                        else {}
                    ),
                },
            )
        )
    return out
