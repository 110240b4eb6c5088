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

import functools
import heapq
import ipaddress
import socket
import struct
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
        # A biflow exporter on a path only one direction takes reports that direction alone: a record of
        # it as the forward one, no reverse counts (the other direction never crossed this node).
        one_way = cv._style(convention, node.center) == "biflow"
        for r in cv._observe(
            conv, fwd or one_way, dict(base, src=node, dst=node), packets, (0 if one_way else rev, 0x1B),
            convention, rates, rng,
        ):  # fmt: skip
            r.src, r.dst = src, dst
            if one_way and not fwd:
                r.initiator = (
                    0  # replies alone: which end opened the conversation is not the exporter's to say
                )
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
    :data:`LATE_MS` after they end, so out of order across buckets).

    Records are packed as numpy arrays of the wire layout (one array per export, sliced into
    messages), not one ``struct.pack`` per field: a 21-day bank is millions of records and, under
    sFlow at 1:1000, tens of millions of packet samples."""

    def __init__(self, convention: str, rng: np.random.Generator):
        self.convention, self.rng = convention, rng
        self._ipfix: dict[str, cv._IpfixExporter] = {}
        self._seq: dict[str, int] = {}
        self._pending: list[tuple[float, int, str, bytes]] = []
        self._n = 0
        self.records = 0

    def add(self, reps: list[cv.Report]) -> None:
        if not reps:
            return
        late = self.convention == "late"
        lo, hi = (1_000, LATE_MS) if late else (200, 3_000)
        delays = self.rng.integers(lo, hi, len(reps))
        groups: dict[tuple[str, str, str, int], list[int]] = {}
        for i, (r, delay) in enumerate(zip(reps, delays.tolist(), strict=True)):
            groups.setdefault((r.exporter, r.protocol, r.style, (r.end_ms + delay) // 1000), []).append(i)
        # every IPFIX style's records packed at once, then taken per export
        packed = {
            style: (np.array(ix), _ipfix_records(style, [reps[i] for i in ix]))
            for style, ix in _by_style(reps).items()
        }
        where = np.empty(len(reps), np.int64)
        for ix, _ in packed.values():
            where[ix] = np.arange(len(ix))
        for (address, protocol, style, export_s), ixs in sorted(groups.items()):
            recs = [reps[i] for i in ixs]
            self.records += len(recs)
            if protocol in ("ipfix", "biflow"):
                exp = self._ipfix.get(address)
                if exp is None:
                    exp = self._ipfix[address] = cv._IpfixExporter(address, style, recs[0].sampling)
                dgrams = _ipfix_datagrams(exp, packed[style][1][where[ixs]], export_s)
            elif protocol == "netflow5":
                seq = self._seq.get(address, 0)
                dgrams = cv._netflow5(address, recs, export_s, seq, recs[0].sampling)
                self._seq[address] = seq + len(recs)
            else:
                seq = self._seq.get(address, 0)
                dgrams = _sflow(address, recs, export_s * 1000, seq, recs[0].sampling)
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


@functools.lru_cache(maxsize=65536)
def _ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


_NTP = 2_208_988_800  # seconds from 1900 (NTP) to 1970


def _columns(recs: list[cv.Report]) -> dict[tuple[int, int], np.ndarray]:
    """Every IPFIX element's values for ``recs``, keyed (IE, enterprise)."""
    u = lambda f: np.fromiter((f(r) for r in recs), np.uint64, len(recs))  # noqa: E731
    start, end = u(lambda r: r.start_ms), u(lambda r: r.end_ms)
    packets, size = u(lambda r: r.packets), u(lambda r: r.size)
    direction = u(lambda r: r.direction)
    rev = np.array([r.reverse or (0, 0, 0) for r in recs], np.uint64).reshape(len(recs), 3)
    out_if = direction != 1

    def ntp(ms: np.ndarray) -> np.ndarray:  # dateTimeMicroseconds (RFC 7011 §6.1.9)
        secs, us = ms // 1000, (ms % 1000) * 1000
        return ((secs + _NTP) << np.uint64(32)) | (us * (1 << 32) // 1_000_000)

    ones = np.ones(len(recs), np.uint64)
    return {
        (150, 0): start // 1000, (151, 0): end // 1000, (152, 0): start, (153, 0): end,
        (154, 0): ntp(start), (155, 0): ntp(end), (8, 0): u(lambda r: _ip(r.src.ip)),
        (12, 0): u(lambda r: _ip(r.dst.ip)), (7, 0): u(lambda r: r.sport), (11, 0): u(lambda r: r.dport),
        (4, 0): u(lambda r: r.proto), (6, 0): u(lambda r: r.flags), (5, 0): u(lambda r: r.tos),
        (10, 0): np.where(out_if, 1, 2).astype(np.uint64), (14, 0): np.where(out_if, 2, 3).astype(np.uint64),
        (61, 0): direction, (138, 0): ones * 7, (239, 0): u(lambda r: r.initiator), (2, 0): packets, (1, 0): packets * size,
        (2, 29305): rev[:, 0], (1, 29305): rev[:, 0] * rev[:, 1], (6, 29305): rev[:, 2],
    }  # fmt: skip


def _ipfix_records(style: str, recs: list[cv.Report]) -> np.ndarray:
    """``recs`` in the style's template layout, one row of bytes per record."""
    layout = cv._IPFIX_LAYOUTS[style]
    dtype = np.dtype([(f"{ie}_{pen}", f">u{n}") for ie, n, pen in layout])
    arr = np.empty(len(recs), dtype)
    cols = _columns(recs)
    for ie, _n, pen in layout:
        arr[f"{ie}_{pen}"] = cols[(ie, pen)]
    return arr


def _by_style(reps: list[cv.Report]) -> dict[str, list[int]]:
    """Indices of the IPFIX (and biflow) reports, per exporter style (template layout)."""
    out: dict[str, list[int]] = {}
    for i, r in enumerate(reps):
        if r.protocol in ("ipfix", "biflow"):
            out.setdefault(r.style, []).append(i)
    return out


def _ipfix_datagrams(exp: cv._IpfixExporter, arr: np.ndarray, export_s: int) -> list[bytes]:
    """As :meth:`conventions._IpfixExporter.datagrams` (templates first, 12 records a message), from
    the records packed by :func:`_ipfix_records`."""
    out = []
    if not exp._sent_templates:
        out.append(exp.templates(export_s))
    for i in range(0, len(arr), 12):
        body = arr[i : i + 12].tobytes()
        n = min(12, len(arr) - i)
        out.append(exp._message(struct.pack("!HH", cv._DATA, 4 + len(body)) + body, export_s, n))
    return out


#: One sFlow v5 flow sample of a TCP packet: sample header, one raw packet header record (Ethernet,
#: IPv4, TCP: 54 bytes, padded to 56).
_SAMPLE = np.dtype(
    [("tag", ">u4"), ("len", ">u4"), ("seq", ">u4"), ("source", ">u4"), ("rate", ">u4"), ("pool", ">u4"),
     ("drops", ">u4"), ("input", ">u4"), ("output", ">u4"), ("nrec", ">u4"), ("rtag", ">u4"), ("rlen", ">u4"),
     ("hproto", ">u4"), ("frame", ">u4"), ("stripped", ">u4"), ("hlen", ">u4"), ("eth", "S14"),
     ("vihl", "u1"), ("tos", "u1"), ("total", ">u2"), ("id", ">u2"), ("frag", ">u2"), ("ttl", "u1"),
     ("proto", "u1"), ("csum", ">u2"), ("src", ">u4"), ("dst", ">u4"), ("sport", ">u2"), ("dport", ">u2"),
     ("tseq", ">u4"), ("ack", ">u4"), ("off", "u1"), ("tflags", "u1"), ("win", ">u2"), ("tcsum", ">u2"),
     ("urg", ">u2"), ("pad", "S2")]
)  # fmt: skip
_ETH = bytes.fromhex("0200000000020200000000010800")


def _sflow(address: str, recs: list[cv.Report], export_ms: int, seq: int, sampling: int) -> list[bytes]:
    """As :func:`conventions._sflow` (a sample per sampled packet, 8 samples a datagram), packed as
    one array; UDP reports (not in the detection bank) go through the per-sample builder."""
    if any(r.proto != 6 for r in recs):
        return cv._sflow(address, recs, export_ms, seq, sampling)
    counts = np.fromiter((r.packets for r in recs), np.int64, len(recs))
    n = int(counts.sum())
    if n == 0:
        return []
    idx = np.repeat(np.arange(len(recs)), counts)
    first = np.zeros(n, bool)
    first[np.cumsum(counts)[counts > 0] - counts[counts > 0]] = True
    col = lambda f, t=np.int64: np.fromiter((f(r) for r in recs), t, len(recs))[idx]  # noqa: E731
    a = np.zeros(n, _SAMPLE)
    a["tag"], a["len"] = 1, _SAMPLE.itemsize - 8
    a["seq"] = seq + np.arange(n)
    a["source"], a["rate"], a["input"], a["output"], a["nrec"] = 1, sampling, 1, 2, 1
    a["rtag"], a["rlen"], a["hproto"], a["stripped"], a["hlen"] = 1, 16 + 56, 1, 4, 54
    size = col(lambda r: r.size)
    a["frame"] = size + cv.SFLOW_FRAME_OVERHEAD
    a["eth"] = _ETH
    a["vihl"], a["tos"], a["total"], a["ttl"], a["proto"] = 0x45, col(lambda r: r.tos), size, 64, 6
    a["src"], a["dst"] = col(lambda r: _ip(r.src.ip)), col(lambda r: _ip(r.dst.ip))
    a["sport"], a["dport"] = col(lambda r: r.sport), col(lambda r: r.dport)
    flags = col(lambda r: r.flags)
    syn = ((flags & 0x02) != 0) & ((flags & 0x10) == 0) & first
    a["tseq"], a["off"], a["tflags"], a["win"] = 1, 0x50, np.where(syn, 0x02, 0x18), 65535
    agent = socket.inet_aton(address)
    out = []
    for i in range(0, n, 8):
        chunk = a[i : i + 8]
        head = struct.pack("!II4sIIII", 5, 1, agent, 0, seq + i, export_ms % (1 << 32), len(chunk))
        out.append(head + chunk.tobytes())
    return out
