"""Builders of export datagrams for tests: sFlow v5 (struct), IPFIX (struct), frames (scapy).

Written from the specifications independently of the decoders, so that a test compares
two readings of the spec rather than the decoder with itself.
"""

from __future__ import annotations

import ipaddress
import struct

from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
MAC_A_INT, MAC_B_INT = 0x02000000000A, 0x02000000000B


# --- frames -----------------------------------------------------------------------------


def eth(payload, vlans=(), src=MAC_A, dst=MAC_B, qinq=False) -> bytes:
    """Ethernet frame; ``vlans`` outermost first (QinQ: an 802.1ad S-tag then 802.1Q)."""
    frame = Ether(src=src, dst=dst)
    for i, vid in enumerate(vlans):
        frame = frame / (Dot1AD(vlan=vid) if qinq and i == 0 else Dot1Q(vlan=vid))
    return bytes(frame / payload)


def tcp4(src="10.0.0.1", dst="10.0.0.2", sport=40000, dport=443, flags="S", tos=0, options=None):
    ip = IP(src=src, dst=dst, tos=tos, options=options) if options else IP(src=src, dst=dst, tos=tos)
    return ip / TCP(sport=sport, dport=dport, flags=flags)


def udp4(src="10.0.0.1", dst="10.0.0.2", sport=5353, dport=53, payload=b"x" * 20):
    return IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload


def icmp4(src="10.0.0.1", dst="10.0.0.2", type_=8, code=0):
    return IP(src=src, dst=dst) / ICMP(type=type_, code=code)


def tcp6(src="fd00::1", dst="fd00::2", sport=40000, dport=8080, flags="SA", tc=0, hbh=False):
    ip = IPv6(src=src, dst=dst, tc=tc)
    return (ip / IPv6ExtHdrHopByHop() if hbh else ip) / TCP(sport=sport, dport=dport, flags=flags)


def udp6_later_fragment(src="fd00::1", dst="fd00::2"):
    return IPv6(src=src, dst=dst) / IPv6ExtHdrFragment(offset=100, nh=17) / (b"\x00" * 16)


def icmp6(src="fd00::1", dst="fd00::2"):
    return IPv6(src=src, dst=dst) / ICMPv6EchoRequest()


