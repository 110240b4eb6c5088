"""Parse a sampled packet header (the first bytes of a frame) into flow fields.

Used for sFlow raw packet header records and PSAMP sections: Ethernet, 802.1Q / QinQ
tags, MPLS label stacks, IPv4 (with options and fragments), IPv6 (skipping common
extension headers), TCP / UDP / ICMP / ICMPv6, and the overlay tunnels of Kube-OVN / OVN
(Geneve), VXLAN and GRE (with its key), whose inner frame becomes the flow while the
outer addresses go to ``tunnel_src`` / ``tunnel_dst``. OVN's Geneve option gives the
logical ingress / egress port keys (``tunnel_ovn_ingress_port`` / ``_egress_port``).
Ethernet pseudowires over MPLS with a control word (RFC 4448 / 4385: EoMPLS, VPLS) are
opened: the customer frame becomes the flow. With ``srv6`` (a per-exporter option), an
IPv6 packet with a Segment Routing Header (routing type 4, RFC 8754) carrying an IPv4,
IPv6 or Ethernet payload (RFC 8986 encapsulation) is opened too, its outer addresses going
to the tunnel columns (``tunnel_type`` ``srv6``).

Samples are cut at an arbitrary length (128 bytes by default in OVS), so every step
checks the remaining length and returns what it could read: this module never raises
on short or malformed input.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

ZERO_ADDR = bytes(16)
V4_PREFIX = b"\x00" * 10 + b"\xff\xff"

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_TEB = 0x6558  # Transparent Ethernet Bridging: Geneve carrying a full frame
_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
_MAX_VLAN_TAGS = 4
_MPLS = frozenset((0x8847, 0x8848))  # unicast, multicast (RFC 3032 §5)
_MAX_MPLS_LABELS = 8
_GRE = 47
_SRH = 43  # IPv6 routing header; routing type 4 is the Segment Routing Header (RFC 8754)
_SRV6_PAYLOADS = frozenset((4, 41, 143))  # IPv4, IPv6, Ethernet (RFC 8986 §6.1)

GENEVE_PORT = 6081  # RFC 8926 §3.3
VXLAN_PORT = 4789  # RFC 7348 §5

# IPv6 extension headers that carry a "next header" and length we can skip (RFC 8200 §4).
_IPV6_EXT = frozenset((0, 43, 60, 51, 135, 139, 140))
_IPV6_FRAG = 44
_MAX_IPV6_EXT = 8

_ETH = struct.Struct(">HIHIH")  # dst mac (hi16, lo32), src mac (hi16, lo32), ethertype
_VLAN = struct.Struct(">HH")  # TCI, next ethertype
_IPV4 = struct.Struct(">BB4xHxB2x4s4s")  # ver/ihl, tos, flags/frag offset, proto, src, dst
_IPV6 = struct.Struct(">IHBB16s16s")
_PORTS = struct.Struct(">HH")
_TCP = struct.Struct(">HH8xH")  # ports, then the data offset / flags word
_GENEVE = struct.Struct(">BBHI")  # ver|opt_len, O|C|rsvd, protocol type, VNI<<8|rsvd
_VXLAN = struct.Struct(">II")  # flags<<24, VNI<<8
_GENEVE_OPT = struct.Struct(">HBB")  # option class, type, reserved(3) | length(5)

# OVN's Geneve option (ovn controller/physical.h: OVN_GENEVE_CLASS 0x0102, OVN_GENEVE_TYPE
# 0x80, OVN_GENEVE_LEN 4). physical.c put_encapsulation() loads the logical egress port
# key into bits 0-15 and moves the logical ingress port key (15 bits) into bits 16-30;
# bit 31 is reserved (ovn-architecture(7), "Tunnel Encapsulations"). Egress keys from
# 32768 up are logical multicast groups.
OVN_GENEVE_CLASS = 0x0102
OVN_GENEVE_TYPE = 0x80


class PacketInfo(NamedTuple):
    """Flow fields read from one sampled frame (zeros for what was not reached)."""

    src_mac: int = 0
    dst_mac: int = 0
    vlan: int = 0
    etype: int = 0
    src_addr: bytes = ZERO_ADDR  # 16 bytes, IPv4 mapped into IPv6
    dst_addr: bytes = ZERO_ADDR
    proto: int = 0
    tos: int = 0
    src_port: int = 0
    dst_port: int = 0  # ICMP: type * 256 + code
    tcp_flags: int = 0
    tunnel_type: str = ""
    tunnel_id: int = 0
    tunnel_src: bytes = ZERO_ADDR
    tunnel_dst: bytes = ZERO_ADDR
    tunnel_ovn_ingress_port: int = 0  # OVN logical port keys from the Geneve option
    tunnel_ovn_egress_port: int = 0


EMPTY = PacketInfo()
_VLAN_AT = PacketInfo._fields.index("vlan")
_EMPTY = tuple(EMPTY)  # internally results are plain tuples in PacketInfo order (cheaper)
_NO_TUNNEL = ("", 0, ZERO_ADDR, ZERO_ADDR, 0, 0)
_NO_FLOW = (ZERO_ADDR, ZERO_ADDR, 0, 0, 0, 0, 0) + _NO_TUNNEL
_as_info = tuple.__new__  # builds a PacketInfo without its Python-level __new__


def parse_ethernet(buf: bytes, off: int = 0, srv6: bool = False) -> PacketInfo:
    """Parse an Ethernet frame starting at ``off`` (sFlow header_protocol 1)."""
    return _as_info(PacketInfo, ethernet_fields(buf, off, srv6))


def parse_ip(buf: bytes, off: int = 0, srv6: bool = False) -> PacketInfo:
    """Parse a bare IPv4 or IPv6 packet (sFlow header_protocol 11 / 12)."""
    return _as_info(PacketInfo, ip_fields(buf, off, srv6))


def ethernet_fields(buf: bytes, off: int = 0, srv6: bool = False) -> tuple:
    """:func:`parse_ethernet` as a plain tuple in :class:`PacketInfo` order (hot path)."""
    return _ethernet(buf, off, True, True, srv6)


def ip_fields(buf: bytes, off: int = 0, srv6: bool = False) -> tuple:
    """:func:`parse_ip` as a plain tuple in :class:`PacketInfo` order (hot path)."""
    if len(buf) <= off:
        return _EMPTY
    etype = ETH_IPV4 if buf[off] >> 4 == 4 else ETH_IPV6
    return _network(buf, off, 0, 0, 0, etype, True, srv6)


def _ethernet(buf: bytes, off: int, outer: bool, pw: bool = True, srv6: bool = False) -> tuple:
    """``pw``: an MPLS Ethernet pseudowire may be opened (not inside one: bounded nesting)."""
    if len(buf) < off + 14:
        return _EMPTY
    dst_hi, dst_lo, src_hi, src_lo, etype = _ETH.unpack_from(buf, off)
    src_mac = src_hi << 32 | src_lo
    dst_mac = dst_hi << 32 | dst_lo
    off += 14
    vlan = tags = 0
    while etype in _VLAN_TPIDS and tags < _MAX_VLAN_TAGS:
        if len(buf) < off + 4:
            return (src_mac, dst_mac, vlan, etype) + _NO_FLOW
        tci, etype = _VLAN.unpack_from(buf, off)
        # QinQ: the last (innermost) tag wins, i.e. the customer 802.1Q VLAN.
        vlan = tci & 0x0FFF
        off += 4
        tags += 1
    if etype in _MPLS:
        off, etype = _mpls(buf, off)
        if etype == ETH_TEB:  # an Ethernet pseudowire: the customer's frame
            if not pw:
                return (src_mac, dst_mac, vlan, 0) + _NO_FLOW
            inner = _ethernet(buf, off, outer, False, srv6)
            return (
                inner if inner[_VLAN_AT] or not vlan else inner[:_VLAN_AT] + (vlan,) + inner[_VLAN_AT + 1 :]
            )
    return _network(buf, off, src_mac, dst_mac, vlan, etype, outer, srv6)


def _mpls(buf: bytes, off: int) -> tuple[int, int]:
    """Skip a label stack to its bottom (S bit); the payload's ethertype from its first
    nibble, as label switching routers do (RFC 3032 carries no payload type): 4 / 6 an IP
    packet, 0 the control word of a pseudowire (RFC 4385 §3), which for an Ethernet
    pseudowire (RFC 4448 §4.6) is followed by the customer frame (ETH_TEB, after the word)."""
    for _ in range(_MAX_MPLS_LABELS):
        if len(buf) < off + 4:
            return off, 0
        bottom = buf[off + 2] & 0x01
        off += 4
        if bottom:
            if len(buf) <= off:
                return off, 0
            nibble = buf[off] >> 4
            if nibble == 0:
                return (off + 4, ETH_TEB) if len(buf) >= off + 4 + 14 else (off, 0)
            return off, ETH_IPV4 if nibble == 4 else ETH_IPV6 if nibble == 6 else 0
    return off, 0


def _network(
    buf: bytes, off: int, src_mac: int, dst_mac: int, vlan: int, etype: int, outer: bool, srv6: bool = False
) -> tuple:
    """The IP part; on an outer UDP packet to a tunnel port (GRE; SRv6 when asked), the inner
    frame instead."""
    if etype == ETH_IPV4:
        l3 = _ipv4(buf, off)
    elif etype == ETH_IPV6:
        l3 = _ipv6(buf, off, srv6 and outer)
    else:
        return (src_mac, dst_mac, vlan, etype) + _NO_FLOW
    src, dst, proto, tos, sport, dport, flags, payload = l3
    if outer and payload >= 0:
        if proto == _GRE:
            inner = _gre(buf, payload, src, dst)
        elif proto in _SRV6_PAYLOADS:  # only returned with a payload for an SRH and srv6
            inner = _srv6(buf, payload, proto, src_mac, dst_mac, vlan, src, dst)
        elif dport == GENEVE_PORT or dport == VXLAN_PORT:
            inner = _tunnel(buf, payload, dport, src, dst)
        else:
            inner = None
        if inner is not None:
            return inner
    if not src:
        return (src_mac, dst_mac, vlan, etype) + _NO_FLOW
    return (src_mac, dst_mac, vlan, etype, src, dst, proto, tos, sport, dport, flags) + _NO_TUNNEL


_NO_L3 = (b"", b"", 0, 0, 0, 0, 0, -1)


def _ipv4(buf: bytes, off: int) -> tuple:
    if len(buf) < off + 20:
        return _NO_L3
    ver_ihl, tos, frag, proto, src, dst = _IPV4.unpack_from(buf, off)
    ihl = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or ihl < 20:
        return _NO_L3
    src = V4_PREFIX + src
    dst = V4_PREFIX + dst
    if frag & 0x1FFF:  # not the first fragment: no transport header here (RFC 791 §3.1)
        return (src, dst, proto, tos, 0, 0, 0, -1)
    return (src, dst, proto, tos) + _l4(buf, off + ihl, proto)


def _ipv6(buf: bytes, off: int, srv6: bool = False) -> tuple:
    """With ``srv6``, a packet with a Segment Routing Header whose last next header is an
    SRv6 payload (IPv4, IPv6, Ethernet) gives that payload's offset, to be opened."""
    if len(buf) < off + 40:
        return _NO_L3
    vtf, _plen, nh, _hlim, src, dst = _IPV6.unpack_from(buf, off)
    if vtf >> 28 != 6:
        return _NO_L3
    tclass = (vtf >> 20) & 0xFF
    off += 40
    srh = False
    for _ in range(_MAX_IPV6_EXT):
        if nh in _IPV6_EXT:
            if len(buf) < off + 2:
                return (src, dst, nh, tclass, 0, 0, 0, -1)
            if nh == _SRH and len(buf) >= off + 3 and buf[off + 2] == 4:
                srh = True
            # AH counts its length in 4-byte units minus 2 (RFC 4302 §2.2); the others in
            # 8-byte units not counting the first 8 (RFC 8200 §4.3).
            size = (buf[off + 1] + 2) * 4 if nh == 51 else (buf[off + 1] + 1) * 8
            nh = buf[off]
            off += size
        elif nh == _IPV6_FRAG:
            if len(buf) < off + 8:
                return (src, dst, nh, tclass, 0, 0, 0, -1)
            later_fragment = (buf[off + 2] << 8 | buf[off + 3]) & 0xFFF8
            nh = buf[off]
            off += 8
            if later_fragment:
                return (src, dst, nh, tclass, 0, 0, 0, -1)
        else:
            break
    if srh and srv6 and nh in _SRV6_PAYLOADS and len(buf) > off:
        return (src, dst, nh, tclass, 0, 0, 0, off)
    return (src, dst, nh, tclass) + _l4(buf, off, nh)


