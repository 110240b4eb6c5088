"""Seasonal baselines in log space for many series at once, with sampling uncertainty.

Traffic is multiplicative: a service at a tenth of its usual volume is as far from normal as one
at ten times it. So each series is judged by ``log(observed) − log(expected)``: drops and spikes
are symmetric, and a drop to 0.1× scores like a 10× spike (a robust z over raw bytes never can:
a drop's z is bounded by median/σ).

For each series (a row of a matrix over time periods of one scale: 5 minutes, 1 hour, 1 day):

* the **level** of a period is the median of the log volume of the same slot in history: hour of
  week (day of week at the day scale) when every slot the window needs has ``min_history`` weeks
  behind it, else hour of day split into weekdays and weekends; month-end days (the last
  ``month_end_days`` of a month) have slots of their own once history holds a month end;
* the **spread** is the series' robust spread of log residuals (MAD, one figure per series: a handful
  of weeks cannot give one per slot), each residual taken against the median of its slot's values on
  the *other* days (or weeks) and scaled by that median's known error (a residual to a median that
  holds it understates the spread: 0.46σ for three values), less the sampling noise its history
  periods already hold (median 1/n; it is added back for the period judged), widened by the error of
  a median of few values;
* the **sampling noise** of a period is Poisson in the sampled records behind it: an estimate
  scaled up from ``n`` sampled packets has a relative error of about ``1/√n`` (at 1:1000, two
  sampled packets say little), taken at the count expected under the baseline;
* the **count test** judges the sampled packets against those expected as a count of lumps: the
  larger of the dispersion the log spread implies (a negative binomial's, with the spread at least the
  log test's floor) and the one the history's own counts show (traffic seen or unseen by whole
  conversations varies more than Poisson); the expected count is a median of few history values, so
  the count is judged against the likeliest level within that median's error (a profile of the
  Poisson-lognormal tail, :func:`profile_poisson_z`, which keeps the Poisson's light lower tail);
* **evidence**: a period whose expected sampled count is under ``min_records`` is not judged at
  this scale (the caller tries a longer one) and is counted as such.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

MAD_TO_SIGMA = 1.4826
WEEKEND = 5  # Saturday = 5, Sunday = 6 (pandas day_of_week)


@dataclass(frozen=True)
class LogJudgement:
    """Per series (rows) and window period (columns)."""

    log_ratio: np.ndarray  # log(observed) − expected log level (NaN: not judged)
    z: np.ndarray  # log_ratio / total sigma
    z_count: (
        np.ndarray
    )  # the sampled count against its expectation (Poisson, widened by the history's spread)
    expected: np.ndarray  # expected volume (exp of the level)
    records: np.ndarray  # expected sampled records under the baseline
    support: np.ndarray  # history periods behind the slot (weeks or days)
    judged: np.ndarray  # bool: enough history and evidence to judge
    cold: np.ndarray  # bool: not enough history for the slot
    thin: np.ndarray  # bool: history enough, but fewer than min_records expected
    month_end_unlearned: np.ndarray  # bool: a month-end period judged without month-end history
    slots: np.ndarray  # per series: "hour_of_week"/"day_of_week" or "weekday_weekend"


def _month_end(index: pd.DatetimeIndex, days: int) -> np.ndarray:
    if days <= 0:
        return np.zeros(len(index), dtype=bool)
    return np.asarray(index.days_in_month - index.day < days)


def slot_keys(index: pd.DatetimeIndex, scale_s: int, weekly: bool, month_end: np.ndarray) -> np.ndarray:
    """Integer slot of each period: hour (or day) of week, or (weekend?, hour); month-end days apart."""
    dow = index.day_of_week.to_numpy()
    hour = index.hour.to_numpy() if scale_s < 86_400 else np.zeros(len(index), dtype=int)
    if weekly:
        key = dow * 24 + hour
    else:
        key = (dow >= WEEKEND) * 24 + hour
    return np.where(month_end, 10_000 + (dow >= WEEKEND) * 24 + hour, key)


def _periods(index: pd.DatetimeIndex, weekly: bool) -> np.ndarray:
    days = index.normalize().as_unit("s").asi8 // 86_400
    return (days + 3) // 7 if weekly else days  # 1970-01-01 was a Thursday: +3 aligns weeks on Monday


class _Slots:
    """Per series and slot key: median of the log volume, median of the sampled records, and the
    distinct periods with data. One grouped pass over the transposed matrices (pandas' median per
    group is vectorised over the series); looked up for any list of keys."""

    def __init__(self, hx: np.ndarray, records: np.ndarray, keys: np.ndarray, periods: np.ndarray):
        self.n = hx.shape[0]
        self.empty = not hx.shape[1]
        if self.empty:
            return
        frame = pd.DataFrame(hx.T)
        self.med = frame.groupby(keys).median()  # slots × series
        self.rec = pd.DataFrame(records.T).groupby(keys).median()
        self.sup = frame.notna().groupby([keys, periods]).any().groupby(level=0).sum()

    def level(self, want: np.ndarray) -> np.ndarray:
        return self._take(self.med, want)

    def records(self, want: np.ndarray) -> np.ndarray:
        return self._take(self.rec, want)

    def support(self, want: np.ndarray) -> np.ndarray:
        return np.nan_to_num(self._take(self.sup, want), nan=0.0)

    def _take(self, frame: pd.DataFrame, want: np.ndarray) -> np.ndarray:
        if self.empty:
            return np.full((self.n, len(want)), np.nan)
        return frame.reindex(want).to_numpy(dtype=float).T


def judge(
    hist_bytes: np.ndarray,
    hist_records: np.ndarray,
    hist_index: pd.DatetimeIndex,
    obs_bytes: np.ndarray,
    obs_index: pd.DatetimeIndex,
    obs_records: np.ndarray | None = None,
    *,
    scale_s: int,
    sampled: np.ndarray,
    min_history: int = 3,
    min_records: float = 10.0,
    month_end_days: int = 2,
    sigma_floor: float = 0.05,
) -> LogJudgement:
    """Judge ``obs_bytes`` (series × window periods) against ``hist_bytes``/``hist_records`` (series ×
    history periods; NaN before a series existed). ``sampled`` (per series) says whether its volumes
    are scaled-up samples (Poisson noise applies)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: series with no history
        return _judge(hist_bytes, hist_records, hist_index, obs_bytes, obs_index, obs_records, scale_s, sampled,
                      min_history, min_records, month_end_days, sigma_floor)  # fmt: skip


