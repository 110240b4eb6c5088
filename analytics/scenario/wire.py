"""The detection scenario's traffic exported under the counting matrix's wire conventions.

:mod:`analytics.scenario.traffic` writes the detection bank as IPFIX in the project's first
convention (one sampled count per direction, shared by every observation point). Here the same
buckets go through :mod:`analytics.scenario.conventions` instead: each observation point of a
convention samples the packets on its own (binomially, at its rate), and reports them in its own
wire format: OVS bridge IPFIX (ingress and egress per node), OVS per-flow IPFIX, OVS sFlow (a
sample per sampled packet), a probe exporting egress only, routers without a direction field,
NetFlow v5, RFC 5103 biflows, a mix of them across centers, and late, out-of-order exports.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

import numpy as np

from analytics.scenario import conventions as cv
from analytics.scenario.bank import SERVICES, Pod
from analytics.scenario.traffic import Bucket

#: Conventions of the counting matrix the detection scenario can be exported in.
WIRE_CONVENTIONS = cv.CONVENTIONS
#: IP bytes per packet each way (requests small, replies large: packet sizes are not one constant).
REQUEST_SIZE, REPLY_SIZE = 600, 1200
#: Late exports: up to this long after a record ends, out of order (the ``late`` convention).
LATE_MS = 600_000


def _end(p: Pod) -> cv.End:
    return cv.End(p.ip, p.node, p.node_ip, p.center)


def _at(nodes: tuple[str, ...], pods: dict[str, cv.End]) -> list[cv.End]:
    """The observation points an anomaly forces a direction through (node addresses)."""
    return [pods[n] for n in nodes if n in pods]


def reports(
    bucket: Bucket, convention: str, sampling: int, rng: np.random.Generator, nodes: dict[str, cv.End]
) -> list[cv.Report]:
    """Every report the convention's exporters send about the bucket's conversations. ``nodes``: an
    End standing for each node address (for directions an anomaly routes through given nodes)."""
    rates = {"ipfix": sampling, "sflow": sampling, "probe": sampling, "router": sampling}
    out: list[cv.Report] = []
    for conv in bucket.conversations:
        port = conv.port or SERVICES[conv.server.service]
        client, server = _end(conv.client), _end(conv.server)
        for fwd in (True, False):
            src, dst = (client, server) if fwd else (server, client)
            real = conv.request_bytes * (1 if fwd else conv.response_ratio)
            size = REQUEST_SIZE if fwd else REPLY_SIZE
            if real <= 0:
                continue
            packets = max(1, int(rng.poisson(real / size)))  # a probe of 120 bytes is still a packet
            start = bucket.start_ms + int(rng.integers(0, 240_000))
            base = dict(
                src=src, dst=dst, sport=conv.sport if fwd else port, dport=port if fwd else conv.sport, proto=6,
                start_ms=start, end_ms=start + 60_000, size=size, flags=0x1B,
            )  # fmt: skip
            at = conv.forward_at if fwd else conv.reverse_at
            path = _at(at, nodes) if at else None
            made = _observe(convention, fwd, base, packets, rates, rng, path, conv.response_ratio)
            out += [
                r
                for r in made
                if r.exporter not in bucket.silent_exporters
                and (r.packets > 0 or (r.reverse and r.reverse[0]))
            ]
    return out


def _observe(
    convention: str,
    fwd: bool,
    base: dict,
    packets: int,
    rates: dict[str, int],
    rng: np.random.Generator,
    path: list[cv.End] | None,
    response_ratio: float,
) -> list[cv.Report]:
    """The convention's reports of one direction; ``path``: the nodes it crosses, if not the usual."""
    src, dst = base["src"], base["dst"]
    rev = int(packets * response_ratio * REQUEST_SIZE / REPLY_SIZE)
    conv = cv.Conversation(0, src, dst, base["sport"], base["dport"], 6, base["start_ms"], 60_000,
                           packets, rev, REQUEST_SIZE, REPLY_SIZE)  # fmt: skip
    if path is None:
        return cv._observe(conv, fwd, base, packets, (rev, 0x1B), convention, rates, rng)
    # A direction forced through given nodes (an asymmetric path): those nodes, or their centers' routers.
    if convention == "router_ingress":
        centers = dict.fromkeys(n.center for n in path)
        return [cv.Report(cv.ROUTERS[c], "ipfix", "router_ingress", packets=cv._sample(rng, packets, rates["router"]),
                          sampling=rates["router"], **base) for c in centers]  # fmt: skip
    # A probe that exports what its node sends reports at the sender whatever the path (the path is
    # invisible to it); exporters on the nodes the packets cross report at the nodes of the path.
    at = [src] if src.is_pod and cv._style(convention, src.center) == "probe_egress" else []
    at += [n for n in path if cv._style(convention, n.center) != "probe_egress"]
    made: list[cv.Report] = []
    for node in at:
        for r in cv._observe(
            conv, fwd, dict(base, src=node, dst=node), packets, (rev, 0x1B), convention, rates, rng
        ):
            r.src, r.dst = src, dst
            made.append(r)
    return made


