"""The same bank traffic exported under the conventions real exporters follow.

A conversation is known here as the truth (client, server, ports, packets and bytes each way,
time); a convention says which observation points see its packets and how each one reports
them, on the wire: Open vSwitch bridge IPFIX (ingress and egress of the bridge, on every node
the packets cross), OVS per-flow IPFIX (once per node, observationPointId), OVS sFlow (each
packet sampled on every node it enters), a probe exporting once from the sending node marked
egress, routers exporting ingress only without a direction field, NetFlow v5 probes on every
node, RFC 5103 biflows from every node, a mix of them across centers, and records arriving
late and out of order. Sampling, time formats and template layouts vary by convention, and
the seed is the caller's (tests draw it at run time). The counting model must count each
conversation once under every one of them (:mod:`analytics.scenario.counting_eval`).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from analytics.scenario.bank import SERVICES, Bank, Pod
from analytics.scenario.exporter import PcapWriter

CONVENTIONS = (
    "ovs_bridge_ipfix",
    "ovs_perflow_ipfix",
    "ovs_sflow",
    "probe_egress",
    "router_ingress",
    "netflow5",
    "biflow",
    "mixed",
    "late",
)
#: Conventions whose exporters sample packets (the others may still be drawn unsampled).
SFLOW_FRAME_OVERHEAD = 18  # Ethernet header + FCS: sFlow reports frame lengths
HIGH_PORT_SERVICE = 31000  # a service on a high port, known only from its pods' container ports
ACTIVE_TIMEOUT_MS = 60_000
#: Where the routers of each center export from (not nodes: devices).
ROUTERS = {1: "198.18.1.1", 2: "198.18.2.1", 3: "198.18.3.1"}
COLLECTOR_PORTS = {"ipfix": 4739, "sflow": 6343, "netflow5": 2055}
#: Per center, the convention a "mixed" bank runs.
MIXED = {1: "ovs_bridge_ipfix", 2: "ovs_sflow", 3: "probe_egress"}


@dataclass(frozen=True)
class End:
    """One end of a conversation: a pod, or an address outside the cluster."""

    ip: str
    node: str = ""
    node_ip: str = ""
    center: int = 0  # 0: outside

    @property
    def is_pod(self) -> bool:
        return bool(self.node)


@dataclass
class Conversation:
    """The truth: ``client`` opened it to ``server:dport``."""

    cid: int
    client: End
    server: End
    sport: int
    dport: int
    proto: int
    start_ms: int
    duration_ms: int
    fwd_packets: int
    rev_packets: int
    fwd_size: int  # IP bytes per packet
    rev_size: int
    kind: str = ""  # which kind of conversation the generator drew (edge, inbound, replication...)
    tos: int = 0  # IP TOS both ways (DSCP << 2): a payment class marks EF, bulk stays 0

    @property
    def fwd_bytes(self) -> int:
        return self.fwd_packets * self.fwd_size

    @property
    def rev_bytes(self) -> int:
        return self.rev_packets * self.rev_size

    def truth(self) -> dict[str, Any]:
        return {
            "cid": self.cid,
            "client": self.client.ip,
            "server": self.server.ip,
            "sport": self.sport,
            "dport": self.dport,
            "proto": self.proto,
            "fwd_packets": self.fwd_packets,
            "rev_packets": self.rev_packets,
            "fwd_bytes": self.fwd_bytes,
            "rev_bytes": self.rev_bytes,
            "intra_node": self.client.is_pod and self.client.node == self.server.node,
        }


# ---- the bank's conversations --------------------------------------------------------------------
def _end(p: Pod) -> End:
    return End(p.ip, p.node, p.node_ip, p.center)


def conversations(
    bank: Bank, rng: np.random.Generator, start_ms: int, span_ms: int, n: int
) -> list[Conversation]:
    """``n`` conversations of every kind: pod to pod on one node, across nodes, centers and sites,
    from the internet to a web pod, from a pod to the internet, a high-port service, DNS over UDP,
    across tenants, to the shared tenant, reading the DR database. Cross-center conversations
    happen wholly before or wholly after :func:`exemption_expiry` (the policy scenario's
    time-limited exemption), never across it."""
    pods = bank.pods
    by = lambda svc, c=None, t=None: [  # noqa: E731
        p for p in pods if p.service == svc and (c is None or p.center == c) and (t is None or p.tenant == t)
    ]
    tenants = sorted({p.tenant for p in pods})
    shared, others = tenants[-1], tenants[:-1] or tenants
    expiry = exemption_expiry(start_ms, span_ms)
    kinds = ("edge", "edge", "edge", "cross_center", "replication", "inbound", "outbound", "high_port", "dns",
             "cross_tenant", "shared", "dr_read")  # fmt: skip
    out = []
    for cid in range(n):
        kind = kinds[cid % len(kinds)]
        proto, sport = 6, int(rng.integers(32768, 61000))
        if kind == "edge":
            c = int(rng.integers(1, 3))
            client_svc, server_svc = (("web", "api"), ("api", "db"), ("api", "cache"))[
                int(rng.integers(0, 3))
            ]
            client, server = _pick(rng, by(client_svc, c)), _pick(rng, by(server_svc, c))
            dport = SERVICES[server_svc]
        elif kind == "cross_center":
            client, server = _pick(rng, by("api", 1)), _pick(rng, by("db", 2))
            dport = SERVICES["db"]
        elif kind == "replication":
            client, server = _pick(rng, by("db", int(rng.integers(1, 3)))), _pick(rng, by("db", 3))
            dport = SERVICES["db"]
        elif kind == "inbound":
            client = End(f"203.0.113.{int(rng.integers(1, 250))}")
            server = _end(_pick(rng, by("web")))
            dport = SERVICES["web"]
        elif kind == "outbound":
            client, server = _end(_pick(rng, by("api"))), End(f"198.51.100.{int(rng.integers(1, 250))}")
            dport = 443
        elif kind == "high_port":
            client, server = _pick(rng, by("web")), _pick(rng, by("cache"))
            dport = HIGH_PORT_SERVICE
        elif kind == "cross_tenant" and len(others) > 1:
            c = int(rng.integers(1, 3))
            a, b = rng.choice(len(others), 2, replace=False)
            client, server = _pick(rng, by("api", c, others[a])), _pick(rng, by("db", c, others[b]))
            dport = SERVICES["db"]
        elif kind == "shared":
            c = int(rng.integers(1, 3))
            client, server = _pick(rng, by("api", c, _pick(rng, others))), _pick(rng, by("cache", c, shared))
            dport = SERVICES["cache"]
        elif kind == "dr_read":
            client, server = _pick(rng, by("api", int(rng.integers(1, 3)))), _pick(rng, by("db", 3))
            dport = SERVICES["db"]
        else:
            client, server = _pick(rng, by("api")), _pick(rng, by("cache"))
            proto, dport = 17, 53
        client = client if isinstance(client, End) else _end(client)
        server = server if isinstance(server, End) else _end(server)
        if client.ip == server.ip:
            continue
        lo, hi = start_ms, start_ms + span_ms
        if kind == "cross_center":
            # wholly before the exemption expires (with a margin for export lag), or after; a
            # span too short for either (the live demo's 20 s steps) keeps its whole window
            sides = [w for w in ((lo, expiry - EXPIRY_MARGIN_MS), (expiry + EXPIRY_MARGIN_MS, hi))
                     if w[1] - w[0] >= 4_000]  # fmt: skip
            if sides:
                lo, hi = sides[0] if len(sides) == 1 or rng.random() < 0.5 else sides[1]
        duration = int(rng.integers(1_000, min((hi - lo) // 2, 400_000)))
        start = lo + int(rng.integers(0, hi - lo - duration))
        fwd = int(rng.lognormal(np.log(1500), 0.8)) + 20
        out.append(
            Conversation(
                cid, client, server, sport, dport, proto, start, duration,
                fwd_packets=fwd, rev_packets=max(1, int(fwd * rng.uniform(0.5, 2.0))),
                fwd_size=int(rng.integers(60, 400)), rev_size=int(rng.integers(200, 1400)), kind=kind,
            )
        )  # fmt: skip
    return out


#: Cross-center conversations keep this far from the exemption's expiry (exporters' active timeouts and lag).
EXPIRY_MARGIN_MS = 90_000


def exemption_expiry(start_ms: int, span_ms: int) -> int:
    """When the policy scenario's time-limited exemption expires (ms): the middle of the span."""
    return start_ms + span_ms // 2


