"""Detector 1: volume spike or drop of one entity (center pair, tenant, service) against its seasonal baseline."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from analytics.baseline import robust_z, seasonal
from analytics.config import VolumeConfig
from analytics.detectors._common import runs, series_evidence
from analytics.findings import Finding


def detect_volume(
    observed: pd.Series,
    history: pd.Series,
    entities: dict[str, str],
    cfg: VolumeConfig,
    bucket: timedelta,
    suppressed: pd.Series | None = None,
) -> list[Finding]:
    """Spikes and drops in ``observed`` (bytes per bucket) for one entity.

    ``suppressed`` marks buckets where a collection gap makes a drop meaningless: drops
    there are not reported (spikes still are: a gap cannot create traffic).
    """
    if observed.empty:
        return []
    expected = seasonal(history, pd.DatetimeIndex(observed.index), min_history=cfg.min_history)
    warm = (expected.support >= cfg.min_history) & (expected.median >= cfg.min_expected)
    z = robust_z(observed, expected)
    out = []
    for kind, mask in (("spike", (z > cfg.spike_z) & warm), ("drop", (z < -cfg.drop_z) & warm)):
        if kind == "drop" and suppressed is not None:
            mask &= ~suppressed.reindex(mask.index, fill_value=False)
        for start, end, sel in runs(mask, bucket):
            ratio = float(observed.loc[sel].sum() / max(expected.median.loc[sel].sum(), 1.0))
            out.append(
                Finding(
                    detector="volume",
                    severity=cfg.severity,
                    score=round(float(z.loc[sel].abs().max()), 2),
                    window_start=start,
                    window_end=end,
                    entities={**entities, "kind": kind},
                    summary=f"traffic {kind}: {ratio:.1f}x the usual volume",
                    evidence=series_evidence(observed, expected.median, sel),
                )
            )
    return out