#: Offsets of the expected level, in units of its error, over which :func:`profile_poisson_z` looks.
_PROFILE_STEPS = np.arange(0.0, 4.01, 0.5)


def profile_poisson_z(k: np.ndarray, lam: np.ndarray, level_sd: np.ndarray) -> np.ndarray:
    """z of observing ``k`` events where ``lam`` were expected and ``lam`` itself is uncertain by a
    factor exp(±``level_sd``): the smallest combined z, √(x² + z(k; lam·e^{±x·level_sd})²), over
    offsets x of the level toward the observation (a profile, or Laplace, approximation of the
    Poisson-lognormal tail). It keeps the Poisson's light lower tail (a drop to nothing stays
    evidence) where widening the count's variance would make it as heavy as a normal's."""
    k = np.asarray(k, dtype=float)
    lam = np.asarray(lam, dtype=float)
    level_sd = np.broadcast_to(np.nan_to_num(np.asarray(level_sd, dtype=float), nan=0.0), lam.shape)
    z0 = poisson_z(k, lam)
    toward = np.where(z0 < 0, -1.0, 1.0)
    best = np.abs(z0)
    for x in _PROFILE_STEPS[1:]:
        zx = poisson_z(k, lam * np.exp(toward * x * level_sd))
        zx = np.where(np.sign(zx) == np.sign(z0), np.abs(zx), 0.0)  # past the observation: no evidence
        best = np.minimum(best, np.sqrt(x * x + zx * zx))
    return np.sign(z0) * best


