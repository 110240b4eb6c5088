"""Seasonal, outlier-robust baselines for traffic series.

A series is indexed by UTC time bucket. Its baseline for a bucket is the median of the
same slot (hour of week, else hour of day when too few weeks are known) in the history
before it, with the median absolute deviation (MAD, scaled to a standard deviation) as
spread. Medians ignore the spikes they are meant to find; a warm-up rule refuses to judge
a slot seen fewer than ``min_history`` times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Expected:
    """The baseline for each bucket of a window: median, robust sigma and how much history stood behind it."""

    median: pd.Series
    sigma: pd.Series
    support: pd.Series  # number of history points per slot (0: not warm)


def _slots(index: pd.DatetimeIndex, weekly: bool) -> np.ndarray:
    """Hour of week, or (weekend?, hour of day): weekends are never judged by weekdays."""
    hour = index.hour.to_numpy()
    dow = index.day_of_week.to_numpy()
    return dow * 24 + hour if weekly else (dow >= 5) * 24 + hour


def _periods(index: pd.DatetimeIndex, weekly: bool) -> np.ndarray:
    """The period a point belongs to (its week, or its day): support counts periods, not buckets."""
    days = index.normalize().as_unit("s").asi8 // 86_400
    return (days + 3) // 7 if weekly else days  # 1970-01-01 was a Thursday: +3 aligns weeks on Monday


def seasonal(
    history: pd.Series, window: pd.DatetimeIndex, *, min_history: int = 3, floor: float = 0.0
) -> Expected:
    """Expected values for ``window`` from ``history`` (a series over earlier buckets).

    Hour-of-week slots when every slot of the window has ``min_history`` weeks behind it,
    else hour-of-day slots split into weekdays and weekends, with ``support`` counting the
    days behind each. ``floor`` is a minimum sigma: a perfectly flat history would
    otherwise make any change infinitely surprising.
    """
    history = history.dropna()
    out = None
    for weekly in (True, False):
        hidx = pd.DatetimeIndex(history.index)
        slots = _slots(hidx, weekly)
        grouped = history.groupby(slots)
        med = grouped.median()
        # MAD per slot without a Python function per group: |x − its slot's median|, then the median.
        mad = (history - med.reindex(slots).to_numpy()).abs().groupby(slots).median()
        cnt = pd.Series(_periods(hidx, weekly), index=history.index).groupby(slots).nunique()
        want = _slots(window, weekly)
        median = pd.Series(med.reindex(want).to_numpy(), index=window)
        sigma = pd.Series((mad.reindex(want) * MAD_TO_SIGMA).clip(lower=floor).to_numpy(), index=window)
        support = pd.Series(cnt.reindex(want).fillna(0).astype(int).to_numpy(), index=window)
        out = Expected(median, sigma, support)
        if weekly and (support >= min_history).all():
            return out
    assert out is not None
    return out


def robust_z(observed: pd.Series, expected: Expected, *, relative_floor: float = 0.1) -> pd.Series:
    """(observed − median) / sigma, with sigma at least ``relative_floor`` × median.

    The relative floor keeps a quiet, regular series from flagging ordinary jitter.
    """
    sigma = np.maximum(
        expected.sigma.to_numpy(dtype=float), relative_floor * np.abs(expected.median.to_numpy(dtype=float))
    )
    sigma = np.where(sigma > 0, sigma, np.nan)
    z = (observed.to_numpy(dtype=float) - expected.median.to_numpy(dtype=float)) / sigma
    return pd.Series(z, index=observed.index)


def ewma_baseline(series: pd.Series, *, span: int = 12, k: float = 3.0) -> pd.Series:
    """Theia-style reference detector: EWMA with the whole series' standard deviation.

    Returns a boolean series of anomalies, |x − ewma| > k·std. Kept to score netobs's
    detectors against on the same scenario, not used in production.
    """
    ewma = series.ewm(span=span, adjust=False).mean().shift(1)
    std = float(series.std(ddof=0)) or 1.0
    return (series - ewma).abs() > k * std
