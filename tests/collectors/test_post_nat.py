"""IPFIX / NetFlow v9 post-NAT elements (IE 225-228, 281/282) on both decoder paths.

The datagrams are built by scapy's NetFlow layer (``scapy.layers.netflow``): the element ids come
from scapy's copy of the IANA registry, selected by its names (``postNATSourceIPv4Address``...), not
from numbers written here. tshark dissects the same bytes as a second reader of the registry.
"""

from __future__ import annotations

import ipaddress
import random
import struct

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.netflow import (
    GetNetflowRecordV9,
    NetflowDataflowsetV9,
    NetflowFlowsetV9,
    NetflowHeader,
    NetflowHeaderV9,
    NetflowHeaderV10,
    NetflowTemplateFieldV9,
    NetflowTemplateV9,
)
from scapy.utils import wrpcap

from collectors.decoder import Decoder
from netobs.batch import ip_str
from tests.collectors import _tshark
from tests.collectors.test_native_ipfix import NATIVE, differential
from tests.services._require import unavailable

EXP = "192.0.2.9"
T = 1_700_000_000_000
#: (scapy's field name, length) per family; the post-NAT ones are the elements under test.
FIELDS = {
    4: [("IPV4_SRC_ADDR", 4), ("IPV4_DST_ADDR", 4), ("postNATSourceIPv4Address", 4),
        ("postNATDestinationIPv4Address", 4)],
    6: [("IPV6_SRC_ADDR", 16), ("IPV6_DST_ADDR", 16), ("postNATSourceIPv6Address", 16),
        ("postNATDestinationIPv6Address", 16)],
}  # fmt: skip
COMMON = [
    ("L4_SRC_PORT", 2), ("L4_DST_PORT", 2), ("PROTOCOL", 1), ("IN_BYTES", 4), ("IN_PKTS", 4),
    ("postNAPTSourceTransportPort", 2), ("postNAPTDestinationTransportPort", 2),
]  # fmt: skip


def _addr(rnd: random.Random, family: int, unset: bool) -> str:
    if unset:
        return "0.0.0.0" if family == 4 else "::"
    if family == 4:
        return str(ipaddress.IPv4Address(rnd.randrange(1 << 24, 0xE0000000)))
    return str(ipaddress.IPv6Address((0x2001_0DB8 << 96) | rnd.getrandbits(64)))


def flows(rnd: random.Random, family: int, n: int) -> list[dict]:
    """Records of a NAT middlebox: outbound SNAT (post-NAT source), inbound DNAT (post-NAT
    destination), both, or none (0.0.0.0 / :: : not translated)."""
    out = []
    for _ in range(n):
        kind = rnd.choice(("snat", "dnat", "both", "none"))
        out.append(
            {
                "src": _addr(rnd, family, False),
                "dst": _addr(rnd, family, False),
                "post_src": _addr(rnd, family, kind not in ("snat", "both")),
                "post_dst": _addr(rnd, family, kind not in ("dnat", "both")),
                "sport": rnd.randrange(1, 65536),
                "dport": rnd.randrange(1, 65536),
                "post_sport": rnd.randrange(1, 65536) if kind in ("snat", "both") else 0,
                "post_dport": rnd.randrange(1, 65536) if kind in ("dnat", "both") else 0,
                "proto": rnd.choice((6, 17)),
                "bytes": rnd.randrange(40, 1 << 30),
                "packets": rnd.randrange(1, 1 << 20),
            }
        )
    return out


