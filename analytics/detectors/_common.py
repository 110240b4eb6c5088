"""Helpers the detectors share: turning flagged buckets into windows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import numpy as np
import pandas as pd


def runs(mask: pd.Series, bucket: timedelta) -> Iterator[tuple[datetime, datetime, pd.Index]]:
    """Consecutive True buckets of a time-indexed boolean series, as (start, end, index) windows."""
    mask = mask.fillna(False).astype(bool)
    if not mask.any():
        return
    idx = mask.index
    values = mask.to_numpy()
    edges = np.flatnonzero(np.diff(np.concatenate(([0], values.astype(int), [0]))))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        sel = idx[start:stop]
        yield sel[0].to_pydatetime(), (sel[-1] + bucket).to_pydatetime(), sel


def series_evidence(observed: pd.Series, expected: pd.Series, sel: pd.Index) -> dict:
    return {
        "buckets": [t.isoformat() for t in sel],
        "observed": [round(float(v), 3) for v in observed.loc[sel]],
        "expected": [round(float(v), 3) for v in expected.loc[sel]],
    }
