"""Normal traffic of the synthetic bank, bucket by bucket, as IPFIX record arrays per exporter.

Volumes follow a day/night cycle and a quieter weekend, scaled per tenant, with log-normal
noise. Each direction of a conversation is exported by the node of the sending pod and,
when the receiving pod sits on another node, by that node too (an OVS bridge sees the
packets of its own pods), flagged ingress at the sender and egress at the receiver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analytics.scenario.bank import EDGES, SERVICES, Bank, Pod, ip_int
from analytics.scenario.exporter import RECORD

#: Share of a tenant's bucket volume per edge, and the response/request byte ratio.
EDGE_SHARE = {("web", "api"): 0.3, ("api", "db"): 0.5, ("api", "cache"): 0.2}
RESPONSE_RATIO = 8.0
REPLICATION_SHARE = 0.15
#: Database replication to the standby in the DR center: normal traffic the DR baseline must learn.
DR_REPLICATION_SHARE = 0.05
#: Month-end batch runs raise the traffic of the last two days of a month by this factor.
MONTH_END_DAYS = 2


@dataclass
class Conversation:
    """One client → server exchange in a bucket, with real (unsampled) byte counts."""

    client: Pod
    server: Pod
    request_bytes: float
    sport: int
    # Where each direction is exported: None = the usual (sender's and receiver's nodes).
    forward_at: tuple[str, ...] | None = None
    reverse_at: tuple[str, ...] | None = None
    port: int | None = None  # None: the server's service port
    response_ratio: float = RESPONSE_RATIO


@dataclass
class Bucket:
    start_ms: int
    conversations: list[Conversation] = field(default_factory=list)
    silent_exporters: set[str] = field(default_factory=set)


def diurnal(ts_ms: int) -> float:
    """Smooth day/night cycle times a weekend dip that ramps over eight hours around midnight."""
    hours = ts_ms / 3_600_000
    day = 1 + 0.8 * np.sin(((hours % 24) - 6) / 24 * 2 * np.pi)
    week_h = (hours / 24 + 3) % 7 * 24  # hours since Monday 00:00 (1970-01-01 was a Thursday)
    ramp = lambda x: min(1.0, max(0.0, (x + 4) / 8))  # noqa: E731 - 0 → 1 from 4 h before to 4 h after
    weekend = ramp(week_h - 5 * 24) - ramp(week_h - 7 * 24) + (1 - ramp(week_h))  # Sat 00:00 .. Mon 00:00
    return float(day * (1 - 0.5 * min(1.0, weekend)))


def month_end(ts_ms: int, factor: float) -> float:
    """``factor`` on the last MONTH_END_DAYS days of a month, else 1."""
    if factor == 1.0:
        return 1.0
    day = np.datetime64(ts_ms, "ms").astype("datetime64[D]")
    next_month = (day.astype("datetime64[M]") + 1).astype("datetime64[D]")
    return factor if (next_month - day).astype(int) <= MONTH_END_DAYS else 1.0


def normal_bucket(
    bank: Bank,
    start_ms: int,
    rng: np.random.Generator,
    tenant_scale: np.ndarray,
    noise: float = 0.08,
    month_end_factor: float = 1.0,
) -> Bucket:
    b = Bucket(start_ms)
    level = diurnal(start_ms) * month_end(start_ms, month_end_factor)
    for t in range(bank.tenants):
        tenant = f"tenant{t + 1:02d}"
        for c in (1, 2):
            volume = tenant_scale[t] * level * rng.lognormal(0, noise)
            for client_svc, server_svc in EDGES:
                client = bank.pods_of(tenant, client_svc, c)[rng.integers(0, 2)]
                server = bank.pods_of(tenant, server_svc, c)[rng.integers(0, 2)]
                share = EDGE_SHARE[(client_svc, server_svc)]
                b.conversations.append(
                    Conversation(client, server, volume * share, int(rng.integers(32768, 60999)))
                )
        db1, db2 = bank.pods_of(tenant, "db", 1)[0], bank.pods_of(tenant, "db", 2)[0]
        b.conversations.append(Conversation(db1, db2, tenant_scale[t] * level * REPLICATION_SHARE, 40000 + t))
        db3 = bank.pods_of(tenant, "db", 3)[0]
        b.conversations.append(
            Conversation(db1, db3, tenant_scale[t] * level * DR_REPLICATION_SHARE, 41000 + t)
        )
    return b


#: Export conventions the detection scenario can be written in (see analytics.scenario.conventions for
#: the counting matrix, which also covers sFlow, NetFlow v5 and biflows).
CONVENTIONS = ("probe_both_ends", "ovs_bridge_ipfix", "probe_egress", "router_ingress", "mixed")
ROUTERS = {1: "198.18.1.1", 2: "198.18.2.1", 3: "198.18.3.1"}
_MIXED = {1: "ovs_bridge_ipfix", 2: "probe_egress", 3: "probe_both_ends"}
_NODE_CENTER = {f"192.0.2.{c * 10 + n}": c for c in (1, 2, 3) for n in range(1, 10)}


def _observations(convention: str, src: Pod, dst: Pod, at: tuple[str, ...] | None) -> list[tuple[str, int]]:
    """(exporter, flowDirection) of every record one direction of a conversation gets; 255: no direction.

    probe_both_ends: the sending node marks ingress, the receiving node egress (the project's first
    convention); ovs_bridge_ipfix: every node the packets cross reports ingress and egress; probe_egress:
    the sending node only, marked egress; router_ingress: the router of each center the packets cross,
    no direction, nothing for traffic inside one node; mixed: per center."""
    nodes = at or ((src.node_ip,) if src.node_ip == dst.node_ip else (src.node_ip, dst.node_ip))
    if convention == "router_ingress":
        if not at and src.node_ip == dst.node_ip:
            return []
        centers = dict.fromkeys(_NODE_CENTER.get(n, 1) for n in nodes)
        return [(ROUTERS[c], 255) for c in centers]
    out: list[tuple[str, int]] = []
    for exp in nodes:
        style = _MIXED[_NODE_CENTER.get(exp, 1)] if convention == "mixed" else convention
        sender = exp == src.node_ip
        if style == "ovs_bridge_ipfix":
            out += [(exp, 0), (exp, 1)]
        elif style == "probe_egress":
            if sender or (at and exp == nodes[0]):
                out.append((exp, 1))
        else:
            out.append((exp, 0 if sender else 1))
    return out


def records(
    bucket: Bucket, sampling: int, rng: np.random.Generator, convention: str = "probe_both_ends"
) -> dict[str, np.ndarray]:
    """The bucket's conversations as IPFIX records, grouped by exporter address, as ``convention`` exports
    them (one sampled count per direction, shared by every observation point: a simplification)."""
    rows: dict[str, list[tuple]] = {}
    for conv in bucket.conversations:
        port = conv.port or SERVICES[conv.server.service]
        for src, dst, sport, dport, real, at in (
            (conv.client, conv.server, conv.sport, port, conv.request_bytes, conv.forward_at),
            (
                conv.server,
                conv.client,
                port,
                conv.sport,
                conv.request_bytes * conv.response_ratio,
                conv.reverse_at,
            ),
        ):
            raw_bytes = int(rng.poisson(max(real, 0.0) / sampling))
            if raw_bytes == 0:
                continue
            packets = max(1, raw_bytes // 900)
            start = bucket.start_ms + int(rng.integers(0, 240_000))
            for exp, direction in _observations(convention, src, dst, at):
                if exp in bucket.silent_exporters:
                    continue
                rows.setdefault(exp, []).append(
                    (
                        start,
                        start + 60_000,
                        ip_int(src.ip),
                        ip_int(dst.ip),
                        sport,
                        dport,
                        6,
                        0x1B,
                        1,
                        2,
                        direction,
                        packets,
                        raw_bytes,
                    )
                )
    return {exp: np.array(r, dtype=RECORD) for exp, r in rows.items()}