def datagram(version: int, family: int, records: list[dict], template_id: int = 300) -> bytes:
    """A NetFlow v9 (9) or IPFIX (10) message with the template and its records, built by scapy."""
    fields = FIELDS[family] + COMMON
    tmpl = [NetflowTemplateFieldV9(fieldType=name, fieldLength=length) for name, length in fields]
    flowset = NetflowFlowsetV9(
        flowSetID=0 if version == 9 else 2,
        templates=[NetflowTemplateV9(templateID=template_id, template_fields=tmpl, fieldCount=len(tmpl))],
    )
    record = GetNetflowRecordV9(flowset)
    src, dst, psrc, pdst = (name for name, _ in FIELDS[family])
    data = NetflowDataflowsetV9(
        templateID=template_id,
        records=[
            record(
                **{src: r["src"], dst: r["dst"], psrc: r["post_src"], pdst: r["post_dst"]},
                L4_SRC_PORT=r["sport"],
                L4_DST_PORT=r["dport"],
                PROTOCOL=r["proto"],
                IN_BYTES=r["bytes"],
                IN_PKTS=r["packets"],
                # scapy has no integer field for these two: raw big-endian bytes
                postNAPTSourceTransportPort=struct.pack(">H", r["post_sport"]),
                postNAPTDestinationTransportPort=struct.pack(">H", r["post_dport"]),
            )
            for r in records
        ],
    )
    if version == 9:
        msg = NetflowHeader(version=9) / NetflowHeaderV9(unixSecs=T // 1000, sysUptime=1000) / flowset / data
        return bytes(msg)
    msg = NetflowHeader(version=10) / NetflowHeaderV10(ExportTime=T // 1000) / flowset / data
    # scapy 2.8's IPFIX length leaves out the 2-byte version field (RFC 7011 3.1: the whole message)
    msg[NetflowHeaderV10].length = len(bytes(msg))
    return bytes(msg)


def _expected(r: dict) -> tuple:
    def norm(a: str) -> str:
        return "::" if a in ("0.0.0.0", "::") else a

    return (r["src"], r["dst"], norm(r["post_src"]), norm(r["post_dst"]), r["post_sport"], r["post_dport"])


def _decoded(batch) -> list[tuple]:
    c = batch.columns
    return [
        (
            ip_str(c["src_addr"][i].tobytes()),
            ip_str(c["dst_addr"][i].tobytes()),
            ip_str(c["post_nat_src_addr"][i].tobytes()),
            ip_str(c["post_nat_dst_addr"][i].tobytes()),
            int(c["post_nat_src_port"][i]),
            int(c["post_nat_dst_port"][i]),
        )
        for i in range(len(batch))
    ]


@pytest.fixture()
def rnd() -> random.Random:
    seed = random.SystemRandom().randrange(1 << 30)
    print("seed", seed)
    return random.Random(seed)


@pytest.mark.parametrize("native", [False, True], ids=["python", "native"])
@pytest.mark.parametrize("version", [9, 10], ids=["netflow9", "ipfix"])
@pytest.mark.parametrize("family", [4, 6])
def test_post_nat_elements_decoded(rnd, native, version, family):
    if native and NATIVE is None:
        unavailable("collectors._native_ipfix is not built")
    records = flows(rnd, family, rnd.randrange(1, 40))
    d = Decoder()
    d.ipfix.native = d.netflow9.native = NATIVE if native else None
    out = d.decode(datagram(version, family, records), EXP, T)
    assert not out.errors
    assert sorted(_decoded(out.flows)) == sorted(_expected(r) for r in records)


def test_post_nat_python_and_native_agree(rnd):
    if NATIVE is None:
        unavailable("collectors._native_ipfix is not built")
    msgs = [
        (datagram(v, f, flows(rnd, f, rnd.randrange(1, 30)), 300 + f), EXP, T + i, None)
        for i, (v, f) in enumerate(rnd.choices([(9, 4), (9, 6), (10, 4), (10, 6)], k=6))
    ]
    assert differential(msgs, per_flush=rnd.choice((1, 2, 3))) > 0


def test_post_nat_biflow_reverse_half_swaps_the_translated_ends():
    """RFC 5103: the reverse half carries the ends exchanged, their post-NAT values with them."""
    from tests.collectors import _builders as b

    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (225, 4), (227, 2), (1, 4, 29305)]
    values = {8: "10.0.0.5", 12: "198.51.100.1", 7: 40000, 11: 443, 4: 6, 1: 100, 225: "203.0.113.7",
              227: 50000, (29305, 1): 900}  # fmt: skip
    msg = b.ipfix_message([b.template_set({300: fields}), b.data_set(300, [b.record(fields, values)])], seq=0)
    for native in (None, NATIVE):
        d = Decoder()
        d.ipfix.native = native
        rows = _decoded(d.decode(msg, EXP, T).flows)
        assert rows == [
            ("10.0.0.5", "198.51.100.1", "203.0.113.7", "::", 50000, 0),
            ("198.51.100.1", "10.0.0.5", "::", "203.0.113.7", 0, 50000),
        ], native


def test_tshark_reads_the_same_post_nat_elements(rnd, tmp_path):
    """tshark (Wireshark's cflow dissector) names the elements of these bytes post-NAT, with the
    values netobs decodes."""
    if not _tshark.available():
        unavailable("tshark is not installed (scripts/install-services.sh installs it)")
    records = flows(rnd, 4, 8)
    raw = datagram(10, 4, records)
    pcap = tmp_path / "postnat.pcap"
    wrpcap(str(pcap), [Ether() / IP(src=EXP, dst="192.0.2.1") / UDP(sport=4739, dport=4739) / raw])
    seen = []
    for _, flow in _tshark._walk(_tshark.dissect(str(pcap), 4739, "cflow"), "Flow "):

        def g(name, flow=flow):
            return _tshark._get(flow, name, default=None)

        seen.append(
            (
                g("cflow.srcaddr"),
                g("cflow.dstaddr"),
                g("cflow.post_natsource_ipv4_address"),
                g("cflow.post_natdestination_ipv4_address"),
                int(g("cflow.post_naptsource_transport_port")),
                int(g("cflow.post_naptdestination_transport_port")),
            )
        )
    d = Decoder()
    ours = _decoded(d.decode(raw, EXP, T).flows)
    assert len(seen) == len(records) == len(ours)
    for theirs, mine in zip(seen, ours, strict=True):
        unset = tuple("::" if a == "0.0.0.0" else a for a in theirs[:4])
        assert unset + theirs[4:] == mine