def geneve(inner: bytes, vni=0x1234, options: bytes = b"", outer=("192.168.1.1", "192.168.1.2")):
    """Geneve (UDP 6081) with raw option TLV bytes (length a multiple of 4)."""
    g = GENEVE(vni=vni, proto=0x6558, optionlen=len(options) // 4) / options
    return IP(src=outer[0], dst=outer[1]) / UDP(sport=12345, dport=6081) / g / inner


def vxlan(inner: bytes, vni=5001, outer=("192.168.1.1", "192.168.1.2")):
    return IP(src=outer[0], dst=outer[1]) / UDP(sport=12345, dport=4789) / VXLAN(vni=vni, flags=0x08) / inner


def ovn_geneve_option(value: int = 0x00010002) -> bytes:
    """OVN's metadata option: class 0x0102, type 0x80, 4 bytes (logical in/out ports)."""
    return struct.pack(">HBBI", 0x0102, 0x80, 1, value)


def geneve_option(opt_class: int, opt_type: int, data: bytes, length: int | None = None) -> bytes:
    """One Geneve option TLV (RFC 8926 §3.5); ``length`` (4-byte words) overrides the true one."""
    words = len(data) // 4 if length is None else length
    return struct.pack(">HBB", opt_class, opt_type, words & 0x1F) + data


def ovn_ports_option(ingress: int, egress: int, reserved: int = 0) -> bytes:
    """OVN's option from its logical port keys: 1 reserved bit, 15-bit ingress, 16-bit egress
    (ovn-architecture(7); controller/physical.c put_encapsulation)."""
    return geneve_option(0x0102, 0x80, struct.pack(">HH", reserved << 15 | ingress, egress))


def addr16(text: str) -> bytes:
    ip = ipaddress.ip_address(text)
    return (b"\x00" * 10 + b"\xff\xff" + ip.packed) if ip.version == 4 else ip.packed


# --- sFlow v5 ---------------------------------------------------------------------------


def _tlv(fmt: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)  # XDR: opaque data padded to 4 bytes
    return struct.pack(">II", fmt, len(body)) + body


def raw_header_record(frame: bytes, frame_length: int | None = None, header_len: int = 128, proto=1):
    hdr = frame[:header_len]
    flen = len(frame) + 4 if frame_length is None else frame_length
    return _tlv(1, struct.pack(">IIII", proto, flen, 4, len(hdr)) + hdr)


def sampled_ipv4_record(src, dst, proto, sport, dport, flags=0, tos=0, length=100):
    body = struct.pack(
        ">II4s4sIIII",
        length,
        proto,
        ipaddress.ip_address(src).packed,
        ipaddress.ip_address(dst).packed,
        sport,
        dport,
        flags,
        tos,
    )
    return _tlv(3, body)


def sampled_ipv6_record(src, dst, proto, sport, dport, flags=0, prio=0, length=100):
    body = struct.pack(
        ">II16s16sIIII",
        length,
        proto,
        ipaddress.ip_address(src).packed,
        ipaddress.ip_address(dst).packed,
        sport,
        dport,
        flags,
        prio,
    )
    return _tlv(4, body)


def switch_record(src_vlan=0, dst_vlan=0):
    return _tlv(1001, struct.pack(">IIII", src_vlan, 0, dst_vlan, 0))


def sflow_address(addr: str | None) -> bytes:
    """An sFlow ``address``: type 1 IPv4 / 2 IPv6 and its bytes; None is type 0 (unknown)."""
    if addr is None:
        return struct.pack(">I", 0)
    ip = ipaddress.ip_address(addr)
    return struct.pack(">I", 1 if ip.version == 4 else 2) + ip.packed


def router_record(next_hop: str | None = "192.0.2.254", src_mask=24, dst_mask=16) -> bytes:
    """Extended router data (0:1002): next hop, source and destination prefix lengths."""
    return _tlv(1002, sflow_address(next_hop) + struct.pack(">II", src_mask, dst_mask))


def gateway_record(
    next_hop: str | None = "192.0.2.253",
    as_=64500,
    src_as=64501,
    src_peer_as=64502,
    path=((2, (64510, 64511, 64512)),),
    communities=(),
    local_pref=100,
) -> bytes:
    """Extended gateway data (0:1003); ``path`` is (segment type 1 set / 2 sequence, ASes) each."""
    body = sflow_address(next_hop) + struct.pack(">IIII", as_, src_as, src_peer_as, len(path))
    for seg_type, ases in path:
        body += struct.pack(f">II{len(ases)}I", seg_type, len(ases), *ases)
    body += struct.pack(f">I{len(communities)}II", len(communities), *communities, local_pref)
    return _tlv(1003, body)


def flow_sample(records, rate=100, source=(0, 3), inp=3, out=4, seq=1, pool=1000, drops=0):
    body = struct.pack(
        ">IIIIIIII", seq, source[0] << 24 | source[1], rate, pool, drops, inp, out, len(records)
    )
    return _tlv(1, body + b"".join(records))


def expanded_flow_sample(records, rate=100, source=(0, 3), inp=(0, 3), out=(0, 4), seq=1):
    body = struct.pack(
        ">IIIIIIIIIII", seq, source[0], source[1], rate, 1000, 0, inp[0], inp[1], out[0], out[1], len(records)
    )
    return _tlv(3, body + b"".join(records))


def generic_if_counters(
    if_index=3,
    speed=10_000_000_000,
    in_octets=1000,
    in_ucast=10,
    in_mcast=1,
    in_bcast=2,
    in_discards=3,
    in_errors=4,
    out_octets=2000,
    out_ucast=20,
    out_mcast=0,
    out_bcast=1,
    out_discards=5,
    out_errors=6,
):
    body = struct.pack(
        ">IIQIIQIIIIIIQIIIIII",
        if_index,
        6,
        speed,
        1,
        3,
        in_octets,
        in_ucast,
        in_mcast,
        in_bcast,
        in_discards,
        in_errors,
        0,
        out_octets,
        out_ucast,
        out_mcast,
        out_bcast,
        out_discards,
        out_errors,
        0,
    )
    return _tlv(1, body)


def counter_sample(records, source=(0, 3), seq=1, expanded=False):
    if expanded:
        return _tlv(4, struct.pack(">IIII", seq, source[0], source[1], len(records)) + b"".join(records))
    return _tlv(2, struct.pack(">III", seq, source[0] << 24 | source[1], len(records)) + b"".join(records))


def sflow_datagram(samples, agent="192.0.2.1", seq=1, sub_agent=0, uptime=1000) -> bytes:
    ip = ipaddress.ip_address(agent)
    head = struct.pack(">II", 5, 1 if ip.version == 4 else 2) + ip.packed
    head += struct.pack(">IIII", sub_agent, seq, uptime, len(samples))
    return head + b"".join(samples)


# --- IPFIX ------------------------------------------------------------------------------


def _field_specs(fields) -> bytes:
    out = b""
    for f in fields:
        ie, length, pen = (f + (0,))[:3]
        out += struct.pack(">HH", ie | (0x8000 if pen else 0), length) + (
            struct.pack(">I", pen) if pen else b""
        )
    return out


def template_set(templates: dict) -> bytes:
    """{template id: [(ie, length[, pen]), ...]} as one template set (id 2)."""
    body = b"".join(struct.pack(">HH", tid, len(f)) + _field_specs(f) for tid, f in templates.items())
    return struct.pack(">HH", 2, len(body) + 4) + body


def options_template_set(tid: int, scope: list, fields: list) -> bytes:
    body = struct.pack(">HHH", tid, len(scope) + len(fields), len(scope)) + _field_specs(scope + fields)
    return struct.pack(">HH", 3, len(body) + 4) + body


def data_set(tid: int, records: list[bytes], pad: int = 0) -> bytes:
    body = b"".join(records) + b"\x00" * pad
    return struct.pack(">HH", tid, len(body) + 4) + body


def varlen(value: bytes) -> bytes:
    """A variable-length field value with its 1- or 3-byte length prefix (RFC 7011 §7)."""
    if len(value) < 255:
        return bytes([len(value)]) + value
    return b"\xff" + struct.pack(">H", len(value)) + value


def ipfix_message(sets: list[bytes], domain=1, export_time=1_700_000_000, seq=0) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export_time, seq, domain) + body


