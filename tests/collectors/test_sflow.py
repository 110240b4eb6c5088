"""sFlow v5: crafted datagrams → flow and counter columns."""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path

import pytest
from scapy.layers.l2 import Ether

from collectors.decoder import Decoder
from collectors.jsonl import iter_records
from collectors.sflow import IF_DISCARDED, IF_MULTIPLE, SflowDecoder
from collectors.sflow import native_module as sflow_native_module
from netobs.batch import ip_str
from tests.collectors import _builders as b
from tests.services.ovs import in_netns

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


@pytest.fixture(params=["native", "python"])
def both_paths(request, monkeypatch):
    """Run the test on the C decoder (when built) and on the Python reference."""
    if request.param == "python":
        monkeypatch.setenv("NETOBS_NATIVE", "0")
    elif not Decoder().sflow.native:
        pytest.skip("collectors._native_sflow not built (make setup)")
    assert Decoder().sflow.native == (request.param == "native")
    return request.param


def test_ovn_logical_ports_from_a_geneve_header(both_paths):
    frame = b.eth(b.geneve(b.eth(b.tcp4()), vni=0x000102, options=b.ovn_ports_option(0x12, 0x8003)))
    out, stats = decode(b.flow_sample([b.raw_header_record(frame)]))
    r = row(out.flows)
    assert (r["tunnel_type"], r["tunnel_id"]) == ("geneve", 0x102)  # the OVN datapath key
    assert (r["tunnel_ovn_ingress_port"], r["tunnel_ovn_egress_port"]) == (0x12, 0x8003)
    assert stats.error_count == 0


def _route(out, i=0):
    r = row(out.flows, i)
    return (ip_str(r["next_hop"].tobytes()), r["src_as"], r["dst_as"], r["src_mask"], r["dst_mask"])


ROUTES = {  # records besides the raw header → (next_hop, src_as, dst_as, src_mask, dst_mask)
    "none": ([], ("::", 0, 0, 0, 0)),
    "router_v4": ([b.router_record("192.0.2.254", 24, 16)], ("192.0.2.254", 0, 0, 24, 16)),
    "router_v6": ([b.router_record("2001:db8::1", 48, 64)], ("2001:db8::1", 0, 0, 48, 64)),
    "router_unknown_address": ([b.router_record(None, 8, 9)], ("::", 0, 0, 8, 9)),
    "gateway": ([b.gateway_record()], ("192.0.2.253", 64501, 64512, 0, 0)),
    "router_next_hop_wins": (
        [b.gateway_record("10.9.9.9"), b.router_record("10.1.1.1", 32, 30)],
        ("10.1.1.1", 64501, 64512, 32, 30),
    ),
    # goflow2's fallbacks: no source AS or an empty path mean the router's own AS.
    "gateway_local_source": ([b.gateway_record(as_=65000, src_as=0)], ("192.0.2.253", 65000, 64512, 0, 0)),
    "gateway_empty_path": ([b.gateway_record(as_=65000, path=())], ("192.0.2.253", 64501, 65000, 0, 0)),
    # The origin AS: the last AS of the last non-empty segment (an AS_SET, here).
    "gateway_path_segments": (
        [b.gateway_record(path=((2, (1, 2)), (1, (70000, 70001)), (2, ())), communities=(7, 8))],
        ("192.0.2.253", 64501, 70001, 0, 0),
    ),
    "gateway_v6_next_hop": ([b.gateway_record("2001:db8::fe")], ("2001:db8::fe", 64501, 64512, 0, 0)),
}


@pytest.mark.parametrize("records,want", ROUTES.values(), ids=ROUTES.keys())
def test_extended_router_and_gateway_records(records, want, both_paths):
    out, stats = decode(b.flow_sample([b.raw_header_record(b.eth(b.tcp4())), *records]))
    assert _route(out) == want
    assert stats.error_count == 0 and row(out.flows)["dst_port"] == 443


BAD_ROUTES = {  # malformed extended records: counted, left out, the sample kept
    "router_bad_address_type": (b._tlv(1002, struct.pack(">I4sII", 3, b"\x01" * 4, 24, 24)), "router"),
    "router_short": (b._tlv(1002, struct.pack(">I4sI", 1, b"\x01" * 4, 24)), "router"),
    "router_v6_cut": (b._tlv(1002, struct.pack(">I8s", 2, b"\x20" * 8)), "router"),
    "router_mask_too_long": (b.router_record("10.0.0.1", 129, 8), "router"),
    "gateway_short": (b._tlv(1003, struct.pack(">I4sIII", 1, b"\x01" * 4, 1, 2, 3)), "gateway"),
    "gateway_path_overruns": (
        b._tlv(1003, struct.pack(">I4sIIIIII", 1, b"\x01" * 4, 1, 2, 3, 1, 2, 500) + bytes(8)),
        "gateway",
    ),
    "gateway_huge_segment_count": (
        b._tlv(1003, struct.pack(">I4sIIIIII", 1, b"\x01" * 4, 1, 2, 3, 0xFFFFFFFF, 2, 1) + bytes(4)),
        "gateway",
    ),
    "gateway_empty": (b._tlv(1003, b""), "gateway"),
}


