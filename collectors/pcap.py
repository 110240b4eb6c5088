"""A small dependency-free reader of UDP datagrams from pcap and pcapng captures.

Enough to replay or decode captures of export traffic: classic pcap (micro- and
nanosecond, both byte orders) and pcapng (section, interface, enhanced and simple packet
blocks); Ethernet (with VLAN tags), Linux cooked SLL / SLL2, raw IP and BSD loopback
link types; UDP over IPv4 or IPv6. IP fragments are not reassembled: they are skipped
and counted in :attr:`PcapReader.skipped`, like anything else that is not a full UDP
datagram.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

_PCAP_MAGIC = {0xA1B2C3D4: 1_000, 0xA1B23C4D: 1}  # ns per timestamp fraction unit
_PCAPNG_SHB = 0x0A0D0D0A
_BOM = 0x1A2B3C4D

LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_LOOP = 0, 1, 101, 108
LINK_SLL, LINK_SLL2, LINK_IPV4, LINK_IPV6 = 113, 276, 228, 229
_RAW_LINKS = frozenset((LINK_RAW, 12, 14, LINK_IPV4, LINK_IPV6))
_IPV6_EXT = frozenset((0, 43, 60))


class UdpDatagram(NamedTuple):
    """One UDP datagram of a capture; ``timestamp_ns`` is nanoseconds since the epoch."""

    timestamp_ns: int
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    payload: bytes


class PcapReader:
    """Iterate the UDP datagrams of a pcap or pcapng file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.skipped: Counter = Counter()  # reason → frames not yielded

    def __iter__(self) -> Iterator[UdpDatagram]:
        with open(self.path, "rb") as f:
            head = f.read(4)
            f.seek(0)
            if len(head) < 4:
                self.skipped["not_a_capture"] += 1
                return
            frames = _pcapng(f) if struct.unpack("<I", head)[0] == _PCAPNG_SHB else _pcap(f)
            for ts, link, frame in frames:
                if ts is None:
                    self.skipped[link] += 1  # the frame reader reports a problem
                    continue
                found = udp_of_frame(link, frame)
                if isinstance(found, str):
                    self.skipped[found] += 1
                else:
                    yield UdpDatagram(ts, *found)


def read_udp(path: str | os.PathLike) -> Iterator[UdpDatagram]:
    """The UDP datagrams of a capture file (skipped frames are not reported)."""
    return iter(PcapReader(path))


def _pcap(f: BinaryIO) -> Iterator[tuple]:
    head = f.read(24)
    if len(head) < 24:
        yield None, "not_a_capture", b""
        return
    for order in "<>":
        unit = _PCAP_MAGIC.get(struct.unpack(order + "I", head[:4])[0])
        if unit:
            break
    else:
        yield None, "not_a_capture", b""
        return
    link = struct.unpack(order + "I", head[20:24])[0] & 0xFFFF
    rec = struct.Struct(order + "IIII")
    while True:
        hdr = f.read(16)
        if len(hdr) < 16:
            return
        sec, frac, incl, _orig = rec.unpack(hdr)
        data = f.read(incl)
        if len(data) < incl:
            yield None, "truncated_file", b""
            return
        yield sec * 1_000_000_000 + frac * unit, link, data


def _pcapng(f: BinaryIO) -> Iterator[tuple]:
    order = "<"
    links: list[tuple[int, float]] = []  # per interface: (link type, ns per tick)
    while True:
        head = f.read(8)
        if len(head) < 8:
            return
        btype = struct.unpack(order + "I", head[:4])[0]
        if btype == _PCAPNG_SHB:  # a new section may switch byte order
            bom = f.read(4)
            order = "<" if struct.unpack("<I", bom)[0] == _BOM else ">"
            f.seek(-4, 1)
            links = []
        length = struct.unpack(order + "I", head[4:8])[0]
        if length < 12 or length % 4:
            yield None, "bad_block", b""
            return
        body = f.read(length - 8)
        if len(body) < length - 8:
            yield None, "truncated_file", b""
            return
        body = body[:-4]
        if btype == 1 and len(body) >= 8:
            links.append((struct.unpack(order + "H", body[:2])[0], _tsresol(body[8:], order)))
        elif btype == 6 and len(body) >= 20:
            iface, hi, lo, cap, _orig = struct.unpack(order + "IIIII", body[:20])
            if iface >= len(links):
                yield None, "unknown_interface", b""
                continue
            link, tick = links[iface]
            yield int(((hi << 32) | lo) * tick), link, body[20 : 20 + cap]
        elif btype == 3 and len(body) >= 4 and links:
            yield 0, links[0][0], body[4:]


def _tsresol(options: bytes, order: str) -> float:
    """ns per timestamp tick from an interface's if_tsresol option (default µs)."""
    off = 0
    while off + 4 <= len(options):
        code, size = struct.unpack(order + "HH", options[off : off + 4])
        if code == 0:
            break
        if code == 9 and size >= 1:
            v = options[off + 4]
            return 1e9 / (2 ** (v & 0x7F)) if v & 0x80 else 10.0 ** (9 - v)
        off += 4 + (size + 3) // 4 * 4
    return 1_000.0


def udp_of_frame(link: int, frame: bytes) -> tuple | str:
    """(src_ip, src_port, dst_ip, dst_port, payload) of a frame, or why there is none."""
    if link == LINK_ETHERNET:
        off, etype = 12, 0
        while off + 2 <= len(frame):
            etype = int.from_bytes(frame[off : off + 2], "big")
            off += 2
            if etype not in (0x8100, 0x88A8):
                break
            off += 2
        return _ip(frame, off, etype)
    if link == LINK_SLL:
        return _ip(frame, 16, int.from_bytes(frame[14:16], "big"))
    if link == LINK_SLL2:
        return _ip(frame, 20, int.from_bytes(frame[0:2], "big"))
    if link in (LINK_NULL, LINK_LOOP):
        return _ip(frame, 4, 0)
    if link in _RAW_LINKS:
        return _ip(frame, 0, 0)
    return f"link_type_{link}"


def _ip(frame: bytes, off: int, etype: int) -> tuple | str:
    if len(frame) < off + 20:
        return "short_frame"
    version = frame[off] >> 4
    if etype not in (0, 0x0800, 0x86DD) or version not in (4, 6):
        return "not_ip"
    if version == 4:
        ihl = (frame[off] & 0x0F) * 4
        if int.from_bytes(frame[off + 6 : off + 8], "big") & 0x3FFF:  # MF or an offset
            return "ip_fragment"
        proto, src, dst = frame[off + 9], frame[off + 12 : off + 16], frame[off + 16 : off + 20]
        off += ihl
    else:
        if len(frame) < off + 40:
            return "short_frame"
        proto, src, dst = frame[off + 6], frame[off + 8 : off + 24], frame[off + 24 : off + 40]
        off += 40
        while proto in _IPV6_EXT and off + 2 <= len(frame):
            proto, off = frame[off], off + (frame[off + 1] + 1) * 8
        if proto == 44:
            return "ip_fragment"
    if proto != 17:
        return "not_udp"
    if len(frame) < off + 8:
        return "short_frame"
    sport, dport, ulen = struct.unpack_from(">HHH", frame, off)
    if ulen < 8 or off + ulen > len(frame):
        return "truncated_udp"
    return (
        str(ipaddress.ip_address(src)),
        sport,
        str(ipaddress.ip_address(dst)),
        dport,
        frame[off + 8 : off + ulen],
    )
