"""NetFlow v9 and v5 decoding, from datagrams built after the RFC / Cisco formats."""

from __future__ import annotations

import struct

import pytest

from collectors.decoder import Decoder
from netobs.batch import ip_str
from tests.collectors import _builders as b
from tests.collectors import _nf_builders as nf

EXP = "192.0.2.50"
T = 1_700_000_100_000
V9_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (2, 4), (1, 4), (22, 4), (21, 4), (10, 2)]
V9_VALUES = {
    8: "10.0.0.1",
    12: "10.0.0.2",
    7: 40000,
    11: 443,
    4: 6,
    6: 0x12,
    2: 3,
    1: 180,
    22: 4000,
    21: 9000,
}


def rows(flows) -> list[dict]:
    cols = {k: v.tolist() for k, v in flows.columns.items()}
    return [{k: v[i] for k, v in cols.items()} for i in range(len(flows))]


def v9_with_sampling(seq=0, rate=64) -> bytes:
    return nf.v9_packet(
        [
            nf.v9_template_flowset({260: V9_FIELDS}),
            nf.v9_options_flowset(300, [(2, 4)], [(34, 4), (35, 1)]),
            nf.v9_data_flowset(300, [struct.pack(">IIB", 0, rate, 1)]),
            nf.v9_data_flowset(260, [b.record(V9_FIELDS, V9_VALUES)] * 2),
        ],
        seq=seq,
        source_id=7,
    )


def test_v9_template_options_sampling_and_uptime_times():
    d = Decoder()
    out = d.decode(v9_with_sampling(), EXP, T)
    assert len(out.flows) == 2 and not out.errors
    r = rows(out.flows)[0]
    assert r["type"] == "netflow9" and r["observation_domain"] == 7
    assert (ip_str(r["src_addr"]), ip_str(r["dst_addr"]), r["src_port"], r["dst_port"], r["proto"]) == (
        "10.0.0.1",
        "10.0.0.2",
        40000,
        443,
        6,
    )
    assert (r["packets"], r["bytes"], r["tcp_flags"], r["in_if"], r["sampling_rate"]) == (3, 180, 0x12, 0, 64)
    boot = 1_700_000_000_000 - 10_000  # unix_secs - sysUptime
    assert (r["flow_start"], r["flow_end"]) == (boot + 4000, boot + 9000)
    assert r["etype"] == 0x0800 and r["direction"] == "unknown"
    assert d.stats[EXP].options_records == 1 and d.stats[EXP].templates == 2


#: What routers put in v9 templates: NEXT_HOP (15), BGP_NEXTHOP (18), SRC_AS / DST_AS (16 / 17,
#: 2 bytes from 16-bit AS exporters, 4 with RFC 6793), SRC_MASK / DST_MASK (9 / 13), and their IPv6 forms.
V9_ROUTE4 = [(8, 4), (12, 4), (15, 4), (18, 4), (16, 2), (17, 2), (9, 1), (13, 1), (2, 4)]
V9_ROUTE6 = [(27, 16), (28, 16), (62, 16), (63, 16), (16, 4), (17, 4), (29, 1), (30, 1), (2, 4)]


def test_v9_next_hop_as_and_prefix_lengths_both_families():
    recs4 = [
        b.record(V9_ROUTE4, {15: "10.0.0.254", 18: "192.0.2.1", 16: 64512, 17: 3356, 9: 24, 13: 16}),
        b.record(V9_ROUTE4, {15: "0.0.0.0", 18: "192.0.2.1", 16: 65535, 17: 0, 9: 32, 13: 8}),
    ]
    recs6 = [
        b.record(V9_ROUTE6, {62: "fe80::1", 63: "2001:db8::1", 16: 4_200_000_000, 17: 65551, 29: 48, 30: 64}),
        b.record(V9_ROUTE6, {63: "2001:db8::1", 29: 200, 30: 128}),
    ]
    packet = nf.v9_packet(
        [
            nf.v9_template_flowset({261: V9_ROUTE4, 262: V9_ROUTE6}),
            nf.v9_data_flowset(261, recs4),
            nf.v9_data_flowset(262, recs6),
        ]
    )
    out = Decoder().decode(packet, EXP, T)
    assert not out.errors
    got = [
        (ip_str(r["next_hop"]), r["src_as"], r["dst_as"], r["src_mask"], r["dst_mask"])
        for r in rows(out.flows)
    ]
    assert got == [
        ("10.0.0.254", 64512, 3356, 24, 16),
        ("192.0.2.1", 65535, 0, 32, 8),  # NEXT_HOP 0.0.0.0: the BGP next hop
        ("fe80::1", 4_200_000_000, 65551, 48, 64),
        ("2001:db8::1", 0, 0, 0, 128),  # a prefix length of 200 is not one: unknown
    ]