def _pick(rng: np.random.Generator, items: list) -> Any:
    return items[int(rng.integers(0, len(items)))]


# ---- observation points and what each reports -----------------------------------------------------
@dataclass
class Report:
    """What one exporter reports about one direction of a conversation in one interval."""

    exporter: str
    protocol: str  # ipfix | sflow | netflow5 | biflow
    style: str  # the convention that governs this exporter
    src: End
    dst: End
    sport: int
    dport: int
    proto: int
    start_ms: int
    end_ms: int
    packets: int  # sampled (raw) packets
    size: int  # IP bytes per packet
    direction: int = 255  # IPFIX flowDirection: 0 ingress, 1 egress, 255 absent
    flags: int = 0
    sampling: int = 1
    reverse: tuple[int, int, int] | None = None  # biflow: (packets, size, flags) of the reverse direction
    tos: int = 0
    #: biflow: RFC 5103 biflowDirection, 1 the forward direction is the initiator's, 0 arbitrary (an
    #: exporter that saw one direction alone cannot tell who opened the conversation)
    initiator: int = 1


@dataclass
class Exported:
    """A convention's export of the bank: datagrams (time, exporter, protocol, payload)."""

    convention: str
    sampling: dict[str, int]
    datagrams: list[tuple[float, str, str, bytes]] = field(default_factory=list)
    unobservable: set[int] = field(default_factory=set)  # conversations no observation point sees
    start: list[tuple[float, str, str, bytes]] = field(default_factory=list)  # template messages at start
    rates: set[int] = field(default_factory=set)  # sampling rates the exporters use


