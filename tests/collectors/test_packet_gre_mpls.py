"""GRE (with and without key, Ethernet or IP inside) and MPLS label stacks, built with scapy."""

from __future__ import annotations

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Ether

from collectors.decoder import Decoder
from collectors.packet import parse_ethernet
from netobs.batch import ip_str
from tests.collectors import _builders as b

OUTER = IP(src="192.168.9.1", dst="192.168.9.2")


@pytest.mark.parametrize(
    "gre,key",
    [
        (GRE(proto=0x6558), 0),
        (GRE(proto=0x6558, key_present=1, key=0xABCDEF), 0xABCDEF),
        (GRE(proto=0x6558, key_present=1, key=7, chksum_present=1, seqnum_present=1, sequence_number=9), 7),
    ],
)
def test_gre_carrying_ethernet(gre, key):
    inner = Ether(src=b.MAC_A, dst=b.MAC_B) / b.tcp4(src="10.8.0.1", dst="10.8.0.2", sport=3333, dport=22)
    info = parse_ethernet(b.eth(OUTER / gre / inner))
    assert (ip_str(info.src_addr), ip_str(info.dst_addr), info.src_port, info.dst_port) == (
        "10.8.0.1",
        "10.8.0.2",
        3333,
        22,
    )
    assert (info.tunnel_type, info.tunnel_id, ip_str(info.tunnel_src)) == ("gre", key, "192.168.9.1")


def test_gre_carrying_ipv6_and_truncated_gre():
    info = parse_ethernet(
        b.eth(OUTER / GRE(proto=0x86DD) / IPv6(src="fd00::a", dst="fd00::b") / UDP(dport=53))
    )
    assert (ip_str(info.src_addr), info.proto, info.dst_port, info.tunnel_type) == ("fd00::a", 17, 53, "gre")
    cut = b.eth(OUTER / GRE(proto=0x6558, key_present=1, key=1))[:-2]
    info = parse_ethernet(cut)  # the key itself is cut: the outer packet is the flow
    assert info.tunnel_type == "" and info.proto == 47


@pytest.mark.parametrize("labels", [1, 3])
def test_mpls_label_stack(labels):
    stack = None
    for i in range(labels):
        label = MPLS(label=100 + i, s=1 if i == labels - 1 else 0)
        stack = label if stack is None else stack / label
    frame = bytes(Ether(src=b.MAC_A, dst=b.MAC_B, type=0x8847) / stack / b.udp4(dport=4242))
    info = parse_ethernet(frame)
    assert (info.etype, ip_str(info.dst_addr), info.dst_port) == (0x0800, "10.0.0.2", 4242)


def test_gre_through_sflow_has_the_tunnel_columns():
    frame = b.eth(OUTER / GRE(proto=0x6558, key_present=1, key=42) / Ether() / b.udp4())
    out = Decoder().decode(b.sflow_datagram([b.flow_sample([b.raw_header_record(frame)])]), "192.0.2.1", 0)
    assert out.flows.columns["tunnel_type"].tolist() == ["gre"]
    assert out.flows.columns["tunnel_id"].tolist() == [42]
