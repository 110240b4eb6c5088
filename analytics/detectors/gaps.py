"""Detector 8: collection gaps: an exporter gone silent or losing datagrams.

Besides findings it returns which buckets each exporter failed to cover, so that the
volume detector does not report the resulting "drop" as a traffic anomaly.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
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
    per_event: dict[str, float] | None = None,
) -> tuple[list[Finding], dict[str, pd.Series]]:
    """``health`` rows: time, exporter, flows, datagrams, lost (datagrams missing by sequence).

    Returns findings and, per exporter, a boolean series over ``window`` that is True where
    its collection was incomplete. ``first_seen``: exporters with no history are judged from
    their first record in the window on (cold start), not reported silent before it. ``per_event``:
    per exporter, how many records one conversation makes (the store's count; at least the counts'
    own dispersion is used): a silence is judged on independent events, not records.
    """
    silent_buckets = max(1, int(cfg.silent_after_s // bucket.total_seconds()))
    per_day = max(1, round(86400 / bucket.total_seconds()))
    out: list[Finding] = []
    gaps: dict[str, pd.Series] = {}
    # Exporters × window buckets in one pass (hundreds of exporters: no per-exporter scan of the rows).
    pos = {e: i for i, e in enumerate(expected_exporters)}
    n, m = len(expected_exporters), len(window)
    datagrams, lost = np.zeros((n, m)), np.zeros((n, m))
    if len(health):
        row = health["exporter"].map(pos).to_numpy(dtype=float, na_value=np.nan)
        col = window.get_indexer(pd.DatetimeIndex(health["time"]))
        ok = ~np.isnan(row) & (col >= 0)
        r, c = row[ok].astype(int), col[ok]
        np.add.at(datagrams, (r, c), health["datagrams"].to_numpy(dtype=float)[ok])
        np.add.at(lost, (r, c), health["lost"].to_numpy(dtype=float)[ok])
    silent_all = datagrams == 0
    for exporter, i in ((e, pos[e]) for e in expected_exporters):
        if first_seen and exporter in first_seen:
            silent_all[i] &= np.asarray(window >= first_seen[exporter])
    lossy_all = lost > cfg.loss_ratio * np.maximum(datagrams + lost, 1)
    quiet = pd.Series(False, index=window)
    for i, exporter in enumerate(expected_exporters):
        if not silent_all[i].any() and not lossy_all[i].any():
            gaps[exporter] = quiet.copy()
            continue
        mine = pd.DataFrame({"datagrams": datagrams[i], "lost": lost[i]}, index=window)
        silent = pd.Series(silent_all[i], index=window)
        # A run shorter than the silence threshold is not yet a gap, nor one its own rate explains.
        silent = silent & silent.groupby((~silent).cumsum()).transform("size").ge(silent_buckets)
        cluster = max((per_event or {}).get(exporter, 1.0), _dispersion(datagrams[i], max(2, per_day // 24)))
        silent &= _improbable(silent.to_numpy(), datagrams[i] / cluster, cfg, per_day)
        lossy = pd.Series(lossy_all[i], index=window)
        gaps[exporter] = silent | lossy
        for kind, mask in (("silent", silent), ("loss", lossy & ~silent)):
            for start, end, sel in runs(mask, bucket):
                n_lost = int(mine.loc[sel, "lost"].sum())
                out.append(
                    Finding(
                        detector="collection_gap",
                        type=f"collection_gap_{kind}",
                        severity=cfg.severity,
                        score=float(len(sel))
                        if kind == "silent"
                        else round(n_lost / max(1, int(mine.loc[sel].sum().sum())), 3),
                        window_start=start,
                        window_end=end,
                        entities={"exporter": exporter},
                        summary=f"exporter {exporter} "
                        + ("sent nothing" if kind == "silent" else f"lost {n_lost} datagrams"),
                        evidence={"buckets": [t.isoformat() for t in sel]},
                    )
                )
    return out, gaps


def _dispersion(counts: np.ndarray, block: int) -> float:
    """How many records an exporter's independent events come as (its index of dispersion, at least
    1): OVS bridge IPFIX reports each flow at ingress and at egress, so its records come in pairs or
    fours, and an active timeout re-exports a long flow every minute. The median over ``block``-bucket
    stretches (an hour) of their variance over their mean: 1 for Poisson arrivals, 2 for pairs; a
    daily rhythm barely moves within an hour. The silence tests count events, not records."""
    n = len(counts) // block * block
    if n < 2 * block:
        return 1.0
    blocks = counts[:n].reshape(-1, block)
    mean = blocks.mean(axis=1)
    busy = mean > 0
    if not busy.any():
        return 1.0
    return max(1.0, float(np.median(blocks[busy].var(axis=1, ddof=1) / mean[busy])))


def _improbable(silent: np.ndarray, datagrams: np.ndarray, cfg: GapConfig, per_day: int) -> np.ndarray:
    """Which silent buckets belong to a run that the exporter's own datagram rate makes less likely
    than ``max_chance`` as Poisson arrivals (the conditional test of two Poisson rates: no datagram in
    the silence given ``k`` in a reference of the same rate): a thin exporter (few flows, or sFlow at
    1:1000 with a few samples a bucket) sends nothing for minutes, and in its nightly trough for
    hours, by chance. The reference is the same time of day on the window's other days (a trough is
    thinner than its slopes), and the silence must also be improbable, at ``sqrt(max_chance)``,
    against the ``rate_buckets`` buckets each side (a day thinner than the others shows there). With
    no other day in the window the buckets each side judge alone, at ``max_chance``. A run with no
    data on either side (silent to the window's edges) stays a gap."""
    out = silent.copy()
    edges = np.flatnonzero(np.diff(np.r_[0, silent.astype(np.int8), 0]))
    total = np.r_[0, np.cumsum(datagrams)]
    w, m = cfg.rate_buckets, len(silent)
    limit = -np.log(cfg.max_chance)
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        lo, hi = max(0, start - w), min(m, end + w)
        around = (start - lo) + (hi - end)
        if not around:
            continue
        # Given the datagrams of the silence and its reference together, each fell in the silence
        # with chance length / (length + reference) if the rate did not change: all of them outside
        # has this chance. Exact whatever the rate, where a rate estimated from a few datagrams is not.
        length = end - start
        near = (total[start] - total[lo] + total[hi] - total[end]) * np.log1p(length / around)
        days = (
            [k for k in range(-(start // per_day), (m - end) // per_day + 1) if k] if length < per_day else []
        )
        if days:
            same = sum(total[end + k * per_day] - total[start + k * per_day] for k in days)
            gap = same * np.log1p(1 / len(days)) > limit and near > limit / 2
        else:
            gap = near > limit
        if not gap:
            out[start:end] = False
    return out
