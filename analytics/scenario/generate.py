"""``netobs scenario``: write a labeled synthetic bank: inventory, IPFIX capture, labels, analytics config.

The capture goes through the real ingest path (decode → enrich → store); the labels say
which anomalies were injected where, for the evaluation to score detectors against.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from analytics.config import AsymmetryConfig
from analytics.scenario import wire
from analytics.scenario.anomalies import HOUR_MS, PROBE_BYTES, Anomaly, default_anomalies
from analytics.scenario.bank import Bank
from analytics.scenario.conventions import End
from analytics.scenario.exporter import Exporter, PcapWriter
from analytics.scenario.traffic import ROUTERS, _observations, normal_bucket, records

#: Every export convention the detection scenario is written in: the project's first (probe_both_ends,
#: one sampled count shared by the observation points) and the counting matrix's wire conventions
#: (each observation point samples on its own; sFlow, NetFlow v5, biflows, late data ...). Names the two
#: share are written by the wire encoder.
CONVENTIONS = ("probe_both_ends", *wire.WIRE_CONVENTIONS)

BUCKET_MS = 300_000
#: Median real bytes per 5 minutes per tenant and center of the default bank.
DEFAULT_VOLUME = 3e8


#: The default anomaly set puts each kind on its own tenant in the last week of the span.
MIN_TENANTS, MIN_DAYS = 13, 7


@dataclass(frozen=True)
class ScenarioSpec:
    tenants: int = 14
    days: int = 28
    sampling: int = 1000
    seed: int = 7
    start_ms: int = 1_761_523_200_000  # Monday 2025-10-27 00:00 UTC
    convention: str = "probe_both_ends"  # how the exporters report the traffic (CONVENTIONS)
    noise: float = 0.08  # log-normal sigma of each tenant's per-bucket volume
    late_s: int = 0  # exports arrive up to this late (event time stays the flow's own)
    month_end: float = 1.0  # traffic factor on the last two days of a month
    thin: int = 1  # the last N tenants carry 1/100 of the traffic (thin series at 1:1000)
    # median real bytes per 5 minutes per tenant and center; the anomalies' byte sizes and the links'
    # capacities scale with it (a smaller bank of the same shape: fewer sampled packets per series)
    volume: float = 3e8

    def __post_init__(self) -> None:
        if self.tenants < MIN_TENANTS or self.days < MIN_DAYS:
            raise ValueError(
                f"a scenario needs at least {MIN_TENANTS} tenants and {MIN_DAYS} days (its labeled anomalies "
                f"each take a tenant in the last week); got {self.tenants} tenants, {self.days} days"
            )
        if self.convention not in CONVENTIONS:
            raise ValueError(f"unknown convention {self.convention!r}; known: {', '.join(CONVENTIONS)}")
        if self.sampling < 1:
            raise ValueError(f"sampling must be at least 1, got {self.sampling}")
        if not self.volume > 0:
            raise ValueError(f"volume must be positive, got {self.volume}")

    @property
    def size(self) -> float:
        """The bank's volume relative to the default (anomaly sizes and link capacities scale with it)."""
        return self.volume / DEFAULT_VOLUME


def analytics_config(spec: ScenarioSpec, anomalies: list[Anomaly]) -> dict:
    """The analytics section matching the scenario: planned windows and link capacities."""
    windows: list[dict[str, Any]] = []
    for a in anomalies:
        if a.label.planned:
            windows.append(
                {
                    "start": _iso(a.label.start_ms - HOUR_MS),
                    "end": _iso(a.label.end_ms + HOUR_MS),
                    "kind": "maintenance",
                    "note": f"planned maintenance {a.label.entities}",
                }
            )
        if a.label.negative and a.label.detector == "dr_traffic":
            windows.append(
                {
                    "start": _iso(a.label.start_ms),
                    "end": _iso(a.label.end_ms),
                    "kind": "dr_drill",
                    "centers": ["dc3"],
                    "note": "quarterly DR drill",
                }
            )
    return {
        "windows": windows,
        "elephant": {
            "link_capacity_bps": {
                k: v * spec.size for k, v in {"dc1-dc2": 10e9, "dc1-dc3": 1e9, "dc2-dc3": 1e9}.items()
            }
        },
    }