@pytest.mark.parametrize("record,kind", BAD_ROUTES.values(), ids=BAD_ROUTES.keys())
def test_malformed_router_and_gateway_records_are_counted(record, kind, both_paths):
    good = b.router_record("10.1.1.1", 8, 8) if kind == "gateway" else b.gateway_record()
    out, stats = decode(b.flow_sample([b.raw_header_record(b.eth(b.tcp4())), good, record]))
    assert stats.errors == {f"sflow:bad_{kind}_record": 1}
    assert len(out.flows) == 1 and row(out.flows)["dst_port"] == 443  # the sample is kept
    hop, src_as, dst_as, src_mask, _ = _route(out)
    if kind == "gateway":  # the router record still counts; the broken gateway adds nothing
        assert (hop, src_as, dst_as, src_mask) == ("10.1.1.1", 0, 0, 8)
    else:
        assert (hop, src_as, dst_as, src_mask) == ("192.0.2.253", 64501, 64512, 0)


def test_older_consumers_refuse_batches_with_the_new_columns(monkeypatch):
    """Schema 2 added the OVN port and route columns: a consumer that knows schema 1 would
    silently drop them, so it must refuse the message instead (and dead-letter it)."""
    from netobs import schema, wire

    out, _ = decode(b.flow_sample([b.raw_header_record(b.eth(b.tcp4())), b.router_record()]))
    data = wire.encode(out.flows.to_arrow())
    assert schema.SCHEMA_VERSION >= 2 and wire.decode(data).column("src_mask").to_pylist() == [24]
    monkeypatch.setitem(schema.KINDS, schema.FLOWS, (schema.FLOW_COLUMNS, 1))
    newer = f"flows schema version {schema.SCHEMA_VERSION} is newer than this consumer's 1"
    with pytest.raises(wire.WireError, match=newer):
        wire.decode(data)


@pytest.mark.integration
def test_real_ovs_samples_of_geneve_carry_the_ovn_ports(ovs_lab):
    """Open vSwitch's own sFlow agent (sampling 1, 128-byte headers) exports Geneve frames with
    OVN's option that pod1 puts on the wire (the committed OVS captures carry no tunnel traffic):
    both decoders read the port keys and the datapath key out of the real export."""
    pod1, pod2 = ovs_lab.pod("pod1"), ovs_lab.pod("pod2")
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.2)
    inner = b.eth(b.tcp4("10.16.0.5", "10.16.0.9", sport=41000, dport=8443), src=b.MAC_A, dst=b.MAC_B)
    frame = bytes(
        Ether(src=pod1.mac, dst=pod2.mac)
        / b.geneve(inner, vni=0x000123, options=b.ovn_ports_option(0x0011, 0x8022), outer=(pod1.ip, pod2.ip))
    )

    def send() -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
            raw.bind(("eth0", 0))
            for _ in range(5):
                raw.send(frame)

    try:
        ovs_lab.enable_sflow(sink.getsockname()[1], sampling=1, header=128)
        in_netns(pod1.netns, send)
        ovs_lab.flush_exports()
        datagrams, deadline = [], time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                datagrams.append(sink.recv(65535))
            except TimeoutError:
                if datagrams:
                    break
    finally:
        sink.close()
    rows = {}
    for native in (False, True) if sflow_native_module(force=True) else (False,):
        d = Decoder()
        d.sflow = SflowDecoder(native=native)
        out = d.decode_many((p, "127.0.0.1", T) for p in datagrams)
        assert not out.errors, out.errors
        f = out.flows.columns
        rows[native] = [
            (f["tunnel_type"][i], f["tunnel_id"][i], ip_str(f["src_addr"][i].tobytes()), f["dst_port"][i])
            + (
                ip_str(f["tunnel_src"][i].tobytes()),
                f["tunnel_ovn_ingress_port"][i],
                f["tunnel_ovn_egress_port"][i],
            )
            for i in range(len(out.flows))
            if f["tunnel_type"][i]
        ]
    want = ("geneve", 0x123, "10.16.0.5", 8443, pod1.ip, 0x0011, 0x8022)
    assert rows[False] == [want] * 5  # sampling 1: each frame once, at pod1's port
    assert rows.get(True, rows[False]) == rows[False]
