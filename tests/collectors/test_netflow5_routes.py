"""NetFlow v5's routing fields: next hop, source/destination AS and prefix masks."""

from __future__ import annotations

import ipaddress

from collectors.decoder import Decoder
from tests.collectors import _nf_builders as nf


def addr(v: bytes) -> str:
    ip = ipaddress.IPv6Address(bytes(v))
    return str(ip.ipv4_mapped or ip)


def test_next_hop_as_and_masks_are_kept():
    records = [
        nf.v5_record(
            "10.0.0.1",
            "10.0.1.1",
            1000,
            443,
            nexthop="192.0.2.254",
            src_as=64512,
            dst_as=65535,
            src_mask=16,
            dst_mask=32,
        ),
        nf.v5_record("10.0.0.2", "10.0.1.2", 1001, 80),  # no next hop, no AS
    ]
    out = Decoder().decode(nf.v5_packet(records), "192.0.2.1", 1_700_000_000_000)
    c = out.flows.columns
    assert not out.errors and len(out.flows) == 2
    assert addr(c["next_hop"][0]) == "192.0.2.254"
    assert bytes(c["next_hop"][1]) == bytes(16)  # absent: all zeros, as the other decoders leave it
    assert c["src_as"].tolist() == [64512, 0] and c["dst_as"].tolist() == [65535, 0]
    assert c["src_mask"].tolist() == [16, 24] and c["dst_mask"].tolist() == [32, 24]
    assert addr(c["src_addr"][0]) == "10.0.0.1"  # the neighbouring fields are untouched
