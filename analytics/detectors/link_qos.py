"""Detector: a declared traffic class starved on a link that a Kube-OVN ``QoSPolicy`` limits.

Kube-OVN limits an EIP (``IptablesEIP.spec.qosPolicy``, binding ``EIP``) or a VPC NAT gateway's
external NIC (``VpcNatGateway.spec.qosPolicy``, binding ``NATGW``) with ``bandwidthLimitRules``:
``rateMax`` Mbit/s per ``direction``, optionally only for packets whose ``src``/``dst`` is in a
CIDR (``matchType: ip``, ``matchValue``). The limit does not know the bank's traffic classes: when
bulk traffic fills the link, payments queue and drop with it. Classes are declared in config by
their DSCP (the policy's ``qos_marking`` names: EF, AF41) with the share of the link each is
guaranteed (``min_share`` of ``rateMax``, or ``min_mbps``).

**Starved**, per rule, class and bucket, from what flow records can show (sampled bits/s of the
link as its best observer saw it, split by the DSCP of the records):

1. the link is full: its estimated rate is at least ``saturation`` × rateMax (from
   ``min_sampled_packets`` on);
2. the class is carried below its floor, beyond sampling error: the upper bound of its rate
   (``z`` standard deviations of a Poisson count of its sampled packets: n + z·√n + z², scaled;
   with no sampled packet, z² sampled packets of the link's mean size) is below the floor;
3. the class wanted more than it got: its mean rate over the buckets of the window in which the
   link was *not* full (where nothing held it back), lowered by its sampling error, is above that
   same upper bound.

The rest of the link (bulk) is what filled it; the finding carries every figure. What flow records
cannot show: the packets the limit dropped (no exporter reports a policer's drops as flows; a
record counts what passed the observation point), so the class's demand during the full
buckets is inferred from the free ones — a class that had no traffic while the link had room is
not judged (``not_judged``); a class whose demand really fell while the link filled looks the
same as one that is starved only if it also falls below its floor.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd

from analytics.config import LinkQosConfig
from analytics.detectors._common import runs
from analytics.findings import Finding
from analytics.model import RULE_COLS

RULE = list(RULE_COLS)


def detect_starved_classes(
    usage: pd.DataFrame, cfg: LinkQosConfig, bucket: timedelta, notes: dict | None = None
) -> list[Finding]:
    """``usage``: :func:`analytics.model.link_usage` rows (time, the rule's columns, klass
    (1-based index into ``cfg.classes``, 0 none), exporter, bytes scaled, raw_packets sampled).
    ``notes`` (optional) receives what could not be judged."""
    notes = {} if notes is None else notes
    if usage.empty or not cfg.classes:
        return []
    seconds = bucket.total_seconds()
    z = cfg.z
    out: list[Finding] = []
    for key, g in usage.groupby(RULE, sort=True):
        cluster, link, policy, rule, direction, limit_mbps, match = key
        limit = float(limit_mbps) * 1e6
        per = g.pivot_table(index="time", columns="klass", values=["bytes", "raw_packets"], aggfunc="sum",
                            fill_value=0.0).sort_index()  # fmt: skip
        times = pd.date_range(per.index.min(), per.index.max(), freq=bucket)
        per = per.reindex(times, fill_value=0.0)
        total = per["bytes"].sum(axis=1) * 8 / seconds
        n_total = per["raw_packets"].sum(axis=1)
        seen = n_total >= cfg.min_sampled_packets
        full = seen & (total >= cfg.saturation * limit)
        free = seen & ~full
        observer = g.groupby("time")["exporter"].first().reindex(times, fill_value="")
        per_sample = (total / n_total.where(n_total > 0, np.nan)).fillna(0.0)
        for k, cls in enumerate(cfg.classes, 1):
            floor = cls.floor_mbps(float(limit_mbps)) * 1e6
            if floor <= 0 or not full.any():
                continue
            c = (per["bytes"][k] * 8 / seconds) if k in per["bytes"] else pd.Series(0.0, index=times)
            n = per["raw_packets"][k] if k in per["raw_packets"] else pd.Series(0.0, index=times)
            up_n = n + z * np.sqrt(n) + z * z
            c_up = pd.Series(np.where(n > 0, c * up_n / n.where(n > 0, 1.0), z * z * per_sample), index=times)
            n_free = float(n[free].sum())
            name = f"{link} {direction} ({rule})" + (f" [{match}]" if match else "")
            if n_free <= 0:
                notes.setdefault("not_judged", []).append(
                    f"{name} {cls.name}: no {cls.name} traffic while the link had room (demand unknown)"
                )
                continue
            demand = float(c[free].mean())
            demand_low = demand * max(0.0, 1 - z / math.sqrt(n_free))
            starved = full & (c_up < floor) & (c_up < demand_low)
            for start, end, sel in runs(starved, bucket):
                got = float(c.loc[sel].mean())
                share = got / min(floor, demand) if min(floor, demand) > 0 else 0.0
                where = f"{link} ({cluster})" if cluster else link
                out.append(
                    Finding(
                        detector="link_qos",
                        type="qos_class_starved",
                        severity=cfg.severity,
                        score=round(1 - share, 3),
                        window_start=start,
                        window_end=end,
                        entities={
                            "cluster": cluster,
                            "link": link,
                            "policy": policy,
                            "rule": rule,
                            "direction": direction,
                            "class": cls.name,
                        },  # fmt: skip
                        summary=(
                            f"{where} {direction} at its {float(limit_mbps):g} Mbit/s limit ({policy}/{rule}"
                            + (f", {match}" if match else "")
                            + f"): {cls.name} carried at {got / 1e6:.3g} Mbit/s, below its floor of "
                            f"{floor / 1e6:.3g} Mbit/s and its {demand / 1e6:.3g} Mbit/s while the link had "
                            "room; other traffic fills the link"
                        ),
                        evidence={
                            "buckets": [t.isoformat() for t in sel],
                            "link_bits_per_s": [round(float(v)) for v in total.loc[sel]],
                            "limit_bits_per_s": round(limit),
                            "class_bits_per_s": [round(float(v)) for v in c.loc[sel]],
                            "class_upper_bits_per_s": [round(float(v)) for v in c_up.loc[sel]],
                            "floor_bits_per_s": round(floor),
                            "demand_bits_per_s": round(demand),
                            "demand_lower_bits_per_s": round(demand_low),
                            "other_share": [
                                round(float(1 - cv / tv), 3) if tv > 0 else 0.0
                                for cv, tv in zip(c.loc[sel], total.loc[sel], strict=True)
                            ],
                            "class_sampled_packets": [int(v) for v in n.loc[sel]],
                            "link_sampled_packets": [int(v) for v in n_total.loc[sel]],
                            "observer": [str(v) for v in observer.loc[sel]],
                            "dscp": list(cls.codes()),
                        },
                        confidence=_confidence(n_total.loc[sel], z),
                    )
                )
    return out


def _confidence(sampled: pd.Series, z: float) -> float:
    """1 - the relative deviation of the weakest bucket's link estimate."""
    n = float(sampled.min())
    return round(max(0.0, min(1.0, 1 - z / math.sqrt(n))) if n > 0 else 0.0, 3)
