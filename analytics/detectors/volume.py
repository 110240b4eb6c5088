"""Detector 1: volume spikes and drops of many series (tenants per center, center pairs, services)
against their seasonal baselines, in log space, at several scales (5 minutes, 1 hour, 1 day).

A period is an anomaly when its log ratio to the baseline is both improbable (|z| ≥ ``z``, with
the spread of the series' history and the Poisson noise of its sampled records) and large
(at least ``min_ratio`` × or 1/``min_ratio`` ×). Thin series that a 5-minute bucket cannot judge
(fewer than ``min_records`` sampled packets expected) are judged hourly or daily instead; so are
slow changes. A finding at a longer scale is kept only where no shorter one already shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np
import pandas as pd

from analytics.config import VolumeConfig
from analytics.detectors._common import runs
from analytics.findings import Finding
from analytics.seasonal_log import LogJudgement, judge

SCALES = {"5m": 300, "1h": 3600, "1d": 86_400}


@dataclass(frozen=True)
class SeriesSet:
    """Series of one view as matrices: rows = series (``entities``), columns = base buckets."""

    entities: list[dict[str, str]]
    hist_bytes: np.ndarray  # NaN before a series first appeared
    hist_records: np.ndarray  # sampled packets behind each bucket
    hist_index: pd.DatetimeIndex
    obs_bytes: np.ndarray
    obs_records: np.ndarray
    obs_index: pd.DatetimeIndex
    sampled: np.ndarray  # per series: volumes are scaled-up samples


def _aggregate(x: np.ndarray, index: pd.DatetimeIndex, scale_s: int, bucket_s: int):
    """Sum columns into periods of ``scale_s``; incomplete periods become NaN."""
    if scale_s <= bucket_s:
        return x, index
    labels = index.floor(f"{scale_s}s")
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]]) if len(labels) else np.array([], int)
    if not len(starts):
        return x[:, :0], labels[:0]
    sums = np.add.reduceat(x, starts, axis=1)
    counts = np.diff(np.r_[starts, len(labels)])
    sums[:, counts < scale_s // bucket_s] = np.nan
    return sums, pd.DatetimeIndex(labels[starts])


def detect_volume(
    s: SeriesSet, cfg: VolumeConfig, bucket: timedelta, suppressed: np.ndarray | None = None
) -> tuple[list[Finding], dict]:
    """Findings for every series of ``s`` and a cold-start report: which series lacked history or
    evidence, at which scale, and what they need. ``suppressed`` (series × window buckets) marks
    buckets where a collection gap or a center shift explains a drop."""
    bucket_s = int(bucket.total_seconds())
    found: dict[str, list[Finding]] = {}
    report: dict = {"series": len(s.entities), "scales": {}}
    for name in cfg.scales:
        scale_s = SCALES[name]
        hb, hidx = _aggregate(s.hist_bytes, s.hist_index, scale_s, bucket_s)
        hr, _ = _aggregate(s.hist_records, s.hist_index, scale_s, bucket_s)
        ob, oidx = _aggregate(s.obs_bytes, s.obs_index, scale_s, bucket_s)
        orr, _ = _aggregate(s.obs_records, s.obs_index, scale_s, bucket_s)
        if not len(oidx) or not len(s.entities):
            continue
        j = judge(
            hb, hr, hidx, ob, oidx, orr, scale_s=scale_s, sampled=s.sampled, min_history=cfg.min_history,
            min_records=cfg.min_records, month_end_days=cfg.month_end_days,
        )  # fmt: skip
        blind = None
        if suppressed is not None:
            blind = _aggregate(suppressed.astype(float), s.obs_index, scale_s, bucket_s)[0] > 0
        found[name] = _findings(s, j, ob, orr, oidx, cfg, scale_s, name, blind)
        report["scales"][name] = {
            "cold": int(j.cold.all(axis=1).sum()),
            "thin": int((j.thin.all(axis=1) & ~j.cold.all(axis=1)).sum()),
            "month_end_unlearned_periods": int(j.month_end_unlearned.sum()),
            "examples": [s.entities[i] for i in np.flatnonzero(j.cold.all(axis=1))[:3]],
        }
    report["needs"] = (
        f"{cfg.min_history} days of the same day type (weekday/weekend) before the window, or {cfg.min_history} "
        f"weeks for hour-of-week slots, one past month end for month-end days, and {cfg.min_records:g} sampled "
        "packets expected per period (else a longer scale judges it)"
    )
    return _finest(found, cfg.scales), report


def _findings(s, j: LogJudgement, ob, orr_, oidx, cfg, scale_s, name, blind) -> list[Finding]:
    period = timedelta(seconds=scale_s)
    floor = cfg.min_expected * scale_s / 300
    big = (np.nan_to_num(j.expected) >= floor) | (np.nan_to_num(ob) >= floor)
    # Both tests: the log ratio against history's spread, and the sampled count against Poisson.
    spike = j.judged & big & (j.z >= cfg.spike_z) & (j.z_count >= cfg.spike_z)
    drop = j.judged & big & (j.z <= -cfg.drop_z) & (j.z_count <= -cfg.drop_z)
    spike &= j.log_ratio >= np.log(cfg.min_ratio)
    drop &= j.log_ratio <= -np.log(cfg.min_ratio)
    if scale_s >= 3600 and cfg.run_z > 0:
        spike |= _sustained(j, j.judged & big, 1.0, cfg.run_z, cfg.spike_z, np.log(cfg.min_ratio))
        drop |= _sustained(j, j.judged & big, -1.0, cfg.run_z, cfg.drop_z, np.log(cfg.min_ratio))
    if blind is not None:
        drop &= ~blind
    # Quiet periods inside one anomaly: at least half an hour of them is noise, whatever the scale.
    bridge = max(cfg.bridge, -(-_BRIDGE_S // scale_s))
    out = []
    for i in np.flatnonzero(spike.any(axis=1) | drop.any(axis=1)):
        for kind, mask in (("spike", spike[i]), ("drop", drop[i])):
            for start, end, sel in runs(_bridge(pd.Series(mask, index=oidx), bridge), period):
                cols = oidx.get_indexer(sel)
                ratio = float(np.nansum(ob[i, cols]) / max(float(np.nansum(j.expected[i, cols])), 1.0))
                zmax = float(np.nanmax(np.abs(j.z[i, cols])))
                support = float(np.nanmin(j.support[i, cols]))
                conf = min(1.0, 0.5 + 0.5 * (zmax - cfg.spike_z) / cfg.spike_z) * min(
                    1.0, support / cfg.min_history
                )
                out.append(
                    Finding(
                        detector="volume",
                        type=f"volume_{kind}",
                        severity=cfg.severity,
                        score=round(zmax, 2),
                        confidence=round(max(0.05, conf), 3),
                        window_start=start,
                        window_end=end,
                        entities={**s.entities[i], "scale": name},
                        summary=f"traffic {kind}: {ratio:.2f}x the usual volume ({name} periods)",
                        evidence={
                            "buckets": [t.isoformat() for t in sel],
                            "observed": [round(float(v), 1) for v in ob[i, cols]],
                            "expected": [round(float(v), 1) for v in j.expected[i, cols]],
                            "log_ratio": [_num(v, 3) for v in j.log_ratio[i, cols]],
                            "z": [_num(v) for v in j.z[i, cols]],
                            "z_count": [_num(v) for v in j.z_count[i, cols]],
                            "sampled_records": [round(float(v), 1) for v in orr_[i, cols]],
                            "expected_sampled_records": [round(float(v), 1) for v in j.records[i, cols]],
                            "baseline": str(j.slots[i]),
                            "history_periods": support,
                            "month_end_unlearned": bool(j.month_end_unlearned[i, cols].any()),
                            "min_evidence": {
                                "z": cfg.spike_z,
                                "ratio": cfg.min_ratio,
                                "records": cfg.min_records,
                            },
                        },
                    )
                )
    return out


#: Lengths (periods) of the stretches whose combined evidence ``_sustained`` judges.
_STRETCHES = (2, 3, 4, 6, 8)


def _sustained(
    j: LogJudgement, ok: np.ndarray, sign: float, run_z: float, z: float, log_ratio: float
) -> np.ndarray:
    """Stretches of 2 to 8 consecutive judged periods, each at least ``run_z`` out in both tests, whose
    combined z (Stouffer: the sum over the root of the stretch's length) passes ``z`` in both tests and
    whose mean log ratio passes ``log_ratio``: a service at half its volume for four hours is as
    improbable as one hour at a fifth, though no single hour says so against a series' own spread.
    A stretch must also say more than its strongest period alone (its combined z at least that period's,
    in both tests): one period far out carries a stretch's combined z and mean by itself, and would lend
    its finding the ordinary period beside it (a one-day transfer reported over two days, reaching into a
    planned window the day before). That period is judged on its own. And each period of a stretch is
    off by at least half the ratio asked of their mean (in log): hours a little low by chance beside a
    halving do not widen it.
    Hourly and daily periods only: neighbouring 5-minute buckets share their traffic's slow swings."""
    zs = np.where(ok, sign * np.nan_to_num(j.z), -np.inf)
    zc = np.where(ok, sign * np.nan_to_num(j.z_count), -np.inf)
    lr = np.where(ok, sign * np.nan_to_num(j.log_ratio), 0.0)
    out = np.zeros(zs.shape, dtype=bool)
    rows = np.flatnonzero(((zs >= run_z) & (zc >= run_z)).sum(axis=1) >= 2)
    if not len(rows):
        return out
    zs, zc, lr = zs[rows], zc[rows], lr[rows]
    for n in _STRETCHES:
        if n > zs.shape[1]:
            break
        win = np.lib.stride_tricks.sliding_window_view
        low = np.minimum(win(zs, n, axis=1).min(axis=2), win(zc, n, axis=1).min(axis=2))
        with np.errstate(invalid="ignore"):
            hit = (
                (low >= run_z)
                & (win(lr, n, axis=1).min(axis=2) >= log_ratio / 2)
                & (
                    win(zs, n, axis=1).sum(axis=2) / np.sqrt(n)
                    >= np.maximum(z, win(zs, n, axis=1).max(axis=2))
                )
                & (
                    win(zc, n, axis=1).sum(axis=2) / np.sqrt(n)
                    >= np.maximum(z, win(zc, n, axis=1).max(axis=2))
                )
                & (win(lr, n, axis=1).mean(axis=2) >= log_ratio)
            )
        for r, c in zip(*np.nonzero(hit), strict=True):
            out[rows[r], c : c + n] = True
    return out


def _num(v: float, digits: int = 2) -> float | None:
    """A JSON number (NaN and infinities are not: None)."""
    return round(float(v), digits) if np.isfinite(v) else None


#: Flagged periods closer than this (seconds) are one anomaly: a 0.5x hour at 1:1000 has 5-minute
#: buckets that Poisson noise lifts back above the threshold.
_BRIDGE_S = 1800


def _bridge(mask: pd.Series, gap: int) -> pd.Series:
    """Join flagged runs separated by at most ``gap`` unflagged periods (noise inside one anomaly)."""
    if gap <= 0 or not mask.any():
        return mask
    v = mask.to_numpy().copy()
    idx = np.flatnonzero(v)
    for a, b in zip(idx[:-1], idx[1:], strict=True):
        if 1 < b - a <= gap + 1:
            v[a:b] = True
    return pd.Series(v, index=mask.index)


def _finest(found: dict[str, list[Finding]], order: tuple[str, ...]) -> list[Finding]:
    """Findings of every scale, one per episode: a longer scale's finding that overlaps shorter ones
    of the same series and type widens the first of them (evidence ``also_at``) instead of repeating it."""
    out: list[Finding] = []
    for name in order:
        for f in sorted(found.get(name, []), key=lambda f: f.window_start):
            key = {k: v for k, v in f.entities.items() if k != "scale"}
            hit = next(
                (
                    i
                    for i, e in enumerate(out)
                    if e.type == f.type
                    and {k: v for k, v in e.entities.items() if k != "scale"} == key
                    and e.window_start < f.window_end
                    and f.window_start < e.window_end
                ),
                None,
            )
            if hit is None:
                out.append(f)
                continue
            e = out[hit]
            out[hit] = replace(
                e,
                window_start=min(e.window_start, f.window_start),
                window_end=max(e.window_end, f.window_end),
                score=max(e.score, f.score),
                evidence={**e.evidence, "also_at": sorted({*e.evidence.get("also_at", []), name})},
            )
    # A widened finding may now overlap other pieces of the same episode, or lie within the bridging gap
    # of pieces found at another scale (a 5-minute piece just before an hourly one): one finding each.
    merged: list[Finding] = []
    for f in sorted(out, key=lambda f: (f.type, sorted((k, str(v)) for k, v in f.entities.items() if k != "scale"),
                                        f.window_start)):  # fmt: skip
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.type == f.type
            and {k: v for k, v in last.entities.items() if k != "scale"}
            == {k: v for k, v in f.entities.items() if k != "scale"}
            and f.window_start <= last.window_end + timedelta(seconds=_BRIDGE_S)
        ):
            merged[-1] = replace(
                last,
                window_end=max(last.window_end, f.window_end),
                score=max(last.score, f.score),
                evidence={
                    **last.evidence,
                    "also_at": sorted(
                        {
                            *last.evidence.get("also_at", []),
                            *f.evidence.get("also_at", []),
                            f.entities.get("scale", ""),
                        }
                        - {last.entities.get("scale", ""), ""}
                    ),
                },  # fmt: skip
            )
        else:
            merged.append(f)
    return sorted(merged, key=lambda f: f.window_start)