VAR = 0xFFFF


def record(fields, values: dict) -> bytes:
    """One data record for ``fields``; ``values`` by IE number (or (pen, ie)), default 0."""
    out = b""
    for f in fields:
        ie, length, pen = (f + (0,))[:3]
        v = values.get((pen, ie), values.get(ie, 0) if not pen else 0)
        if length == VAR:
            out += varlen(v if isinstance(v, bytes) else b"")
        elif isinstance(v, bytes):
            out += v.ljust(length, b"\x00")[:length]
        elif isinstance(v, str):
            out += ipaddress.ip_address(v).packed
        else:
            out += v.to_bytes(length, "big")
    return out


# What Open vSwitch 3.x puts in its bridge IPFIX templates (ofproto-dpif-ipfix.c).
OVS_PEN = 6876
OVS_KEY_HEAD = [
    (138, 4),
    (61, 1),
    (56, 6),
    (80, 6),
    (256, 2),
    (240, 1),
    (10, 4),
    (368, 4),
    (82, VAR),
    (83, VAR),
]
OVS_KEY_EGRESS = [(14, 4), (369, 4), (82, VAR), (83, VAR)]
OVS_KEY_IPV4 = [(60, 1), (192, 1), (4, 1), (195, 1), (196, 1), (5, 1), (8, 4), (12, 4), (7, 2), (11, 2)]
OVS_KEY_TUNNEL = [
    (893, 4, OVS_PEN),
    (894, 4, OVS_PEN),
    (895, 1, OVS_PEN),
    (896, 2, OVS_PEN),
    (897, 2, OVS_PEN),
    (891, 1, OVS_PEN),
    (892, VAR, OVS_PEN),
]
OVS_AGGREGATES = [
    (158, 4),
    (159, 4),
    (133, 8),
    (135, 8),
    (2, 8),
    (86, 8),
    (419, 8),
    (420, 8),
    (421, 8),
    (422, 8),
    (423, 8),
    (174, 8),
    (175, 8),
    (352, 8),
    (353, 8),
    (136, 1),
    (132, 8),
    (134, 8),
    (1, 8),
    (85, 8),
    (198, 8),
    (199, 8),
    (25, 8),
    (26, 8),
    (20, 8),
    (19, 8),
]
OVS_TCP = [(218, 8), (219, 8), (220, 8), (221, 8), (222, 8), (223, 8)]


def ovs_fields(egress=False, tunnel=False, interface_names=True) -> list:
    """An OVS-like IPv4/TCP template; without ``interface_names`` every field is fixed."""
    head = OVS_KEY_HEAD + (OVS_KEY_EGRESS if egress else [])
    if not interface_names:
        head = [f for f in head if f[1] != VAR]
    tail = OVS_KEY_TUNNEL if tunnel else []
    return head + OVS_KEY_IPV4 + tail + OVS_AGGREGATES + OVS_TCP


def ovs_values(i: int = 0, egress=False) -> dict:
    return {
        61: int(egress),
        56: b"\x02\x00\x00\x00\x00\x0a",
        80: b"\x02\x00\x00\x00\x00\x0b",
        256: 0x0800,
        10: 3,
        14: 4,
        82: b"veth-pod-a",
        83: b"pod a",
        60: 4,
        4: 6,
        5: 0x20,
        8: f"10.16.0.{i % 250 + 1}",
        12: "10.16.0.254",
        7: 40000 + i,
        11: 443,
        158: 2_500_000,
        159: 1_000,
        2: 10 + i,
        86: 100 + i,
        1: 1000 + i,
        85: 10_000 + i,
        (OVS_PEN, 893): "172.18.0.2",
        (OVS_PEN, 894): "172.18.0.3",
        (OVS_PEN, 891): 7,
        (OVS_PEN, 892): b"\x00\x00\x05",
    }
