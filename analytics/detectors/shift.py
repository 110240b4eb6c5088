"""Detector 2: traffic shifting between the two same-city production centers (failover or imbalance).

The share of the first production center in the pair's traffic is compared with its
baseline share. Shifts inside a planned window (maintenance, DR drill) are reported as
``info`` and marked planned; unplanned ones keep the configured severity.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from analytics.baseline import seasonal
from analytics.config import ShiftConfig, Window
from analytics.detectors._common import runs, series_evidence
from analytics.findings import Finding


def detect_center_shift(
    observed: pd.DataFrame,
    history: pd.DataFrame,
    entities: dict[str, str],
    cfg: ShiftConfig,
    bucket: timedelta,
    windows: tuple[Window, ...] = (),
) -> list[Finding]:
    """``observed``/``history``: bytes per bucket with one column per production center."""
    a, b = cfg.production_centers
    if observed.empty or a not in observed or b not in observed:
        return []
    total = observed[a] + observed[b]
    share = (observed[a] / total.where(total > 0)).astype(float)
    h_total = history[a] + history[b] if not history.empty else pd.Series(dtype=float)
    h_share = (history[a] / h_total.where(h_total > 0)).dropna() if not history.empty else h_total
    expected = seasonal(h_share, pd.DatetimeIndex(observed.index), min_history=1).median
    delta = (share - expected).abs()
    mask = (delta >= cfg.threshold) & (total >= cfg.min_volume) & expected.notna()
    out = []
    for start, end, sel in runs(mask, bucket):
        planned = [
            w
            for w in windows
            if w.start <= start and end <= w.end and (not w.centers or {a, b} & set(w.centers))
        ]
        now_share = float(share.loc[sel].mean())
        lost = a if now_share < float(expected.loc[sel].mean()) else b
        failover = now_share >= cfg.failover_share or now_share <= 1 - cfg.failover_share
        kind = "failover" if failover else "imbalance"
        out.append(
            Finding(
                detector="center_shift",
                severity="info" if planned else cfg.severity if failover else "warning",
                score=round(float(delta.loc[sel].max()), 3),
                window_start=start,
                window_end=end,
                entities={**entities, "center_pair": f"{a}-{b}", "kind": kind, "away_from": lost},
                summary=f"{'planned ' if planned else ''}{kind}: {a} carries {now_share:.0%} of {a}+{b} "
                f"(usually {float(expected.loc[sel].mean()):.0%})",
                evidence={
                    **series_evidence(share, expected, sel),
                    "planned": [w.note or w.kind for w in planned],
                },
            )
        )
    return out
