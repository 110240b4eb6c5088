"""Detector: a pod's observed rate against its Kube-OVN QoS limit.

Kube-OVN limits a pod with the annotations ``ovn.kubernetes.io/ingress_rate`` (traffic into the
pod) and ``ovn.kubernetes.io/egress_rate`` (traffic out of it), in Mbit/s. A pod whose estimated
rate over a bucket is above its limit by more than ``margin`` either is not limited (the QoS is
not enforced: a missing OVS meter/tc qdisc, a node the controller did not reach) or the limit in
the annotation is not the one in force: ``rate_limit_exceeded`` (warning). A pod at
``saturation`` of its limit or above (but not beyond the margin) is being held at its limit:
``rate_limit_saturated`` (info; its latency suffers, or the limit is too tight).

Rates are estimates from sampled packets: an exceedance is reported only when the estimate's lower
bound (``z`` standard deviations, relative deviation 1/sqrt(sampled packets)) is above the limit
plus the margin, and only from ``min_sampled_packets`` on, so that one sampled jumbo packet at 1:4096
does not make a pod "exceed" a 10 Mbit/s limit.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd

from analytics.config import RateLimitConfig
from analytics.detectors._common import runs
from analytics.findings import Finding

DIRECTIONS = ("ingress", "egress")


def limit_at(limits: pd.DataFrame, t_ms: np.ndarray) -> np.ndarray:
    """The limit (Mbit/s, 0: none) in force at each time, from one pod-direction's versions
    (``valid_from``/``valid_to`` ms, ``limit_mbps``): the version valid at that instant."""
    out = np.zeros(len(t_ms))
    for v in limits.itertuples(index=False):
        hit = (t_ms >= v.valid_from) & (t_ms < v.valid_to)
        out = np.where(hit, float(v.limit_mbps), out)
    return out


def detect_rate_limits(
    usage: pd.DataFrame, limits: pd.DataFrame, cfg: RateLimitConfig, bucket: timedelta
) -> list[Finding]:
    """``usage`` rows: time (bucket start), cluster, namespace, pod, direction (ingress/egress),
    bytes (scaled by sampling, counted once, spread over the buckets the records cover) and
    raw_packets (sampled packets behind the estimate). ``limits`` rows: cluster, namespace, pod,
    direction, limit_mbps, valid_from, valid_to (ms). A limit holds for a bucket if it is in force
    at the bucket's middle."""
    if usage.empty or limits.empty:
        return []
    seconds = bucket.total_seconds()
    keys = ["cluster", "namespace", "pod", "direction"]
    lim = {k: g for k, g in limits.groupby(keys, sort=False)}
    out: list[Finding] = []
    for key, g in usage.groupby(keys, sort=True):
        versions = lim.get(key)
        if versions is None:
            continue
        g = g.groupby("time")[["bytes", "raw_packets"]].sum().sort_index()
        mid_ms = (g.index.as_unit("ms").asi8 + int(seconds * 500)).astype(np.int64)
        limit_bps = pd.Series(limit_at(versions, mid_ms) * 1e6, index=g.index)
        bps = g["bytes"] * 8 / seconds
        sampled = g["raw_packets"].clip(lower=0)
        rel = cfg.z / np.sqrt(sampled.where(sampled > 0, np.nan))
        low = bps * (1 - rel.fillna(1).clip(upper=1))
        limited = limit_bps > 0
        over = limited & (low > limit_bps * (1 + cfg.margin)) & (sampled >= cfg.min_sampled_packets)
        near = limited & ~over & (bps >= limit_bps * cfg.saturation) & (sampled >= cfg.min_sampled_packets)
        cluster, ns, pod, direction = key
        for kind, mask, severity in (
            ("rate_limit_exceeded", over, cfg.severity),
            ("rate_limit_saturated", near, "info"),
        ):
            for start, end, sel in runs(mask, bucket):
                ratio = bps.loc[sel] / limit_bps.loc[sel]
                peak = float(ratio.max())
                mbps = float(limit_bps.loc[sel].max()) / 1e6
                name = f"{ns}/{pod}" + (f" ({cluster})" if cluster else "")
                what = (
                    f"{name} {direction} at {float(bps.loc[sel].max()) / 1e6:.3g} Mbit/s, {peak:.0%} of its "
                    f"{mbps:g} Mbit/s {direction}_rate limit"
                )
                out.append(
                    Finding(
                        detector="rate_limit",
                        type=kind,
                        severity=severity,
                        score=round(peak, 3),
                        window_start=start,
                        window_end=end,
                        entities={"cluster": cluster, "namespace": ns, "pod": pod, "direction": direction},
                        summary=what
                        + (
                            ": the limit is not enforced, or not the one set"
                            if kind == "rate_limit_exceeded"
                            else ""
                        ),
                        evidence={
                            "buckets": [t.isoformat() for t in sel],
                            "bits_per_s": [round(float(v)) for v in bps.loc[sel]],
                            "lower_bound_bits_per_s": [round(float(v)) for v in low.loc[sel]],
                            "limit_bits_per_s": [round(float(v)) for v in limit_bps.loc[sel]],
                            "sampled_packets": [int(v) for v in sampled.loc[sel]],
                        },
                        confidence=_confidence(sampled.loc[sel], cfg.z),
                    )
                )
    return out


def _confidence(sampled: pd.Series, z: float) -> float:
    """1 - the relative deviation of the weakest bucket's estimate (a rough trust in the rate)."""
    n = float(sampled.min())
    return round(max(0.0, min(1.0, 1 - z / math.sqrt(n))) if n > 0 else 0.0, 3)