def _style(convention: str, center: int) -> str:
    if convention == "mixed":
        return MIXED.get(center, "ovs_bridge_ipfix")
    if convention == "late":
        return "ovs_bridge_ipfix"
    return convention


def _nodes_on_path(src: End, dst: End) -> list[End]:
    """Nodes whose datapath the packets cross: the sender's node, then the receiver's (if another)."""
    out = [e for e in (src, dst) if e.is_pod]
    if len(out) == 2 and out[0].node == out[1].node:
        return out[:1]
    return out


def _routers_on_path(src: End, dst: End) -> list[int]:
    """Centers whose router the packets cross: leaving a node, entering another, or the internet."""
    if src.is_pod and dst.is_pod and src.node == dst.node:
        return []
    centers = [e.center for e in (src, dst) if e.is_pod]
    return list(dict.fromkeys(centers))  # source's center first


def _intervals(conv: Conversation, packets: int) -> list[tuple[int, int, int]]:
    """Active-timeout slices of one direction: (start, end, packets), empty slices included."""
    end_ms = conv.start_ms + conv.duration_ms
    edges = list(range(conv.start_ms, end_ms, ACTIVE_TIMEOUT_MS)) + [end_ms]
    n = len(edges) - 1
    shares = np.diff(np.linspace(0, packets, n + 1).round().astype(np.int64))
    return [(edges[i], edges[i + 1], int(shares[i])) for i in range(n)]


def _sample(rng: np.random.Generator, packets: int, rate: int) -> int:
    return packets if rate <= 1 else int(rng.binomial(packets, 1.0 / rate))