#: Distinct ports an hour / a day the fan-out detector needs by default (analytics FanoutConfig).
SLOW_SCAN_FLOOR, SLOW_SCAN_DAY_FLOOR = 150, 100


def mark_observability(anomalies: list[Anomaly], bank: Bank, spec: ScenarioSpec, exporters: set[str]) -> None:
    """Mark the labels this convention and sampling cannot show, from the generator's own truth."""
    for a in anomalies:
        lab, p = a.label, a.params
        if a.kind == "silence" and p["exporter"] not in exporters:
            lab.observable, lab.why = (
                False,
                f"{spec.convention}: no exporter at {p['exporter']} to fall silent",
            )
        elif a.kind == "cross" and (p.get("forward_at") or p.get("reverse_at")):
            c = bank.pods_of(p["tenant"], p["client"][0], p["client"][1])[0]
            s = bank.pods_of(p["tenant"], p["server"][0], p["server"][1])[0]
            nodes = _node_ends(bank)

            def seen(a, b, at, nodes=nodes):  # type: ignore[no-untyped-def]
                if spec.convention in wire.WIRE_CONVENTIONS:
                    return wire.points(spec.convention, a, b, at, nodes)
                return _observations(spec.convention, a, b, at)

            usual = (seen(c, s, None), seen(s, c, None))
            now = (seen(c, s, p.get("forward_at")), seen(s, c, p.get("reverse_at")))
            if [sorted(x) for x in usual] == [sorted(x) for x in now]:
                lab.observable = False
                lab.why = f"{spec.convention}: the exporters send the same records whichever path each direction takes"
            else:
                why = _asymmetry_unsampled(p, spec)
                if why:
                    lab.observable, lab.why = False, why
        elif a.kind == "scan":
            why = _scan_unobservable(p, bank, spec, (lab.end_ms - lab.start_ms) // BUCKET_MS)
            if why:
                lab.observable, lab.why = False, why


#: Tests the asymmetry detector judges a day per tenant of the scenario's bank (2×2 tables with both
#: directions somewhere, and pairs of points): about 25 000 a day for 13 tenants at 3e7 B/5 min, 1:1000
#: (its notes' ``tests``); fewer on thinner banks, so the chance below is if anything too strict.
ASYMMETRY_TESTS_PER_TENANT_DAY = 2000


def asymmetry_threshold(spec: ScenarioSpec) -> float:
    """The chance each asymmetry test must beat on the scenario's bank (the detector's default false-finding
    budget over its tests a day, at most ``max_chance``)."""
    cfg = AsymmetryConfig()
    return min(cfg.max_chance, cfg.false_per_day / (ASYMMETRY_TESTS_PER_TENANT_DAY * spec.tenants))


def _asymmetry_unsampled(p: dict, spec: ScenarioSpec) -> str:
    """Why an asymmetric path cannot be told from sampling at this rate ('' if it can), under packet
    sampling (the wire conventions). The detector (defaults of analytics AsymmetryConfig) judges each hour:
    a point lacking a direction that another point saw, or two points each lacking the direction the other
    saw, judged together (requests by one path, replies by another). Either way the lacking points must
    miss at least ``min_records`` sampled packets, all of them landing elsewhere must be less likely than
    :func:`asymmetry_threshold` (1/2 each at equal rates: ``ceil(log2(1/threshold))`` packets), and each point must
    have sampled a packet of the direction it did see. Observable when sampling (Poisson at 1:N) gives the
    detector that evidence at least 9 times in 10 (else finding it is a coin toss of sampling)."""
    if spec.convention not in wire.WIRE_CONVENTIONS:
        return ""
    cfg = AsymmetryConfig()
    need = max(cfg.min_records, math.ceil(math.log2(1 / asymmetry_threshold(spec))))
    per_hour = cfg.bucket_s * 1000 / BUCKET_MS  # the generator's 5-minute buckets in the detector's period
    request = p["nbytes"] / wire.REQUEST_SIZE * per_hour / spec.sampling
    reply = p["nbytes"] * p.get("response_ratio", 8.0) / wire.REPLY_SIZE * per_hour / spec.sampling
    chance = _poisson_at_least(request + reply, int(need)) * (1 - math.exp(-request)) * (1 - math.exp(-reply))
    if chance >= 0.9:
        return ""
    return (
        f"{spec.convention}: at 1:{spec.sampling} the conversation leaves about {request:.1f} sampled request "
        f"and {reply:.1f} reply packets an hour at each point; telling its missing directions from sampling at "
        f"chance {asymmetry_threshold(spec):.2g} needs {need:.0f} of them together and one of each, which sampling gives "
        f"{chance:.0%} of the time"
    )


def _poisson_at_least(mean: float, k: int) -> float:
    """P(X >= k) for X ~ Poisson(mean)."""
    term, below = math.exp(-mean), 0.0
    for i in range(k):
        below += term
        term *= mean / (i + 1)
    return max(0.0, 1.0 - below)


#: Distinct ports the fan-out detector needs at 5 minutes by default (analytics FanoutConfig.min_distinct).
FAST_SCAN_FLOOR = 100


def _scan_unobservable(p: dict, bank: Bank, spec: ScenarioSpec, buckets: int) -> str:
    """Why a scan cannot be told at this sampling and convention ('' if it can): the distinct ports
    expected to survive sampling, at the best of 5 minutes, an hour and a day, must clear the detector's
    floor by two standard deviations (else whether it is found is a coin toss of sampling)."""
    if spec.convention in wire.WIRE_CONVENTIONS:
        # Packet sampling: a probe of k packets is seen with 1 − (1 − 1/N)^k.
        k = max(1.0, p.get("probe_bytes", PROBE_BYTES) / wire.REQUEST_SIZE)
        seen, model = 1 - (1 - 1 / spec.sampling) ** k, f"{k:.0f}-packet probes sampled 1:{spec.sampling}"
    else:
        # This generator draws sampled bytes as Poisson(bytes / rate): a probe survives with 1 − e^(−b/N).
        seen, model = (
            1 - np.exp(-p.get("probe_bytes", PROBE_BYTES) / spec.sampling),
            f"1:{spec.sampling} sampling",
        )
    src = bank.pods_of(p["tenant"], "web", p["center"])[0]
    targets = [q for q in bank.pods if q.center == p["center"]][: p["hosts"]]
    visible = 1.0
    if spec.convention == "router_ingress":  # a router sees nothing that stays on one node
        visible = sum(q.node_ip != src.node_ip for q in targets) / len(targets)
    ports = p["ports"] * visible
    if p.get("rotate"):  # new ports every bucket
        per = {
            "5 minutes": ports * seen,
            "an hour": ports * min(12, buckets) * seen,
            "a day": ports * buckets * seen,
        }
    else:
        per = {
            "5 minutes": ports * seen,
            "an hour": ports * (1 - (1 - seen) ** min(12, buckets)),
            "a day": ports * (1 - (1 - seen) ** buckets),
        }
    floors = {"5 minutes": FAST_SCAN_FLOOR, "an hour": SLOW_SCAN_FLOOR, "a day": SLOW_SCAN_DAY_FLOOR}
    if any(v - 2 * np.sqrt(v) >= floors[k] for k, v in per.items()):
        return ""
    hidden = (
        f", {1 - visible:.0%} of its targets on the scanner's node (invisible to routers)"
        if visible < 1
        else ""
    )
    return (
        f"{spec.convention}: {model}{hidden} leave about "
        + ", ".join(f"{v:.0f} distinct ports in {k}" for k, v in per.items())
        + f"; the detector needs {FAST_SCAN_FLOOR} / {SLOW_SCAN_FLOOR} / {SLOW_SCAN_DAY_FLOOR} (with 2σ to spare)"
    )


def _node_ends(bank: Bank) -> dict[str, End]:
    """An End standing for each node (by address): where an anomaly forces a direction through."""
    return {p.node_ip: End(p.node_ip, p.node, p.node_ip, p.center) for p in bank.pods}


def _iso(ms: int) -> str:
    return np.datetime64(ms, "ms").astype(str) + "Z"


def generate(spec: ScenarioSpec, out_dir: str | Path) -> dict:
    """Write inventory.yaml, exports.pcap, labels.json and analytics.yaml into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    bank = Bank(spec.tenants)
    bank.write_inventory(out / "inventory.yaml")
    anomalies = default_anomalies(bank, spec.start_ms, spec.days, spec.size)
    scale = rng.lognormal(
        np.log(spec.volume), 0.5, spec.tenants
    )  # real bytes per 5 minutes per tenant and center
    if spec.thin:
        scale[-spec.thin :] /= 100
    exporters: dict[str, Exporter] = {}
    n_records = 0
    on_wire = spec.convention in wire.WIRE_CONVENTIONS
    encoder, nodes = wire.Encoder(spec.convention, rng), _node_ends(bank)
    seen_exporters: set[str] = set()
    with PcapWriter(out / "exports.pcap") as pcap:
        for i in range(spec.days * 24 * 3_600_000 // BUCKET_MS):
            t = spec.start_ms + i * BUCKET_MS
            bucket = normal_bucket(bank, t, rng, scale, spec.noise, spec.month_end)
            for a in anomalies:
                if a.active(t):
                    a.apply(bank, bucket, rng)
            if on_wire:
                reps = wire.reports(bucket, spec.convention, spec.sampling, rng, nodes)
                seen_exporters |= {r.exporter for r in reps}
                encoder.add(reps)
                for ts, address, d in encoder.ready((t + BUCKET_MS) / 1000 - wire.LATE_MS / 1000 - 10):
                    pcap.write(ts, address, d)
                continue
            for address, recs in sorted(records(bucket, spec.sampling, rng, spec.convention).items()):
                exp = exporters.setdefault(address, Exporter(address, spec.sampling))
                # Late exports: up to late_s after the bucket (in order per exporter: late_s < a bucket).
                export_s = (t + BUCKET_MS) // 1000 + (int(rng.integers(0, spec.late_s)) if spec.late_s else 0)
                for d in exp.datagrams(recs, export_s):
                    pcap.write(export_s, address, d)
                n_records += len(recs)
        if on_wire:
            for ts, address, d in encoder.ready(float("inf")):
                pcap.write(ts, address, d)
            n_records = encoder.records
    mark_observability(anomalies, bank, spec, set(exporters) | seen_exporters)
    (out / "labels.json").write_text(json.dumps([a.label.to_json() for a in anomalies], indent=1))
    # The span the bank's traffic covers: exports of its last bucket arrive after it ends (an sFlow
    # sample is dated by its datagram), so the data's last timestamp does not say where it ends.
    span = {"start_ms": spec.start_ms, "end_ms": spec.start_ms + spec.days * 86_400_000}
    (out / "span.json").write_text(json.dumps(span))
    (out / "analytics.yaml").write_text(yaml.safe_dump(analytics_config(spec, anomalies), sort_keys=False))
    # Routers are not nodes: the bank names their centers in the counting section.
    routers = [
        {"match": [ip], "observer": "device_flow", "center": f"dc{c}"} for c, ip in sorted(ROUTERS.items())
    ]
    (out / "counting.yaml").write_text(yaml.safe_dump({"exporters": routers}, sort_keys=False))
    return {
        "records": n_records,
        "exporters": len(set(exporters) | seen_exporters),
        "labels": len(anomalies),
        "dir": str(out),
    }
