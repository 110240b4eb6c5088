"""Sampled-header parsing: parametrized frames (built with scapy) → expected flow fields."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP, IPOption_NOP, IPOption_RR, fragment

from collectors.packet import EMPTY, parse_ethernet, parse_ip
from tests.collectors import _builders as b

A4, B4 = b.addr16("10.0.0.1"), b.addr16("10.0.0.2")
A6, B6 = b.addr16("fd00::1"), b.addr16("fd00::2")
OUT_A, OUT_B = b.addr16("192.168.1.1"), b.addr16("192.168.1.2")

CASES = {
    "tcp4": (
        b.eth(b.tcp4(flags="SA", tos=0x28)),
        dict(
            etype=0x0800,
            src_addr=A4,
            dst_addr=B4,
            proto=6,
            src_port=40000,
            dst_port=443,
            tcp_flags=0x12,
            tos=0x28,
            src_mac=b.MAC_A_INT,
            dst_mac=b.MAC_B_INT,
        ),
    ),
    "tcp4_ip_options": (
        b.eth(b.tcp4(options=[IPOption_NOP(), IPOption_RR(routers=["1.2.3.4"])])),
        dict(proto=6, src_port=40000, dst_port=443),
    ),
    "udp4": (b.eth(b.udp4()), dict(proto=17, src_port=5353, dst_port=53, etype=0x0800)),
    "icmp4_echo": (b.eth(b.icmp4(type_=8, code=0)), dict(proto=1, src_port=0, dst_port=8 * 256)),
    "icmp4_unreach": (b.eth(b.icmp4(type_=3, code=3)), dict(proto=1, dst_port=3 * 256 + 3)),
    "tcp6": (
        b.eth(b.tcp6(tc=0xB8)),
        dict(etype=0x86DD, src_addr=A6, dst_addr=B6, proto=6, dst_port=8080, tcp_flags=0x12, tos=0xB8),
    ),
    "tcp6_hop_by_hop": (b.eth(b.tcp6(hbh=True)), dict(proto=6, src_port=40000, dst_port=8080)),
    "icmp6": (b.eth(b.icmp6()), dict(proto=58, dst_port=128 * 256)),
    "ipv6_later_fragment": (b.eth(b.udp6_later_fragment()), dict(proto=17, src_port=0, dst_port=0)),
    "vlan": (b.eth(b.udp4(), vlans=(100,)), dict(vlan=100, proto=17, dst_port=53)),
    "qinq": (b.eth(b.udp4(), vlans=(300, 42), qinq=True), dict(vlan=42, proto=17, dst_port=53)),
    "geneve": (
        b.eth(b.geneve(b.eth(b.tcp4(), src="0a:00:00:00:00:01"), vni=7)),
        dict(
            tunnel_type="geneve",
            tunnel_id=7,
            tunnel_src=OUT_A,
            tunnel_dst=OUT_B,
            src_addr=A4,
            dst_addr=B4,
            proto=6,
            dst_port=443,
            src_mac=0x0A0000000001,
        ),
    ),
    "geneve_options": (
        b.eth(
            b.geneve(b.eth(b.udp4()), vni=0xABCDEF, options=b.ovn_geneve_option() + b.ovn_geneve_option(5))
        ),
        dict(tunnel_type="geneve", tunnel_id=0xABCDEF, proto=17, src_port=5353, dst_port=53),
    ),
    "geneve_ipv6_inner": (
        b.eth(b.geneve(b.eth(b.tcp6()), vni=9)),
        dict(tunnel_type="geneve", src_addr=A6, etype=0x86DD, dst_port=8080),
    ),
    "vxlan": (
        b.eth(b.vxlan(b.eth(b.icmp4()), vni=5001)),
        dict(tunnel_type="vxlan", tunnel_id=5001, tunnel_src=OUT_A, proto=1, dst_port=2048),
    ),
    "non_ip": (
        bytes.fromhex("ffffffffffff0200000000010806") + b"\x00" * 28,
        dict(etype=0x0806, proto=0, src_addr=bytes(16)),
    ),
}


@pytest.mark.parametrize("frame,expected", CASES.values(), ids=CASES.keys())
def test_parse_ethernet(frame, expected):
    info = parse_ethernet(frame)
    assert {k: getattr(info, k) for k in expected} == expected


def test_first_ipv4_fragment_has_ports_later_ones_do_not():
    frags = fragment(
        IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=2000) / (b"x" * 200), fragsize=64
    )
    first, later = parse_ethernet(b.eth(frags[0])), parse_ethernet(b.eth(frags[1]))
    assert (first.src_port, first.dst_port) == (1000, 2000)
    assert (later.proto, later.src_port, later.dst_port, later.src_addr) == (17, 0, 0, A4)


def test_raw_ip_header_protocols():
    assert parse_ip(bytes(b.tcp4())).dst_port == 443
    assert parse_ip(bytes(b.tcp6())).src_addr == A6
    assert parse_ip(b"") == EMPTY


def test_vxlan_without_i_flag_is_plain_udp():
    frame = bytearray(b.eth(b.vxlan(b.eth(b.tcp4()))))
    frame[14 + 20 + 8] = 0  # clear the VXLAN flags
    info = parse_ethernet(bytes(frame))
    assert (info.tunnel_type, info.src_addr, info.dst_port) == ("", OUT_A, 4789)


@pytest.mark.parametrize("name", CASES.keys())
def test_every_truncation_is_safe(name):
    frame = CASES[name][0]
    for cut in range(len(frame) + 1):
        info = parse_ethernet(frame[:cut])
        assert len(info.src_addr) == 16 and len(info.tunnel_dst) == 16


def test_truncated_inner_keeps_tunnel_and_what_it_reached():
    frame = b.eth(b.geneve(b.eth(b.tcp4()), vni=3))
    info = parse_ethernet(frame[: 14 + 20 + 8 + 8 + 14 + 20 + 2])  # inner TCP cut after 2 bytes
    assert (info.tunnel_type, info.tunnel_id, info.src_addr, info.src_port) == ("geneve", 3, A4, 0)


def _ovn_frame(options: bytes) -> bytes:
    return b.eth(b.geneve(b.eth(b.udp4()), vni=0x000A0B, options=options))


OTHER_OPTION = b.geneve_option(0x0101, 0x01, b"\x11" * 8)  # another vendor's option, 8 bytes of data
OVN_CASES = {  # Geneve options → (ingress, egress) OVN logical port keys
    "none": (b"", (0, 0)),
    "ovn": (b.ovn_ports_option(3, 7), (3, 7)),
    "max_keys": (b.ovn_ports_option(0x7FFF, 0xFFFF), (0x7FFF, 0xFFFF)),
    "reserved_bit_ignored": (b.ovn_ports_option(5, 6, reserved=1), (5, 6)),
    "after_another_option": (OTHER_OPTION + b.ovn_ports_option(9, 10), (9, 10)),
    "first_ovn_option_wins": (b.ovn_ports_option(1, 2) + b.ovn_ports_option(3, 4), (1, 2)),
    "other_class": (b.geneve_option(0x0103, 0x80, b"\x00\x01\x00\x02"), (0, 0)),
    "non_critical_type": (b.geneve_option(0x0102, 0x00, b"\x00\x01\x00\x02"), (0, 0)),
    "wrong_length": (b.geneve_option(0x0102, 0x80, b"\x00\x01\x00\x02\x00\x00\x00\x00"), (0, 0)),
    "zero_length_then_ovn": (b.geneve_option(0x0101, 2, b"") + b.ovn_ports_option(4, 8), (4, 8)),
    # The option claims 8 words, beyond the options block: the walk stops, the option is ignored.
    "overruns_block": (b.geneve_option(0x0101, 1, b"\x00" * 4, length=8) + b.ovn_ports_option(1, 2), (0, 0)),
}


@pytest.mark.parametrize("options,ports", OVN_CASES.values(), ids=OVN_CASES.keys())
def test_geneve_ovn_option_gives_the_logical_ports(options, ports):
    info = parse_ethernet(_ovn_frame(options))
    assert (info.tunnel_ovn_ingress_port, info.tunnel_ovn_egress_port) == ports
    # The inner frame is found after the options whatever they hold.
    assert (info.tunnel_type, info.tunnel_id, info.src_addr, info.dst_port) == ("geneve", 0x0A0B, A4, 53)


def test_ovn_option_cut_by_the_sample_end_is_ignored():
    frame = _ovn_frame(OTHER_OPTION + b.ovn_ports_option(9, 10))
    options_at = 14 + 20 + 8 + 8
    whole = options_at + len(OTHER_OPTION) + 8
    for cut in range(options_at, len(frame) + 1):
        info = parse_ethernet(frame[:cut])
        want = (9, 10) if cut >= whole else (0, 0)
        assert (info.tunnel_ovn_ingress_port, info.tunnel_ovn_egress_port) == want, cut
        assert (info.tunnel_type, info.tunnel_id) == ("geneve", 0x0A0B)


def test_ovn_ports_only_from_geneve():
    vxlan = parse_ethernet(b.eth(b.vxlan(b.eth(b.tcp4()))))
    gre = parse_ethernet(
        b.eth(IP(src="1.1.1.1", dst="2.2.2.2", proto=47) / (b"\x00\x00\x08\x00" + bytes(b.tcp4())))
    )
    assert (vxlan.tunnel_type, gre.tunnel_type) == ("vxlan", "gre")
    for info in (vxlan, gre):
        assert (info.tunnel_ovn_ingress_port, info.tunnel_ovn_egress_port) == (0, 0)