def test_v9_templates_are_per_source_id_and_exporter():
    d = Decoder()
    d.decode(v9_with_sampling(), EXP, T)
    data = nf.v9_data_flowset(260, [b.record(V9_FIELDS, V9_VALUES)])
    assert len(d.decode(nf.v9_packet([data], source_id=7, seq=1), EXP, T).flows) == 1
    assert len(d.decode(nf.v9_packet([data], source_id=8), EXP, T).flows) == 0
    assert len(d.decode(nf.v9_packet([data], source_id=7), "192.0.2.51", T).flows) == 0
    assert d.stats[EXP].unknown_templates == 1


def test_v9_sequence_counts_packets_and_reordering_is_not_loss():
    d = Decoder()
    for seq in (0, 1, 4, 3, 2, 5):
        d.decode(v9_with_sampling(seq=seq), EXP, T)
    loss = d.stats[EXP].loss()["netflow9/datagrams"]
    assert (loss["missing"], loss["late"], loss["lost"]) == (2, 2, 0)
    d.decode(v9_with_sampling(seq=9), EXP, T)
    out = d.decode(v9_with_sampling(seq=10), EXP, T)
    assert d.stats[EXP].loss()["netflow9/datagrams"]["lost"] == 3
    assert d.stats[EXP].sequence_gaps == 2 and out.sequences == {}


def test_v9_malformed_is_counted():
    d = Decoder()
    bad = nf.v9_packet([struct.pack(">HHHH", 0, 8, 260, 40)])  # 40 fields announced, none there
    d.decode(bad, EXP, T)
    d.decode(nf.v9_packet([nf.v9_template_flowset({100: [(8, 4)]})]), EXP, T)
    d.decode(nf.v9_packet([struct.pack(">HH", 5, 8) + bytes(4)]), EXP, T)
    assert d.stats[EXP].errors == {
        "netflow9:template_truncated": 1,
        "netflow9:template_id_reserved": 1,
        "netflow9:reserved_set_id": 1,
    }


def test_v5_records_times_sampling_and_sequence():
    recs = [
        nf.v5_record(
            "10.1.0.1", "10.1.0.2", 1000, 80, packets=5, octets=500, first=1000, last=4000, flags=0x1B
        ),
        nf.v5_record("10.1.0.3", "10.1.0.4", 0, 0x0303, proto=1, packets=1, octets=84, first=2000, last=2000),
    ]
    d = Decoder()
    out = d.decode(
        nf.v5_packet(recs, seq=100, sampling=(1 << 14) | 100, engine=(1, 2), nsecs=5_000_000), EXP, T
    )
    got = rows(out.flows)
    assert [
        (r["type"], r["packets"], r["bytes"], r["sampling_rate"], r["observation_domain"]) for r in got
    ] == [
        ("netflow5", 5, 500, 100, 0x0102),
        ("netflow5", 1, 84, 100, 0x0102),
    ]
    boot = 1_700_000_000_005 - 10_000
    assert (got[0]["flow_start"], got[0]["flow_end"], got[0]["tcp_flags"]) == (boot + 1000, boot + 4000, 0x1B)
    assert (ip_str(got[1]["dst_addr"]), got[1]["dst_port"], got[1]["in_if"], got[1]["out_if"]) == (
        "10.1.0.4",
        0x0303,
        1,
        2,
    )
    d.decode(nf.v5_packet(recs, seq=102, engine=(1, 2)), EXP, T)  # expected 102: no loss
    d.decode(nf.v5_packet(recs, seq=110, engine=(1, 2)), EXP, T)  # expected 104: 6 flows lost
    assert d.stats[EXP].loss()["netflow5/records"]["lost"] == 6


@pytest.mark.parametrize("cut", [23, 30, 71])
def test_v5_truncated(cut):
    d = Decoder()
    pkt = nf.v5_packet([nf.v5_record("10.1.0.1", "10.1.0.2", 1, 2)] * 2)[:cut]
    out = d.decode(pkt, EXP, T, protocol="netflow5")
    assert len(out.flows) == (1 if cut >= 72 else 0)
    assert not [r for r in d.stats[EXP].errors if r.startswith("internal")]
