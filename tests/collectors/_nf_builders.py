"""Builders of NetFlow v9 (RFC 3954) and v5 datagrams for tests, written from the specs.

Data records reuse :func:`tests.collectors._builders.record` (the encoding of a field
value is the same in v9 and IPFIX).
"""

from __future__ import annotations

import ipaddress
import struct


def v9_template_flowset(templates: dict) -> bytes:
    """{template id: [(type, length), ...]} as one template FlowSet (id 0)."""
    body = b"".join(
        struct.pack(">HH", tid, len(f)) + b"".join(struct.pack(">HH", t, n) for t, n in f)
        for tid, f in templates.items()
    )
    return struct.pack(">HH", 0, len(body) + 4) + body


def v9_options_flowset(tid: int, scope: list, fields: list, pad: int = 2) -> bytes:
    """One options template FlowSet (id 1): scope and option lengths in bytes."""
    specs = b"".join(struct.pack(">HH", t, n) for t, n in scope + fields)
    body = struct.pack(">HHH", tid, 4 * len(scope), 4 * len(fields)) + specs + b"\x00" * pad
    return struct.pack(">HH", 1, len(body) + 4) + body


def v9_data_flowset(tid: int, records: list[bytes]) -> bytes:
    body = b"".join(records)
    body += b"\x00" * (-len(body) % 4)  # padded to 32 bits (RFC 3954 §5.3)
    return struct.pack(">HH", tid, len(body) + 4) + body


def v9_packet(flowsets: list[bytes], seq=0, source_id=0, uptime=10_000, unix_secs=1_700_000_000) -> bytes:
    return struct.pack(">HHIIII", 9, len(flowsets), uptime, unix_secs, seq, source_id) + b"".join(flowsets)


def v5_record(
    src,
    dst,
    sport,
    dport,
    proto=6,
    packets=1,
    octets=100,
    first=0,
    last=0,
    flags=0,
    tos=0,
    nexthop="0.0.0.0",
    src_as=0,
    dst_as=0,
    src_mask=24,
    dst_mask=24,
):
    return struct.pack(
        ">4s4s4sHHIIIIHHBBBBHHBBH",
        ipaddress.ip_address(src).packed,
        ipaddress.ip_address(dst).packed,
        ipaddress.ip_address(nexthop).packed,
        1,
        2,
        packets,
        octets,
        first,
        last,
        sport,
        dport,
        0,
        flags,
        proto,
        tos,
        src_as,
        dst_as,
        src_mask,
        dst_mask,
        0,
    )


def v5_packet(
    records: list[bytes], seq=0, uptime=10_000, secs=1_700_000_000, nsecs=0, sampling=0, engine=(0, 0)
):
    head = struct.pack(
        ">HHIIIIBBH", 5, len(records), uptime, secs, nsecs, seq, engine[0], engine[1], sampling
    )
    return head + b"".join(records)