def reports(
    convs: list[Conversation], convention: str, sampling: dict[str, int], rng: np.random.Generator
) -> tuple[list[Report], set[int]]:
    """Every report the exporters of ``convention`` send about ``convs``, and the conversations
    that no observation point of this convention can see."""
    out: list[Report] = []
    unseen: set[int] = set()
    for conv in convs:
        seen = False
        for fwd in (True, False):
            src, dst = (conv.client, conv.server) if fwd else (conv.server, conv.client)
            sport, dport = (conv.sport, conv.dport) if fwd else (conv.dport, conv.sport)
            packets = conv.fwd_packets if fwd else conv.rev_packets
            size = conv.fwd_size if fwd else conv.rev_size
            reverse = _intervals(conv, conv.rev_packets)
            for i, (s, e, pk) in enumerate(_intervals(conv, packets)):
                first = i == 0 and conv.proto == 6
                flags = ((0x02 if fwd else 0x12) | 0x18) if first else (0x18 if conv.proto == 6 else 0)
                if pk == 0 and not (fwd and reverse[i][2]):
                    continue
                base = dict(src=src, dst=dst, sport=sport, dport=dport, proto=conv.proto, start_ms=s, end_ms=e,
                            size=size, flags=flags, tos=conv.tos)  # fmt: skip
                rev = (reverse[i][2], ((0x12 | 0x18) if first else 0x18) if conv.proto == 6 else 0)
                made = _observe(conv, fwd, base, pk, rev, convention, sampling, rng)
                seen = seen or bool(made)
                out += [r for r in made if r.packets > 0 or (r.reverse and r.reverse[0] > 0)]
        if not seen:
            unseen.add(conv.cid)
    return out, unseen


def _observe(
    conv: Conversation,
    fwd: bool,
    base: dict,
    packets: int,
    rev: tuple[int, int],
    convention: str,
    sampling: dict[str, int],
    rng: np.random.Generator,
) -> list[Report]:
    src, dst = base["src"], base["dst"]
    made: list[Report] = []
    if convention == "router_ingress":
        rate = sampling["router"]
        for c in _routers_on_path(src, dst):
            made.append(
                Report(
                    ROUTERS[c],
                    "ipfix",
                    "router_ingress",
                    packets=_sample(rng, packets, rate),
                    sampling=rate,
                    **base,
                )
            )
        return made
    for node in _nodes_on_path(src, dst):
        style = _style(convention, node.center)
        sender = node.node == src.node if src.is_pod else False
        if style == "ovs_bridge_ipfix":
            rate = sampling["ipfix"]
            pk = _sample(rng, packets, rate)  # one sampled set of packets, seen at ingress and egress
            for d in (0, 1):
                made.append(
                    Report(node.node_ip, "ipfix", style, packets=pk, direction=d, sampling=rate, **base)
                )
        elif style == "ovs_perflow_ipfix":
            rate = sampling["ipfix"]
            made.append(
                Report(
                    node.node_ip, "ipfix", style, packets=_sample(rng, packets, rate), sampling=rate, **base
                )
            )
        elif style == "ovs_sflow":
            rate = sampling["sflow"]
            made.append(
                Report(
                    node.node_ip, "sflow", style, packets=_sample(rng, packets, rate), sampling=rate, **base
                )
            )
        elif style == "probe_egress":
            # Once, from the sending node, marked egress; from outside the cluster, by the receiving node.
            if sender or (not src.is_pod and node.node == dst.node):
                rate = sampling["probe"]
                made.append(Report(node.node_ip, "ipfix", style, packets=_sample(rng, packets, rate),
                                   direction=1 if sender else 0, sampling=rate, **base))  # fmt: skip
        elif style == "netflow5":
            rate = sampling["probe"]
            made.append(
                Report(
                    node.node_ip,
                    "netflow5",
                    style,
                    packets=_sample(rng, packets, rate),
                    sampling=rate,
                    **base,
                )
            )
        elif style == "biflow":
            if not fwd:
                continue  # a biflow record carries both directions, reported with the forward one
            rate = sampling["probe"]
            made.append(Report(node.node_ip, "biflow", style, packets=_sample(rng, packets, rate), sampling=rate,
                               reverse=(_sample(rng, rev[0], rate), conv.rev_size, rev[1]), **base))  # fmt: skip
    return made