def points(convention: str, src: Pod, dst: Pod, at: tuple[str, ...] | None, nodes: dict[str, cv.End]) -> list:
    """Which exporters report one direction, and how (exporter, protocol, flowDirection): the
    observability of an asymmetric path under the convention (sampling aside)."""
    base = dict(src=_end(src), dst=_end(dst), sport=40000, dport=SERVICES[dst.service], proto=6, start_ms=0,
                end_ms=60_000, size=REQUEST_SIZE, flags=0x1B)  # fmt: skip
    rates = {"ipfix": 1, "sflow": 1, "probe": 1, "router": 1}
    path = _at(at, nodes) if at else None
    made = _observe(convention, True, base, 1, rates, np.random.default_rng(0), path, 1.0)
    return sorted((r.exporter, r.protocol, r.direction) for r in made)


class Encoder:
    """Per exporter wire state (templates, sequence numbers) across the whole bank, and the order of
    arrival: datagrams come out by export time (records of the ``late`` convention up to
    :data:`LATE_MS` after they end, so out of order across buckets)."""

    def __init__(self, convention: str, rng: np.random.Generator):
        self.convention, self.rng = convention, rng
        self._ipfix: dict[str, cv._IpfixExporter] = {}
        self._seq: dict[str, int] = {}
        self._pending: list[tuple[float, int, str, bytes]] = []
        self._n = 0
        self.records = 0

    def add(self, reps: list[cv.Report]) -> None:
        late = self.convention == "late"
        groups: dict[tuple[str, str, str, int], list[cv.Report]] = {}
        for r in reps:
            delay = int(self.rng.integers(1_000, LATE_MS)) if late else int(self.rng.integers(200, 3_000))
            groups.setdefault((r.exporter, r.protocol, r.style, (r.end_ms + delay) // 1000), []).append(r)
        for (address, protocol, style, export_s), recs in sorted(groups.items()):
            self.records += len(recs)
            if protocol in ("ipfix", "biflow"):
                exp = self._ipfix.get(address)
                if exp is None:
                    exp = self._ipfix[address] = cv._IpfixExporter(address, style, recs[0].sampling)
                dgrams = exp.datagrams(recs, export_s)
            elif protocol == "netflow5":
                seq = self._seq.get(address, 0)
                dgrams = cv._netflow5(address, recs, export_s, seq, recs[0].sampling)
                self._seq[address] = seq + len(recs)
            else:
                seq = self._seq.get(address, 0)
                dgrams = cv._sflow(address, recs, export_s * 1000, seq, recs[0].sampling)
                self._seq[address] = seq + sum(r.packets for r in recs)
            jitter = self.rng.uniform(0, 5) if late else 0.0
            for d in dgrams:
                self._n += 1
                heapq.heappush(self._pending, (export_s + jitter, self._n, address, d))

    def ready(self, before_s: float) -> Iterator[tuple[float, str, bytes]]:
        """Datagrams exported before ``before_s`` (all of them with ``inf``), in arrival order."""
        while self._pending and self._pending[0][0] < before_s:
            ts, _, address, d = heapq.heappop(self._pending)
            yield ts, address, d
