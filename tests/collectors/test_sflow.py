"""sFlow v5: crafted datagrams → flow and counter columns."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from collectors.decode import iter_records
from collectors.decoder import Decoder
from collectors.sflow import IF_DISCARDED, IF_MULTIPLE
from netobs.batch import ip_str
from tests.collectors import _builders as b

DATA = Path(__file__).parent.parent / "testdata"

T = 1_764_480_000_123


def decode(*samples, **kw):
    d = Decoder()
    out = d.decode(b.sflow_datagram(list(samples), **kw), "198.51.100.7", T)
    return out, d.stats["198.51.100.7"]


def row(batch, i=0):
    return {name: col[i] for name, col in batch.columns.items()}


FRAMES = {
    "tcp4": (b.eth(b.tcp4()), dict(proto=6, src_port=40000, dst_port=443, tcp_flags=2, etype=0x0800)),
    "udp4": (b.eth(b.udp4()), dict(proto=17, src_port=5353, dst_port=53)),
    "icmp4": (b.eth(b.icmp4(type_=0)), dict(proto=1, dst_port=0)),
    "tcp6": (b.eth(b.tcp6()), dict(proto=6, dst_port=8080, etype=0x86DD)),
    "icmp6": (b.eth(b.icmp6()), dict(proto=58, dst_port=128 * 256)),
    "vlan": (b.eth(b.tcp4(), vlans=(77,)), dict(vlan=77, dst_port=443)),
    "geneve": (
        b.eth(b.geneve(b.eth(b.udp4()), vni=12, options=b.ovn_geneve_option())),
        dict(tunnel_type="geneve", tunnel_id=12, proto=17, dst_port=53),
    ),
    "vxlan": (b.eth(b.vxlan(b.eth(b.tcp4()), vni=99)), dict(tunnel_type="vxlan", tunnel_id=99, dst_port=443)),
}


@pytest.mark.parametrize("frame,expected", FRAMES.values(), ids=FRAMES.keys())
def test_flow_sample_with_raw_header(frame, expected):
    out, stats = decode(b.flow_sample([b.raw_header_record(frame, frame_length=1514)], rate=512))
    r = row(out.flows)
    assert {k: r[k] for k in expected} == expected
    assert (r["packets"], r["bytes"], r["sampling_rate"]) == (1, 1514, 512)
    assert r["time_received"] == r["flow_start"] == r["flow_end"] == T
    assert (r["type"], ip_str(r["exporter"].tobytes())) == ("sflow", "192.0.2.1")
    assert (stats.flow_records, stats.error_count) == (1, 0)


def test_common_columns_and_several_samples():
    samples = [
        b.flow_sample([b.raw_header_record(b.eth(b.udp4(sport=p)))], inp=3, out=4, source=(0, 3))
        for p in range(1, 10)
    ]
    out, stats = decode(*samples, sub_agent=7)
    cols = out.flows.columns
    assert len(out.flows) == stats.flow_records == 9
    assert cols["src_port"].tolist() == list(range(1, 10))
    assert set(cols["observation_domain"].tolist()) == {7}
    assert set(cols["direction"].tolist()) == {"ingress"}
    assert (cols["in_if"][0], cols["out_if"][0]) == (3, 4)


@pytest.mark.parametrize("source,direction", [((0, 3), "ingress"), ((0, 4), "egress"), ((0, 9), "unknown")])
def test_direction_from_data_source(source, direction):
    out, _ = decode(b.flow_sample([b.raw_header_record(b.eth(b.udp4()))], source=source, inp=3, out=4))
    assert out.flows.columns["direction"][0] == direction


@pytest.mark.parametrize("out_if", [0x3FFFFFFF, IF_DISCARDED | 256, IF_MULTIPLE | 3, IF_MULTIPLE])
def test_compact_interface_formats_kept(out_if):
    out, _ = decode(b.flow_sample([b.raw_header_record(b.eth(b.udp4()))], out=out_if))
    assert out.flows.columns["out_if"][0] == out_if


def test_expanded_flow_sample_folds_interface_format():
    rec = b.raw_header_record(b.eth(b.tcp6()))
    out, _ = decode(b.expanded_flow_sample([rec], rate=4096, source=(0, 70000), inp=(0, 70000), out=(2, 5)))
    r = row(out.flows)
    assert (r["sampling_rate"], r["in_if"], r["out_if"], r["direction"]) == (
        4096,
        70000,
        IF_MULTIPLE | 5,
        "ingress",
    )
    assert r["dst_port"] == 8080


def test_sampled_ipv4_and_ipv6_records_as_fallback():
    v4 = b.flow_sample(
        [
            b.sampled_ipv4_record("10.1.1.1", "10.2.2.2", 6, 1234, 80, flags=0x18, tos=4, length=60),
            b.switch_record(src_vlan=55),
        ]
    )
    v6 = b.flow_sample([b.sampled_ipv6_record("fd00::a", "fd00::b", 17, 5000, 53, length=80)])
    out, _ = decode(v4, v6)
    r4, r6 = row(out.flows, 0), row(out.flows, 1)
    assert (ip_str(r4["src_addr"].tobytes()), r4["dst_port"], r4["tcp_flags"], r4["tos"], r4["vlan"]) == (
        "10.1.1.1",
        80,
        0x18,
        4,
        55,
    )
    assert (r4["bytes"], r4["etype"]) == (60, 0x0800)
    assert (ip_str(r6["dst_addr"].tobytes()), r6["proto"], r6["bytes"], r6["etype"]) == (
        "fd00::b",
        17,
        80,
        0x86DD,
    )


def test_raw_header_wins_over_sampled_ipv4():
    recs = [b.sampled_ipv4_record("1.1.1.1", "2.2.2.2", 17, 1, 2), b.raw_header_record(b.eth(b.tcp4()))]
    out, _ = decode(b.flow_sample(recs))
    assert out.flows.columns["dst_port"][0] == 443


def test_truncated_header_gives_partial_flow():
    frame = b.eth(b.geneve(b.eth(b.tcp4())))
    out, stats = decode(b.flow_sample([b.raw_header_record(frame, header_len=60)]))
    r = row(out.flows)
    assert (r["tunnel_type"], r["proto"], r["packets"]) == ("geneve", 0, 1)
    assert stats.error_count == 0


def test_ipv6_agent_and_counter_samples():
    counters = b.counter_sample([b.generic_if_counters(if_index=9), b._tlv(2, b"\x00" * 52)], source=(0, 9))
    expanded = b.counter_sample([b.generic_if_counters(if_index=10)], source=(0, 10), expanded=True)
    out, stats = decode(counters, expanded, agent="2001:db8::1")
    c = out.counters.columns
    assert len(out.flows) == 0 and len(out.counters) == 2
    assert c["if_index"].tolist() == [9, 10]
    assert c["in_packets"][0] == 13 and c["out_packets"][0] == 21
    assert (c["in_errors"][0], c["in_discards"][0], c["out_errors"][0], c["out_discards"][0]) == (4, 3, 6, 5)
    assert (c["if_speed"][0], c["in_octets"][0], c["out_octets"][0]) == (10**10, 1000, 2000)
    assert ip_str(c["exporter"][0].tobytes()) == "2001:db8::1"
    assert (stats.counter_samples, stats.counter_records) == (2, 2)


def test_sequence_gaps_counted_per_agent():
    d = Decoder()
    for seq in (1, 2, 4, 5):
        d.decode(b.sflow_datagram([], seq=seq), "198.51.100.7", T)
    d.decode(b.sflow_datagram([], seq=1, sub_agent=1), "198.51.100.7", T)
    assert d.stats["198.51.100.7"].sequence_gaps == 1


MALFORMED = {
    "bad_version": (b"\x00\x00\x00\x04" + b"\x00" * 40, "unknown_protocol"),
    "bad_agent_type": (b"\x00\x00\x00\x05\x00\x00\x00\x07" + b"\x00" * 40, "unknown_protocol"),
    "sample_overflows": (b.sflow_datagram([b.flow_sample([])])[:-4], "sflow:truncated_sample"),
    "record_overflows": (
        b.sflow_datagram([b.flow_sample([struct.pack(">II", 1, 500) + b"\x00" * 16])]),
        "sflow:truncated_record",
    ),
    "short_flow_sample": (b.sflow_datagram([b._tlv(1, b"\x00" * 12)]), "sflow:short_sample"),
    "unknown_sample": (
        b.sflow_datagram([b._tlv(0x1234 << 12 | 1, b"\x00" * 8)]),
        "sflow:unknown_sample_format",
    ),
}


@pytest.mark.parametrize("payload,reason", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_counted_not_raised(payload, reason):
    d = Decoder()
    out = d.decode(payload, "198.51.100.7", T)
    assert d.stats["198.51.100.7"].errors[reason] >= 1, d.stats["198.51.100.7"].errors
    assert ("198.51.100.7", reason) in out.errors
    assert not any(r.startswith("internal") for r in d.stats["198.51.100.7"].errors)


def test_unknown_counters_read_as_zero():
    rec = b.generic_if_counters(
        in_bcast=0xFFFFFFFF, out_mcast=0xFFFFFFFF, in_errors=0xFFFFFFFF, in_octets=0xFFFFFFFFFFFFFFFF
    )
    out, _ = decode(b.counter_sample([rec]))
    c = out.counters.columns
    assert (c["in_packets"][0], c["out_packets"][0], c["in_errors"][0], c["in_octets"][0]) == (11, 21, 0, 0)


def test_direction_unknown_for_non_ifindex_source():
    out, _ = decode(b.flow_sample([b.raw_header_record(b.eth(b.udp4()))], source=(2, 3), inp=3, out=4))
    assert out.flows.columns["direction"][0] == "unknown"


def test_ethernet_and_ovs_port_counters():
    eth = b._tlv(2, struct.pack(">13I", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0xFFFFFFFF))
    of_port = b._tlv(1004, struct.pack(">QI", 0xABCDEF, 7))
    name = b._tlv(1005, struct.pack(">I", 6) + b"ovs-p7\x00\x00")
    out, _ = decode(b.counter_sample([b.generic_if_counters(if_index=7), eth, of_port, name], source=(0, 7)))
    row = next(out.counters.rows())
    assert (row["fcs_errors"], row["frame_too_longs"], row["symbol_errors"]) == (2, 11, 0)
    assert (row["of_dpid"], row["of_port"], row["if_name"]) == (0xABCDEF, 7, "ovs-p7")


def test_ovs_counter_samples_name_the_pods_ports():
    traffic = json.loads((DATA / "ovs-traffic.json").read_text())
    want = {(p["host_ifindex"], p["ofport"], p["host_if"]) for p in traffic["pods"]}
    got = {
        (r["if_index"], r["of_port"], r["if_name"])
        for r in iter_records(DATA / "ovs-sflow.pcap")
        if r["kind"] == "counter"
    }
    assert got == want
