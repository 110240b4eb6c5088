"""tshark as an independent oracle: its JSON dissection of a capture, as flow tuples.

``tshark -T json`` repeats keys inside one object (several flows / samples per set);
``object_pairs_hook`` keeps every one of them as a list of pairs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime

FIELDS = (
    "src_addr",
    "dst_addr",
    "proto",
    "src_port",
    "dst_port",
    "packets",
    "bytes",
    "in_if",
    "out_if",
    "src_mac",
    "dst_mac",
)


def available() -> bool:
    return shutil.which("tshark") is not None


def dissect(pcap: str, port: int, proto: str) -> list:
    """tshark's JSON for ``pcap`` with ``udp.port==port`` decoded as ``proto`` (sflow / cflow)."""
    out = subprocess.run(
        ["tshark", "-r", pcap, "-d", f"udp.port=={port},{proto}", "-T", "json"],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    return json.loads(out, object_pairs_hook=lambda pairs: pairs)


def _walk(node, prefix: str):
    """Every (key, value) pair whose key starts with ``prefix``, depth first, in order."""
    if isinstance(node, list):
        for item in node:
            if isinstance(item, tuple) and len(item) == 2:
                key, value = item
                if key.startswith(prefix):
                    yield key, value
                yield from _walk(value, prefix)
            else:
                yield from _walk(item, prefix)


def _get(pairs, *names, default=None):
    d = dict(p for p in pairs if isinstance(p, tuple)) if isinstance(pairs, list) else {}
    for name in names:
        if name in d:
            return d[name]
    return default


def ipfix_flows(pcap: str, port: int) -> list[dict]:
    """One dict per IPFIX data record, in capture order."""
    flows = []
    for _, flow in _walk(dissect(pcap, port, "cflow"), "Flow "):
        if _get(flow, "cflow.direction") is None:
            continue  # an options record (OVS exporter statistics)

        def g(*names, default=0, flow=flow):
            return _get(flow, *names, default=default)

        icmp_t = int(g("cflow.icmp_ipv4_type", "cflow.icmp_ipv6_type", default=-1))
        times = (
            _get(g("cflow.timedelta_tree", default=[]), "cflow.abstimestart"),
            _get(g("cflow.timedelta_tree", default=[]), "cflow.abstimeend"),
        )
        flows.append(
            {
                "src_addr": g("cflow.srcaddr", "cflow.srcaddrv6", default="::"),
                "dst_addr": g("cflow.dstaddr", "cflow.dstaddrv6", default="::"),
                "proto": int(g("cflow.protocol")),
                "src_port": int(g("cflow.srcport")),
                "dst_port": icmp_t * 256 + int(g("cflow.icmp_ipv4_code", "cflow.icmp_ipv6_code"))
                if icmp_t >= 0
                else int(g("cflow.dstport")),
                "packets": int(g("cflow.packets")),
                "bytes": int(g("cflow.octets", "cflow.layer2_octet_delta_count")),
                "in_if": int(g("cflow.inputint")),
                "out_if": int(g("cflow.outputint")),
                "src_mac": g("cflow.srcmac"),
                "dst_mac": g("cflow.dstmac"),
                "direction": ("ingress", "egress")[int(g("cflow.direction"))],
                "flow_start": _ms(times[0]),
                "flow_end": _ms(times[1]),
            }
        )
    return flows


def _ms(text: str | None) -> int | None:
    """'Nov 30, 2026 05:31:44.728000000 UTC' → ms since the epoch."""
    if not text:
        return None
    stamp, frac = text.removesuffix(" UTC").rsplit(".", 1)
    t = datetime.strptime(stamp + " +0000", "%b %d, %Y %H:%M:%S %z")
    return int(t.timestamp()) * 1000 + int(frac[:3])


def sflow_flows(pcap: str, port: int) -> list[dict]:
    """One dict per sFlow flow sample with a raw Ethernet header, in capture order."""
    flows = []
    for _, sample in _walk(dissect(pcap, port, "sflow"), "Flow sample"):
        raw = _get(sample, "Raw packet header", default=[])
        tree = _get(raw, "sflow_245.header_tree", default=[])
        eth = _get(tree, "eth", default=[])
        ip = _get(tree, "ip", default=None) or _get(tree, "ipv6", default=[])
        l4 = next((_get(tree, n) for n in ("tcp", "udp", "icmp", "icmpv6") if _get(tree, n)), [])
        icmp = _get(tree, "icmp") or _get(tree, "icmpv6")
        flows.append(
            {
                "src_addr": _get(ip, "ip.src", "ipv6.src", default="::"),
                "dst_addr": _get(ip, "ip.dst", "ipv6.dst", default="::"),
                "proto": _proto(tree, ip),
                "src_port": int(_get(l4, "tcp.srcport", "udp.srcport", default=0)),
                "dst_port": int(_get(icmp, "icmp.type", "icmpv6.type")) * 256
                + int(_get(icmp, "icmp.code", "icmpv6.code"))
                if icmp
                else int(_get(l4, "tcp.dstport", "udp.dstport", default=0)),
                "packets": 1,
                "bytes": int(_get(raw, "sflow_245.header.frame_length")),
                "in_if": int(_get(sample, "sflow.flow_sample.input_interface")),
                "out_if": int(_get(sample, "sflow.flow_sample.output_interface"), 16),
                "src_mac": _get(eth, "eth.src"),
                "dst_mac": _get(eth, "eth.dst"),
                "sampling_rate": int(_get(sample, "sflow.flow_sample.sampling_rate")),
            }
        )
    return flows


def _proto(tree, ip) -> int:
    """The transport protocol; tshark's ipv6.nxt stops at the first extension header."""
    for name, number in (("tcp", 6), ("udp", 17), ("icmp", 1), ("icmpv6", 58)):
        if _get(tree, name):
            return number
    return int(_get(ip, "ip.proto", "ipv6.nxt", default=0))


def _key(src, dst, proto: int, sport: int, dport: int) -> tuple:
    """A 5-tuple; ports only for TCP / UDP (ICMP type/code encodings differ between exporters)."""
    return (src, dst, proto) + ((sport, dport) if proto in (6, 17) else (0, 0))


def cflow_sums(pcap: str, port: int) -> dict:
    """5-tuple → [packets, bytes] over every NetFlow v5/v9 / IPFIX flow record tshark decodes."""
    sums: dict = {}
    for flow in _flows(pcap, port):
        src = _get(flow, "cflow.srcaddr", "cflow.srcaddrv6")
        if src is None:
            continue  # options data (sampling, interface names)
        key = _key(
            src,
            _get(flow, "cflow.dstaddr", "cflow.dstaddrv6"),
            int(_get(flow, "cflow.protocol", default=0)),
            int(_get(flow, "cflow.srcport", default=0)),
            int(_get(flow, "cflow.dstport", default=0)),
        )
        s = sums.setdefault(key, [0, 0])
        s[0] += int(_get(flow, "cflow.packets", "cflow.packets64", default=0))
        s[1] += int(_get(flow, "cflow.octets", "cflow.octets64", default=0))
    return sums


def _flows(pcap: str, port: int):
    """Flow records: IPFIX / v9 'Flow N' subtrees and v5 'pdu N/M' subtrees."""
    for key, value in _walk(dissect(pcap, port, "cflow"), ""):
        if key.startswith("Flow ") or key.startswith("pdu "):
            yield value


def sflow_sums(pcap: str, port: int) -> dict:
    """5-tuple → [samples, frame bytes] of sFlow flow samples with a raw Ethernet header."""
    sums: dict = {}
    for f in sflow_flows(pcap, port):
        key = _key(f["src_addr"], f["dst_addr"], f["proto"], f["src_port"], f["dst_port"])
        s = sums.setdefault(key, [0, 0])
        s[0] += 1
        s[1] += f["bytes"]
    return sums


def ipfix_values(pcap: str, port: int, field: str) -> list[str | None]:
    """One IPFIX / NetFlow field (e.g. ``cflow.observation_point_id``) of every flow data record, in order."""
    return [_get(flow, field) for flow in _flows(pcap, port) if _get(flow, "cflow.direction") is not None]


def psamp_sums(pcap: str, port: int) -> dict:
    """5-tuple → [packets, bytes] of IPFIX / PSAMP packet reports: each record is one packet, keyed by tshark's
    dissection of its dataLinkFrameSection, counted with its sectionExportedOctets (the frame size here)."""
    sums: dict = {}
    for flow in _flows(pcap, port):
        tree = _get(flow, "cflow.data_link_frame_section_tree")
        if tree is None:
            continue
        ip = _get(tree, "ip", default=None) or _get(tree, "ipv6", default=[])
        l4 = next((_get(tree, n) for n in ("tcp", "udp") if _get(tree, n)), [])
        key = _key(
            _get(ip, "ip.src", "ipv6.src", default="::"),
            _get(ip, "ip.dst", "ipv6.dst", default="::"),
            _proto(tree, ip),
            int(_get(l4, "tcp.srcport", "udp.srcport", default=0)),
            int(_get(l4, "tcp.dstport", "udp.dstport", default=0)),
        )
        s = sums.setdefault(key, [0, 0])
        s[0] += 1
        s[1] += int(_get(flow, "cflow.section_exported_octets", default=0))
    return sums
