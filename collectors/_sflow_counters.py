"""sFlow counter sample records → one counter row per sample (sflow_version_5.txt §5, OVS).

A sample's generic interface record (0:1) makes the row; in the same sample the Ethernet
record (0:2, dot3StatsTable), OVS's OpenFlow port (0:1004) and port name (0:1005) fill
their columns. Other records (OVS datapath 0:2207, application 0:2203...) are skipped.
Agents send all ones for a counter they do not have (OVS: broadcast, multicast): read as 0.
"""

from __future__ import annotations

import struct

from collectors.stats import ExporterStats
from netobs import schema

_TLV = struct.Struct(">II")
GENERIC = struct.Struct(">IIQIIQIIIIIIQIIIIII")  # 88 bytes
ETHERNET = struct.Struct(">13I")  # 52 bytes
OPENFLOW_PORT = struct.Struct(">QI")  # datapath id, port number
_UNKNOWN_GENERIC = [(1 << (64 if c == "Q" else 32)) - 1 for c in GENERIC.format[1:]]
_ALL_ONES = 0xFFFFFFFF
_MAX_NAME = 255  # ifName is at most 255 bytes (RFC 2863)
_MAIN = 13  # the generic values that precede the Ethernet columns in a row

#: Column names the Ethernet record fills, in its order (dot3Stats*, RFC 3635): the schema's list.
ETHERNET_NAMES = schema.ETHERNET_COUNTERS
_NO_ETHERNET = (0,) * len(ETHERNET_NAMES)


def counter_row(buf: bytes, off: int, end: int, nrec: int, head: tuple, stats: ExporterStats) -> tuple | None:
    """The row of one counter sample (``head``: time, type, agent, sub-agent, source), or None."""
    generic = None
    ethernet = _NO_ETHERNET
    dpid = port = 0
    name = ""
    for _ in range(nrec):
        if off + 8 > end:
            stats.error("sflow:truncated_record")
            break
        fmt, length = _TLV.unpack_from(buf, off)
        body, off = off + 8, off + 8 + length
        if off > end:
            stats.error("sflow:truncated_record")
            break
        if fmt == 1 and length >= GENERIC.size:
            generic = _generic(buf, body)
        elif fmt == 2 and length >= ETHERNET.size:
            ethernet = tuple(0 if v == _ALL_ONES else v for v in ETHERNET.unpack_from(buf, body))
        elif fmt == 1004 and length >= OPENFLOW_PORT.size:
            dpid, port = OPENFLOW_PORT.unpack_from(buf, body)
        elif fmt == 1005 and length >= 4:
            size = min(int.from_bytes(buf[body : body + 4], "big"), length - 4, _MAX_NAME)
            name = buf[body + 4 : body + 4 + size].decode("utf-8", "replace")
    if generic is None:
        return None
    # Row order: netobs.schema.COUNTER_COLUMNS (the per-kind packet counters come last).
    return head + generic[:_MAIN] + ethernet + (dpid, port, name) + generic[_MAIN:]


def _generic(buf: bytes, body: int) -> tuple:
    c = [0 if v == _UNKNOWN_GENERIC[i] else v for i, v in enumerate(GENERIC.unpack_from(buf, body))]
    # if_index, type, speed, direction, status; in: octets, packets (ucast+mcast+bcast),
    # errors, discards; out: the same. Then (after the Ethernet and OVS columns): in ucast,
    # mcast, bcast, unknown protos; out ucast, mcast, bcast; promiscuous mode.
    return (
        c[0],
        c[1],
        c[2],
        c[3],
        c[4],
        c[5],
        c[6] + c[7] + c[8],
        c[10],
        c[9],
        c[12],
        c[13] + c[14] + c[15],
        c[17],
        c[16],
        c[6],
        c[7],
        c[8],
        c[11],
        c[13],
        c[14],
        c[15],
        c[18],
    )