# ---- wire formats ----------------------------------------------------------------------------------
def _ip4(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


_IPFIX_LAYOUTS: dict[str, tuple[tuple[int, int, int], ...]] = {
    # (IE, length, enterprise) in record order
    "ovs_bridge_ipfix": ((152, 8, 0), (153, 8, 0), (8, 4, 0), (12, 4, 0), (7, 2, 0), (11, 2, 0), (4, 1, 0), (5, 1, 0),
                         (6, 1, 0), (10, 4, 0), (14, 4, 0), (61, 1, 0), (2, 8, 0), (1, 8, 0)),
    "ovs_perflow_ipfix": ((154, 8, 0), (155, 8, 0), (8, 4, 0), (12, 4, 0), (7, 2, 0), (11, 2, 0), (4, 1, 0), (5, 1, 0),
                          (6, 2, 0), (138, 4, 0), (2, 8, 0), (1, 8, 0)),
    "probe_egress": ((150, 4, 0), (151, 4, 0), (8, 4, 0), (12, 4, 0), (7, 2, 0), (11, 2, 0), (4, 1, 0), (5, 1, 0),
                     (6, 1, 0), (61, 1, 0), (2, 4, 0), (1, 4, 0)),
    "router_ingress": ((152, 8, 0), (153, 8, 0), (8, 4, 0), (12, 4, 0), (7, 2, 0), (11, 2, 0), (4, 1, 0), (5, 1, 0),
                       (6, 1, 0), (10, 4, 0), (2, 8, 0), (1, 8, 0)),
    "biflow": ((152, 8, 0), (153, 8, 0), (8, 4, 0), (12, 4, 0), (7, 2, 0), (11, 2, 0), (4, 1, 0), (5, 1, 0), (6, 1, 0),
               (239, 1, 0), (2, 8, 0), (1, 8, 0), (2, 8, 29305), (1, 8, 29305), (6, 1, 29305)),
}  # fmt: skip
_DATA, _OPTIONS = 256, 257


#: RFC 5477 selector options: samplingInterval (34), or samplingPacketInterval (305) packets selected
#: then samplingPacketSpace (306) skipped.
_SPACED = ("probe_egress", "router_ingress")


def _template(style: str) -> bytes:
    fields = _IPFIX_LAYOUTS[style]
    body = struct.pack("!HH", _DATA, len(fields))
    for ie, n, pen in fields:
        body += struct.pack("!HHI", ie | 0x8000, n, pen) if pen else struct.pack("!HH", ie, n)
    tset = struct.pack("!HH", 2, 4 + len(body)) + body
    opts = ((305, 4), (306, 4)) if style in _SPACED else ((34, 4),)
    obody = struct.pack("!HHH", _OPTIONS, 1 + len(opts), 1) + struct.pack("!HH", 149, 4)
    obody += b"".join(struct.pack("!HH", ie, n) for ie, n in opts)
    return tset + struct.pack("!HH", 3, 4 + len(obody)) + obody


def _options(style: str, sampling: int) -> bytes:
    values = (1, sampling - 1) if style in _SPACED else (sampling,)
    rec = struct.pack("!I", 1) + b"".join(struct.pack("!I", v) for v in values)
    return struct.pack("!HH", _OPTIONS, 4 + len(rec)) + rec


def _value(ie: int, n: int, pen: int, r: Report) -> int | bytes:
    if pen:
        rp, rsize, rflags = r.reverse or (0, 0, 0)
        return {2: rp, 1: rp * rsize, 6: rflags}[ie]
    values: dict[int, int | bytes] = {
        150: r.start_ms // 1000, 151: r.end_ms // 1000, 152: r.start_ms, 153: r.end_ms,
        154: r.start_ms * 1000, 155: r.end_ms * 1000, 8: _ip4(r.src.ip), 12: _ip4(r.dst.ip), 7: r.sport,
        11: r.dport, 4: r.proto, 6: r.flags, 10: 1 if r.direction != 1 else 2, 14: 2 if r.direction != 1 else 3,
        61: r.direction, 138: 7, 239: r.initiator, 5: r.tos, 2: r.packets, 1: r.packets * r.size,
    }  # fmt: skip
    return values[ie]


def _record(style: str, r: Report) -> bytes:
    out = b""
    for ie, n, pen in _IPFIX_LAYOUTS[style]:
        v = _value(ie, n, pen, r)
        if isinstance(v, bytes):
            out += v
        elif ie in (154, 155):  # dateTimeMicroseconds: NTP format (RFC 7011 §6.1.9)
            secs, us = divmod(int(v), 1_000_000)
            out += struct.pack("!II", secs + 2_208_988_800, int(us * (1 << 32) // 1_000_000))
        else:
            out += int(v).to_bytes(n, "big")
    return out


class _IpfixExporter:
    def __init__(self, address: str, style: str, sampling: int):
        self.address, self.style, self.sampling, self.seq = address, style, sampling, 0
        self._sent_templates = False

    def templates(self, export_s: int) -> bytes:
        """The template and sampling options message, sent when the exporter starts."""
        self._sent_templates = True
        return self._message(_template(self.style) + _options(self.style, self.sampling), export_s, 0)

    def datagrams(self, recs: list[Report], export_s: int) -> list[bytes]:
        out = []
        if not self._sent_templates:
            out.append(self.templates(export_s))
        for i in range(0, len(recs), 12):
            chunk = recs[i : i + 12]
            body = b"".join(_record(self.style, r) for r in chunk)
            out.append(self._message(struct.pack("!HH", _DATA, 4 + len(body)) + body, export_s, len(chunk)))
        return out

    def _message(self, sets: bytes, export_s: int, n: int) -> bytes:
        msg = struct.pack("!HHIII", 10, 16 + len(sets), export_s, self.seq, 1) + sets
        self.seq += n
        return msg


def _netflow5(address: str, recs: list[Report], export_s: int, seq: int, sampling: int) -> list[bytes]:
    out = []
    boot_ms = (export_s - 86_400) * 1000  # a day of uptime
    for i in range(0, len(recs), 30):
        chunk = recs[i : i + 30]
        head = struct.pack("!HHIIIIBBH", 5, len(chunk), export_s * 1000 - boot_ms, export_s, 0, seq + i, 0, 0,
                           (1 << 14) | min(sampling, 0x3FFF))  # fmt: skip
        body = b"".join(
            _ip4(r.src.ip) + _ip4(r.dst.ip) + b"\0\0\0\0"
            + struct.pack("!HHIIIIHHBBBBHHBBH", 1, 2, r.packets, r.packets * r.size, r.start_ms - boot_ms,
                          r.end_ms - boot_ms, r.sport, r.dport, 0, r.flags & 0xFF, r.proto, r.tos, 0, 0, 0, 0, 0)
            for r in chunk
        )  # fmt: skip
        out.append(head + body)
    return out


def _packet_header(r: Report, size: int, syn_only: bool) -> bytes:
    """Ethernet + IPv4 + TCP/UDP headers of one packet (no payload: headers are all sFlow carries here)."""
    eth = bytes.fromhex("0200000000020200000000010800")
    l4 = (
        struct.pack("!HHIIBBHHH", r.sport, r.dport, 1, 0, 0x50, 0x02 if syn_only else 0x18, 65535, 0, 0)
        if r.proto == 6
        else struct.pack("!HHHH", r.sport, r.dport, max(8, size - 20), 0)
    )
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, r.tos, size, 0, 0, 64, r.proto, 0, _ip4(r.src.ip), _ip4(r.dst.ip))
    return eth + ip + l4


def _sflow(address: str, recs: list[Report], export_ms: int, seq: int, sampling: int) -> list[bytes]:
    samples: list[bytes] = []
    for r in recs:
        for k in range(r.packets):
            syn = bool(r.flags & 0x02) and not (r.flags & 0x10) and k == 0
            hdr = _packet_header(r, r.size, syn)
            pad = hdr + b"\0" * (-len(hdr) % 4)
            raw = struct.pack("!IIII", 1, r.size + SFLOW_FRAME_OVERHEAD, 4, len(hdr)) + pad
            rec = struct.pack("!II", 1, len(raw)) + raw
            body = struct.pack("!IIIIIIII", seq + len(samples), 1, sampling, 0, 0, 1, 2, 1) + rec
            samples.append(struct.pack("!II", 1, len(body)) + body)
    out = []
    for i in range(0, len(samples), 8):
        chunk = samples[i : i + 8]
        head = struct.pack("!II4sIIII", 5, 1, _ip4(address), 0, seq + i, export_ms % (1 << 32), len(chunk))
        out.append(head + b"".join(chunk))
    return out


def export(
    convs: list[Conversation],
    convention: str,
    rng: np.random.Generator,
    sampling: dict[str, int] | None = None,
) -> Exported:
    """``convs`` exported under ``convention``: the datagrams every exporter would send."""
    sampling = sampling or draw_sampling(rng, convention)
    reps, unseen = reports(convs, convention, sampling, rng)
    exp = Exported(convention, sampling, unobservable=unseen)
    late = convention == "late"
    by_exporter: dict[tuple[str, str, str], list[Report]] = {}
    for r in reps:
        by_exporter.setdefault((r.exporter, r.protocol, r.style), []).append(r)
    for (address, protocol, style), recs in sorted(by_exporter.items()):
        recs.sort(key=lambda r: r.end_ms)
        ipfix = _IpfixExporter(address, style, recs[0].sampling) if protocol in ("ipfix", "biflow") else None
        seq = 0
        # One export per exporter and second in which records end.
        groups: dict[int, list[Report]] = {}
        for r in recs:
            delay = int(rng.integers(1_000, 600_000)) if late else int(rng.integers(200, 3_000))
            groups.setdefault((r.end_ms + delay) // 1000, []).append(r)
        if ipfix is not None:  # the exporter starts (and sends its templates) before its first export
            exp.start.append((float(min(groups) - 10), address, protocol, ipfix.templates(min(groups) - 10)))
        exp.rates.add(recs[0].sampling)
        for export_s, chunk in sorted(groups.items()):
            if ipfix is not None:
                dgrams = ipfix.datagrams(chunk, export_s)
            elif protocol == "netflow5":
                dgrams = _netflow5(address, chunk, export_s, seq, chunk[0].sampling)
            else:
                dgrams = _sflow(address, chunk, export_s * 1000, seq, chunk[0].sampling)
            seq += len(chunk)
            exp.datagrams += [(float(export_s), address, protocol, d) for d in dgrams]
    exp.datagrams = sorted(exp.start, key=lambda d: d[0]) + exp.datagrams
    if late:  # arrival order: by export time, shuffled within a few seconds
        jitter = rng.uniform(0, 5, len(exp.datagrams))
        exp.datagrams = [d for _, d in sorted(zip([d[0] + j for d, j in zip(exp.datagrams, jitter, strict=True)],
                                                  exp.datagrams, strict=True), key=lambda x: x[0])]  # fmt: skip
    else:
        exp.datagrams.sort(key=lambda d: d[0])
    return exp


def draw_sampling(rng: np.random.Generator, convention: str) -> dict[str, int]:
    """Sampling rates as real deployments vary them (1:1 to 1:512; sFlow always sampled)."""
    pick = lambda *v: int(rng.choice(v))  # noqa: E731
    return {
        "ipfix": pick(1, 1, 16, 64),
        "sflow": pick(32, 64, 128),
        "probe": pick(1, 1, 10),
        "router": pick(1, 100, 512),
    }


# ---- files -----------------------------------------------------------------------------------------
def inventory(bank: Bank) -> dict:
    """The bank's inventory, with the container ports its pods listen on (the counting model's
    roles use them) and a service on a high port."""
    inv = bank.inventory()
    ports = {p.ip: SERVICES[p.service] for p in bank.pods}
    for pod in inv["pods"]:
        port = ports[pod["ip"]]
        pod["ports"] = [port, HIGH_PORT_SERVICE] if pod["workload"] == "cache" else [port]
    return inv


def counting_config() -> dict:
    """The counting section a bank writes for its routers (devices, with their centers)."""
    return {
        "exporters": [
            {"match": [ROUTERS[c]], "observer": "device_flow", "center": f"dc{c}"} for c in sorted(ROUTERS)
        ]
    }


def write(exp: Exported, directory: str | Path) -> Path:
    """The convention's capture: every datagram to its protocol's collector port."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{exp.convention}.pcap"
    with PcapWriter(path, port=4739) as w:
        for ts, address, _protocol, payload in exp.datagrams:
            w.write(ts, address, payload)
    return path


def write_bank(bank: Bank, directory: str | Path) -> Path:
    p = Path(directory) / "inventory.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(inventory(bank), sort_keys=False))
    return p