def poisson_z(k: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """z of observing ``k`` events where ``lam`` were expected (Byar's approximation of the Poisson
    tail: accurate to a few percent in z from k = 0 on, where a normal approximation of log counts
    is far too light in the lower tail). Positive above the expectation, negative below."""
    k = np.asarray(k, dtype=float)
    lam = np.maximum(np.asarray(lam, dtype=float), 1e-9)
    up = np.maximum(k, 1.0)
    down = k + 1.0
    z_up = 3 * np.sqrt(up) * (1 - 1 / (9 * up) - np.cbrt(lam / up))
    z_down = 3 * np.sqrt(down) * (1 - 1 / (9 * down) - np.cbrt(lam / down))
    return np.where(k > lam, np.maximum(z_up, 0.0), np.minimum(z_down, 0.0))


def _judge(hist_bytes, hist_records, hist_index, obs_bytes, obs_index, obs_records, scale_s, sampled, min_history,
           min_records, month_end_days, sigma_floor) -> LogJudgement:  # fmt: skip
    n, m = obs_bytes.shape
    typical = np.nanmedian(np.where(hist_bytes > 0, hist_bytes, np.nan), axis=1) if hist_bytes.size else None
    typical = np.nan_to_num(typical if typical is not None else np.zeros(n), nan=1.0)
    offset = np.maximum(1.0, 0.01 * typical)[:, None]  # log(0) guard: a full drop reads as 1/100
    hx = np.log(hist_bytes + offset)
    ox = np.log(obs_bytes + offset)
    h_me, o_me = _month_end(hist_index, month_end_days), _month_end(obs_index, month_end_days)
    chosen = None
    for weekly in (True, False):
        c = _candidate(hx, hist_records, hist_index, obs_index, scale_s, weekly, h_me, o_me, min_history)
        if chosen is None:
            chosen = c
        else:  # series whose weekly slots are not all warm take the weekday/weekend ones
            keep = chosen["warm"][:, None]
            chosen = {k: (np.where(keep if v.ndim == 2 else chosen["warm"], chosen[k], v) if k != "warm" else v)
                      for k, v in c.items()}  # fmt: skip
            chosen["slots"] = np.where(keep[:, 0], "hour_of_week", "weekday_weekend")
    assert chosen is not None
    level, support, recs, nvals = chosen["level"], chosen["support"], chosen["recs"], chosen["nvals"]
    me_cold, me_used = chosen["me_cold"], chosen["me_used"]
    slots = chosen.get("slots", np.full(n, "hour_of_week", dtype=object))
    if scale_s >= 86_400:
        slots = np.where(slots == "hour_of_week", "day_of_week", slots)
    # The history's spread already holds the sampling noise of its periods (about 1/n in the log
    # variance for n sampled packets); the Poisson term and the count test add it again for the period
    # judged. Counted twice it hid drops of thin series: only the spread beyond Poisson is kept.
    sigma = np.sqrt(np.maximum(chosen["sigma"] ** 2 - _poisson_var(hist_records, hx, sampled), 0.0))
    sigma = np.nan_to_num(sigma, nan=np.inf)[:, None]
    recs = np.nan_to_num(recs, nan=0.0)
    poisson = np.where(sampled[:, None], 1.0 / np.maximum(recs, 0.5), 0.0)
    # The level is a median of ``nvals`` history values, each with the series' spread and its sampling
    # noise: both widen the log test (a median of three thin hours misses by a third of a Poisson σ²).
    # Not the count test: a negative binomial's lower tail is far lighter than a Poisson of its lumps'.
    widen = 1 + 1.57 / np.maximum(nvals, 1)
    total = np.sqrt((sigma**2 + poisson) * widen + sigma_floor**2)
    # Month-end slots have one or two month ends behind them at best: one is enough to use them.
    cold = np.where(me_used, support < 1, support < min_history) | ~np.isfinite(level)
    thin = ~cold & sampled[:, None] & (recs < min_records)
    judged = ~cold & ~thin
    ratio = np.where(judged, ox - level, np.nan)
    # The count test: sampled packets seen against those expected, with the series' own spread as
    # over-dispersion (a negative binomial's variance λ + λ²σ², as a widening of the Poisson z).
    if obs_records is None:
        z_count = np.full_like(ratio, np.inf)
    else:
        # Counts that come in lumps (a conversation seen in one period, unseen in the next: a router
        # sees traffic between two nodes, not inside one) vary more than Poisson: the history's
        # own dispersion of the counts, where it says more than the log spread does.
        # The spread is at least the floor the log test keeps (traffic is never exactly Poisson: a
        # series whose history shows no spread beyond sampling has one too small to measure, not none).
        nb = 1 + recs * np.clip(sigma, sigma_floor, 10.0) ** 2
        # Judged as lumps of that size (a quasi-Poisson count): dividing a Poisson z by the spread
        # instead gives the same figure for many lumps and far too light a tail for a few.
        d = np.fmax(nb, np.nan_to_num(chosen["dispersion"], nan=1.0)[:, None])
        # The expectation is a median of ``nvals`` history values, off by its own error (log variance
        # v(nvals) × one value's): the count is judged against the likeliest level within that error.
        level_sd = np.sqrt(median_var(np.maximum(nvals, 1)) * (sigma**2 + poisson))
        z_count = np.where(
            sampled[:, None], profile_poisson_z(obs_records / d, recs / d, level_sd), np.sign(ratio) * np.inf
        )
    return LogJudgement(
        log_ratio=ratio,
        z=ratio / total,
        z_count=z_count,
        expected=np.exp(level) - offset,
        records=recs,
        support=support,
        judged=judged,
        cold=cold,
        thin=thin,
        month_end_unlearned=me_cold & judged,
        slots=np.asarray(slots, dtype=object),
    )


def _poisson_var(hist_records: np.ndarray, hx: np.ndarray, sampled: np.ndarray) -> np.ndarray:
    """Per series: the log variance sampling alone gives its history periods, 1/n for n sampled
    packets, the median over periods (as robust as the MAD it is taken from); 0 if not sampled."""
    if not hist_records.size:
        return np.zeros(hx.shape[0])
    inv = np.where(np.isfinite(hx), 1.0 / np.maximum(hist_records, 0.5), np.nan)
    with np.errstate(all="ignore"):
        out = np.nan_to_num(np.nanmedian(inv, axis=1), nan=0.0)
    return np.where(sampled, out, 0.0)


#: Residuals a series needs before its tails say more than its MAD (5-minute and hourly scales over
#: two weeks hold thousands / hundreds; daily ones do not).
TAIL_MIN_RESIDUALS = 200
TAIL_Q, TAIL_Z = 0.025, 1.96


def _tail_sigma(resid: np.ndarray) -> np.ndarray:
    """The spread the series' own tails show: its 2.5 % and 97.5 % residuals over 1.96, the larger.

    The MAD sees the middle of the residuals only. A series whose traffic comes and goes in whole
    periods (one conversation a bucket, seen or not as its pods share a node; a batch job) has a
    narrow middle and heavy tails: judged by its MAD, every few hundred periods one of them looks
    like a drop to 0.3×. For a normal series the two figures agree; anomalies in history up to 2.5 %
    of its periods (8 hours of two weeks at the hourly scale) do not move the quantiles."""
    n = np.sum(np.isfinite(resid), axis=1)
    out = np.full(resid.shape[0], np.nan)
    rows = n >= TAIL_MIN_RESIDUALS
    if rows.any():
        lo, hi = np.nanquantile(resid[rows], [TAIL_Q, 1 - TAIL_Q], axis=1)
        out[rows] = np.maximum(-lo, hi) / TAIL_Z
    return out


#: Variance of the median of m independent standard normal values, m = 1..40 (simulated, 400 000
#: draws each); beyond, π / (2m + 2).
_MEDIAN_VAR = np.array([
    0.9974, 0.4994, 0.4491, 0.2989, 0.2867, 0.2155, 0.21, 0.168, 0.1662, 0.1383, 0.1372, 0.1173, 0.1166,
    0.1022, 0.1023, 0.0903, 0.0899, 0.0807, 0.081, 0.0734, 0.0734, 0.0673, 0.0671, 0.0616, 0.0619, 0.0573,
    0.0572, 0.0534, 0.0532, 0.0501, 0.0501, 0.047, 0.0469, 0.0443, 0.0442, 0.042, 0.0419, 0.0399, 0.0399, 0.0381,
])  # fmt: skip


def median_var(m: np.ndarray) -> np.ndarray:
    """Variance of the median of ``m`` standard normal values (NaN where m < 1)."""
    m = np.asarray(m, dtype=float)
    idx = np.clip(np.nan_to_num(m, nan=0.0), 1, len(_MEDIAN_VAR)).astype(int) - 1
    out = np.where(m <= len(_MEDIAN_VAR), _MEDIAN_VAR[idx], np.pi / (2 * np.maximum(m, 1) + 2))
    return np.where(m >= 1, out, np.nan)


def _loo_residuals(hx: np.ndarray, keys: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """Each history value's residual to the median of its slot's values from the *other* periods (days
    or weeks), scaled to the spread of one value: ``(x − median(others)) / √(1 + v(m))`` with ``v(m)``
    the variance of a median of the ``m`` other values. NaN where a slot holds one period only.

    Residuals to the slot's own median understate the spread when slots hold few periods (one week of
    history, month-end days apart: 2 or 3 values an hour-of-day slot): the median sits on one of
    them, and the MAD of such residuals is 0.46σ for three values, 0.70σ for two, 0.73σ for five. Left
    out, each residual is a prediction error of the kind the judgement makes, and its scale is known."""
    out = np.full(hx.shape, np.nan)
    finite = np.isfinite(hx)
    for key in np.unique(keys):
        cols = np.flatnonzero(keys == key)
        per = periods[cols]
        own = np.unique(per)
        if len(own) < 2:
            continue
        sub = hx[:, cols]
        for p in own:
            mine, others = per == p, per != p
            rest = sub[:, others]
            m = finite[:, cols[others]].sum(axis=1)
            with np.errstate(all="ignore"):
                med = np.nanmedian(rest, axis=1) if rest.shape[1] > 1 else rest[:, 0]
                out[:, cols[mine]] = (sub[:, mine] - med[:, None]) / np.sqrt(1 + median_var(m))[:, None]
    return out


def _candidate(hx, hist_records, hist_index, obs_index, scale_s, weekly, h_me, o_me, min_history) -> dict:
    """Levels, supports and spreads of one slot scheme (weekly or weekday/weekend)."""
    m = len(obs_index)
    hk = slot_keys(hist_index, scale_s, weekly, h_me)
    ok = slot_keys(obs_index, scale_s, weekly, o_me)
    hp = _periods(hist_index, weekly)
    slots = _Slots(hx, hist_records, hk, hp)
    level, support, recs = slots.level(ok), slots.support(ok), slots.records(ok)
    me_used = np.broadcast_to(o_me[None, :], level.shape).copy()
    me_cold = me_used & (support < 1)
    if me_cold.any():  # month-end periods without month-end history: the ordinary slot, and said so
        plain = slot_keys(obs_index, scale_s, weekly, np.zeros(m, dtype=bool))
        l2, s2, r2 = slots.level(plain), slots.support(plain), slots.records(plain)
        level, support, recs = (np.where(me_cold, b, a) for a, b in ((level, l2), (support, s2), (recs, r2)))
        me_used &= ~me_cold
    # The sampled counts' own dispersion: √ of a Poisson count has variance 1/4 whatever its mean, so
    # 4 × the spread² of √count residuals is the count's variance over its mean (1: Poisson). Both sets
    # of residuals in one pass over the slots (rows are independent).
    counts = np.sqrt(np.where(np.isfinite(hx), hist_records, np.nan))
    resid, root = np.split(_loo_residuals(np.vstack([hx, counts]), hk, hp), 2)
    with np.errstate(all="ignore"):
        sigma = MAD_TO_SIGMA * np.nanmedian(np.abs(resid), axis=1)
        sigma = np.fmax(sigma, _tail_sigma(resid))
        dispersion = 4 * (MAD_TO_SIGMA * np.nanmedian(np.abs(root), axis=1)) ** 2
    per_period = 1 if scale_s >= 3600 else 3600 // max(scale_s, 1)
    warm = np.where(me_used, support >= 1, support >= min_history).all(axis=1)
    return {
        "level": level, "support": support, "recs": recs, "sigma": sigma, "nvals": support * per_period,
        "dispersion": dispersion,
        "me_cold": me_cold, "me_used": me_used, "warm": warm,
    }  # fmt: skip
