"""The pcap / pcapng reader, on captures written by scapy in every supported link type."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1Q, Ether
from scapy.utils import PcapNgWriter, PcapWriter

from collectors.pcap import PcapReader

PAYLOAD = b"\x00\x0a" + b"p" * 40


def _packets(l2):
    p1 = l2(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1111, dport=4739) / PAYLOAD)
    p2 = l2(IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=2222, dport=6343) / b"v6")
    p1.time, p2.time = 1_700_000_000.123456, 1_700_000_001.5
    return [p1, p2]


LINKS = {
    "ethernet": (lambda p: Ether() / p, None),
    "ethernet_vlan": (lambda p: Ether() / Dot1Q(vlan=5) / p, None),
    "sll": (lambda p: CookedLinux(proto=0x0800 if p.version == 4 else 0x86DD) / p, 113),
    "sll2": (lambda p: CookedLinuxV2(proto=0x0800 if p.version == 4 else 0x86DD) / p, 276),
    "raw": (lambda p: p, 101),
}


@pytest.mark.slow
@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("l2,linktype", LINKS.values(), ids=LINKS.keys())
def test_pcap_link_types(tmp_path, l2, linktype, nano):
    path = tmp_path / "c.pcap"
    with PcapWriter(str(path), linktype=linktype, nano=nano) as w:
        for p in _packets(l2):
            w.write(p)
    got = list(PcapReader(path))
    assert [(d.src_ip, d.src_port, d.dst_ip, d.dst_port) for d in got] == [
        ("10.0.0.1", 1111, "10.0.0.2", 4739),
        ("fd00::1", 2222, "fd00::2", 6343),
    ]
    assert got[0].payload == PAYLOAD and got[1].payload == b"v6"
    assert got[0].timestamp_ns // 1000 == 1_700_000_000_123_456
    assert got[1].timestamp_ns == 1_700_000_001_500_000_000


def test_pcapng(tmp_path):
    path = tmp_path / "c.pcapng"
    w = PcapNgWriter(str(path))
    for p in _packets(lambda p: Ether() / p):
        w.write(p)
    w.close()
    got = list(PcapReader(path))
    assert [d.dst_port for d in got] == [4739, 6343]
    assert got[0].timestamp_ns // 1000 == 1_700_000_000_123_456


def test_fragments_and_non_udp_are_skipped_and_counted(tmp_path):
    path = tmp_path / "c.pcap"
    big = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / (b"x" * 3000)
    frames = [Ether() / f for f in fragment(big, fragsize=1400)]
    frames += [Ether() / IP() / TCP(), Ether() / IP() / UDP(sport=5, dport=6) / b"ok"]
    with PcapWriter(str(path)) as w:
        for f in frames:
            w.write(f)
    reader = PcapReader(path)
    assert [d.payload for d in reader] == [b"ok"]
    assert reader.skipped == {"ip_fragment": 3, "not_udp": 1}


def test_not_a_capture(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"hello world, not a pcap at all")
    reader = PcapReader(path)
    assert list(reader) == [] and reader.skipped["not_a_capture"] == 1


def test_truncated_capture_file(tmp_path):
    path = tmp_path / "c.pcap"
    with PcapWriter(str(path)) as w:
        for p in _packets(lambda p: Ether() / p):
            w.write(p)
    path.write_bytes(path.read_bytes()[:-10])
    reader = PcapReader(path)
    assert len(list(reader)) == 1 and reader.skipped["truncated_file"] == 1