_NO_L4 = (0, 0, 0, -1)


def _l4(buf: bytes, off: int, proto: int) -> tuple:
    """(sport, dport, tcp_flags, udp_payload_offset or -1) of the transport header."""
    if proto == 6:
        if len(buf) < off + 14:
            if len(buf) >= off + 4:
                return _PORTS.unpack_from(buf, off) + (0, -1)
            return _NO_L4
        sport, dport, flags = _TCP.unpack_from(buf, off)
        # Low 12 bits of the word at offset 12: NS, CWR..FIN (RFC 7125 tcpControlBits).
        return (sport, dport, flags & 0x0FFF, -1)
    if proto == 17:
        if len(buf) < off + 4:
            return _NO_L4
        sport, dport = _PORTS.unpack_from(buf, off)
        return (sport, dport, 0, off + 8 if len(buf) >= off + 8 else -1)
    if proto in (1, 58):
        if len(buf) < off + 2:
            return _NO_L4
        return (0, buf[off] << 8 | buf[off + 1], 0, -1)
    if proto == _GRE:
        return (0, 0, 0, off)  # the GRE header: a tunnel to look into
    return _NO_L4


def _tunnel(buf: bytes, off: int, port: int, src: bytes, dst: bytes) -> tuple | None:
    """The frame inside a Geneve or VXLAN header with the tunnel fields; None if it is not one."""
    if len(buf) < off + 8:
        return None
    ovn = (0, 0)
    if port == GENEVE_PORT:
        ver_optlen, _flags, ptype, vni = _GENEVE.unpack_from(buf, off)
        if ver_optlen >> 6:  # only version 0 exists (RFC 8926 §3.4)
            return None
        # Opt Len counts the option TLVs in 4-byte words: the inner frame starts after
        # them whatever the individual options; OVN's is read on the way.
        opt_end = off + 8 + (ver_optlen & 0x3F) * 4
        if opt_end > off + 8:
            ovn = _ovn_option(buf, off + 8, opt_end)
        off = opt_end
        kind = "geneve"
    else:
        flags, vni = _VXLAN.unpack_from(buf, off)
        if not flags & 0x08000000:  # I flag: VNI valid (RFC 7348 §5)
            return None
        off += 8
        ptype = ETH_TEB
        kind = "vxlan"
    if ptype == ETH_TEB:
        inner = _ethernet(buf, off, False)
    elif ptype == ETH_IPV4 or ptype == ETH_IPV6:
        inner = _network(buf, off, 0, 0, 0, ptype, False)
    else:
        inner = _EMPTY
    return inner[:11] + (kind, vni >> 8, src, dst) + ovn


