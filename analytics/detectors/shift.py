"""Detector 2: traffic shifting between the two same-city production centers (failover or imbalance).

The share of the first production center in the pair's traffic is compared with its
baseline share. Shifts inside a planned window (maintenance, DR drill) are reported as
``info`` and marked planned; unplanned ones keep the configured severity.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
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
    suppressed: pd.Series | None = None,
    sampled: pd.DataFrame | None = None,
) -> list[Finding]:
    """``observed``/``history``: bytes per bucket with one column per production center.

    A shift needs both sides: one center's share falls by ``threshold`` AND, against their
    own baselines, that center lost traffic while the other gained (half of the loss, or the threshold
    over its own baseline: a failover may lose part of the traffic on the way). A spike in one center
    alone, or a drop in one alone, is a volume anomaly, not a shift. ``suppressed`` marks
    buckets where a collection gap makes the share meaningless. ``sampled``: the sampled packets behind
    ``observed`` (same shape): the share must also move by ``min_z`` standard errors of a share of that
    many packets, else sampling alone explains it (a thin tenant at 1:1000 has a few dozen packets an
    hour: its share swings by a quarter by chance).
    """
    a, b = cfg.production_centers
    if (
        observed.empty
        or history.empty
        or a not in observed
        or b not in observed
        or a not in history
        or b not in history
    ):
        return []
    idx = pd.DatetimeIndex(observed.index)
    total = observed[a] + observed[b]
    share = (observed[a] / total.where(total > 0)).astype(float)
    h_total = history[a] + history[b]
    base = seasonal((history[a] / h_total.where(h_total > 0)).dropna(), idx, min_history=1)
    expected = base.median
    exp_a = seasonal(history[a], idx, min_history=1).median
    exp_b = seasonal(history[b], idx, min_history=1).median
    m = cfg.threshold
    loss_a, loss_b = exp_a - observed[a], exp_b - observed[b]
    # The other center must take over at least half of what one center lost, or grow by the threshold
    # over its own baseline: a failover during which part of the traffic is lost (clients that give up,
    # sessions that do not come back) still moves the pair to one center.
    a_lost = (observed[a] < exp_a * (1 - m)) & ((-loss_b >= 0.5 * loss_a) | (-loss_b >= m * exp_b))
    b_lost = (observed[b] < exp_b * (1 - m)) & ((-loss_a >= 0.5 * loss_b) | (-loss_a >= m * exp_a))
    delta = (share - expected).abs()
    mask = (delta >= m) & (total >= cfg.min_volume) & expected.notna() & (a_lost | b_lost)
    if sampled is not None:
        n = (sampled.get(a, 0) + sampled.get(b, 0)).reindex(idx, fill_value=0).astype(float)
        # Under the share pooled from the bucket and its baseline, as a two-proportion test pools them:
        # a thin tenant's baseline share is itself a few packets (0 % or 100 % at night), and its own
        # p(1 - p) would make any move look certain.
        e = ((share + expected) / 2).clip(0.01, 0.99)
        # The baseline is the median of ``support`` such shares, each of about as many packets: its
        # variance is one share's (k = 1), half of it (k = 2), about π/2k of it (k >= 3).
        k = base.support.astype(float)
        of_base = np.where(k >= 3, np.pi / (2 * k.clip(lower=1)), 1 / k.clip(lower=1))
        var = (1 + of_base) * e * (1 - e) / n.where(n > 0)
        mask &= delta >= cfg.min_z * np.sqrt(_dispersion(delta, var) * var)
    if suppressed is not None:
        mask &= ~suppressed.reindex(mask.index, fill_value=False)
    out = []
    for start, end, sel in runs(mask, bucket):
        planned = [
            w
            for w in windows
            if w.start <= start and end <= w.end and (not w.centers or {a, b} & set(w.centers))
        ]
        now_share = float(share.loc[sel].mean())
        lost = a if bool(a_lost.loc[sel].mean() >= 0.5) else b
        failover = now_share >= cfg.failover_share or now_share <= 1 - cfg.failover_share
        kind = "failover" if failover else "imbalance"
        out.append(
            Finding(
                detector="center_shift",
                type=f"center_{kind}",
                severity="info" if planned else cfg.severity if failover else "warning",
                score=round(float(delta.loc[sel].max()), 3),
                window_start=start,
                window_end=end,
                entities={**entities, "center_pair": f"{a}-{b}", "away_from": lost},
                summary=f"{'planned ' if planned else ''}{kind}: {a} carries {now_share:.0%} of {a}+{b} "
                f"(usually {float(expected.loc[sel].mean()):.0%})",
                evidence={
                    **series_evidence(share, expected, sel),
                },
            )
        )
    return out


#: Median of χ² with one degree of freedom.
_CHI2_MEDIAN = 0.4549


def _dispersion(delta: pd.Series, var: pd.Series, min_buckets: int = 24) -> float:
    """How much wider than sampling alone the share moves from its baseline, learned from the window: the
    median squared z over the median of χ²₁, at least 1. Each center's traffic has noise of its own
    (a fat tenant's share moves by more than its thousands of sampled packets allow); a shift lasts hours
    of a week and leaves the median alone."""
    z2 = (delta**2 / var).replace([np.inf, -np.inf], np.nan).dropna()
    if len(z2) < min_buckets:
        return 1.0
    return max(1.0, float(z2.median()) / _CHI2_MEDIAN)
