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


def normal_bucket(bank: Bank, start_ms: int, rng: np.random.Generator, tenant_scale: np.ndarray) -> Bucket:
    b = Bucket(start_ms)
    level = diurnal(start_ms)
    for t in range(bank.tenants):
        tenant = f"tenant{t + 1:02d}"
        for c in (1, 2):
            volume = tenant_scale[t] * level * rng.lognormal(0, 0.08)
            for client_svc, server_svc in EDGES:
                client = bank.pods_of(tenant, client_svc, c)[rng.integers(0, 2)]
                server = bank.pods_of(tenant, server_svc, c)[rng.integers(0, 2)]
                share = EDGE_SHARE[(client_svc, server_svc)]
                b.conversations.append(
                    Conversation(client, server, volume * share, int(rng.integers(32768, 60999)))
                )
        db1, db2 = bank.pods_of(tenant, "db", 1)[0], bank.pods_of(tenant, "db", 2)[0]
        b.conversations.append(Conversation(db1, db2, tenant_scale[t] * level * REPLICATION_SHARE, 40000 + t))
    return b


def records(bucket: Bucket, sampling: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The bucket's conversations as IPFIX records, grouped by exporter address."""
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
            exporters = at or ((src.node_ip,) if src.node_ip == dst.node_ip else (src.node_ip, dst.node_ip))
            for exp in exporters:
                if exp in bucket.silent_exporters:
                    continue
                direction = 0 if exp == src.node_ip else 1
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