def _ovn_option(buf: bytes, off: int, end: int) -> tuple[int, int]:
    """(ingress, egress) OVN logical port keys from the Geneve options in ``buf[off:end]``.

    Each option is a 4-byte header (class, type, 5-bit length in 4-byte words) and its
    data (RFC 8926 §3.5). An option overrunning the options block, or cut off by the
    sample's end, is ignored: (0, 0) unless OVN's option was read whole before it.
    """
    end = min(end, len(buf))
    while off + 4 <= end:
        opt_class, opt_type, length = _GENEVE_OPT.unpack_from(buf, off)
        size = 4 + (length & 0x1F) * 4
        if off + size > end:
            break
        if opt_class == OVN_GENEVE_CLASS and opt_type == OVN_GENEVE_TYPE and size == 8:
            data = buf[off + 4] << 24 | buf[off + 5] << 16 | buf[off + 6] << 8 | buf[off + 7]
            return (data >> 16) & 0x7FFF, data & 0xFFFF
        off += size
    return 0, 0


def _srv6(
    buf: bytes, off: int, nh: int, src_mac: int, dst_mac: int, vlan: int, src: bytes, dst: bytes
) -> tuple:
    """The payload of an SRv6 packet (RFC 8986): an IP packet keeps the outer frame's MACs and
    VLAN (it has none of its own); an Ethernet payload (End.DX2) brings its own."""
    if nh == 143:
        inner = _ethernet(buf, off, False)
    else:
        inner = _network(buf, off, src_mac, dst_mac, vlan, ETH_IPV4 if nh == 4 else ETH_IPV6, False)
    return inner[:11] + ("srv6", 0, src, dst, 0, 0)


def _gre(buf: bytes, off: int, src: bytes, dst: bytes) -> tuple | None:
    """The packet inside GRE (RFC 2784 / 2890): C, K, S flags add 4 bytes each, K is the key."""
    if len(buf) < off + 4:
        return None
    flags, ptype = _PORTS.unpack_from(buf, off)
    if flags & 0x0007:  # version 0 only (1 is PPTP's enhanced GRE)
        return None
    off += 4 + (4 if flags & 0x8000 else 0)
    key = 0
    if flags & 0x2000:
        if len(buf) < off + 4:
            return None
        key = int.from_bytes(buf[off : off + 4], "big")
        off += 4
    off += 4 if flags & 0x1000 else 0
    if ptype == ETH_TEB:
        inner = _ethernet(buf, off, False)
    elif ptype == ETH_IPV4 or ptype == ETH_IPV6:
        inner = _network(buf, off, 0, 0, 0, ptype, False)
    else:
        return None
    return inner[:11] + ("gre", key, src, dst, 0, 0)
