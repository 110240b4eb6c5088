"""Issue 14 (part 2): what real devices send that the decoders got wrong, built from the standards.

Every case is decoded by the pure-Python path and the native one (collectors/_native), which
must agree (:func:`tests.collectors.test_native_ipfix.differential`,
:func:`tests.collectors.test_native_sflow.run_both`), and checked against the values the
standard gives.
"""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapWriter

from collectors.decoder import Decoder
from collectors.jsonl import iso_ms, iter_records
from collectors.stats import ExporterStats
from tests.collectors import _builders as b
from tests.collectors import _nf_builders as nf
from tests.collectors.test_native_ipfix import NATIVE, _decoders, differential
from tests.collectors.test_native_sflow import decoders as sflow_decoders
from tests.collectors.test_native_sflow import run_both

EXP = "198.51.100.7"
T = 1_790_000_000_000  # receive time of the first datagram (ms)
EXPORT_S = 1_789_999_990


def both_ipfix(payloads, session: bool = False, **kw):
    """Decode ``payloads`` (one flush) on the Python and the native IPFIX / v9 paths, after
    checking they agree message by message; returns the native result and decoder."""
    msgs = [(p, EXP, T + i, f"{EXP}:{4739 + (i % 2 if session else 0)}") for i, p in enumerate(payloads)]
    differential(msgs, per_flush=len(msgs), session=session)
    _, native = _decoders()
    for p, exp, t, sess in msgs:
        native.feed(p, exp, t, session=sess if session else None, **kw)
    return native.flush(), native


def col(out, name):
    return out.flows.columns[name].tolist()


a16 = b.addr16  # (address columns list as 16-byte bytes)


# --- 5. times no date can hold ---------------------------------------------------------------

UPTIME_FIELDS = [(8, 4), (12, 4), (2, 8), (1, 8), (22, 4), (21, 4)]


def _absurd_init_capture():
    """IPFIX: a domain whose systemInitTimeMilliseconds (IE 160) is 2^61 ms (some 73 million
    years), its flows timed in sysUpTime (IE 22/21); then a sane domain in the same capture."""
    bad = b.ipfix_message(
        [
            b.options_template_set(300, [(149, 4)], [(160, 8)]),
            b.data_set(300, [b.record([(149, 4), (160, 8)], {149: 1, 160: 1 << 61})]),
            b.template_set({256: UPTIME_FIELDS}),
            b.data_set(
                256, [b.record(UPTIME_FIELDS, {8: "10.0.0.1", 12: "10.0.0.2", 2: 3, 1: 300, 22: 5, 21: 9})]
            ),
        ],
        domain=1,
        export_time=EXPORT_S,
    )
    good_fields = [(8, 4), (12, 4), (2, 8), (1, 8), (152, 8), (153, 8)]
    good = b.ipfix_message(
        [
            b.template_set({257: good_fields}),
            b.data_set(
                257,
                [
                    b.record(good_fields, {8: "10.0.0.3", 2: 1, 152: T - 5000, 153: T - 1000}),
                    b.record(good_fields, {8: "10.0.0.4", 2: 1, 152: 1 << 62, 153: T - 1000}),  # start absurd
                ],
            ),
        ],
        domain=2,
        export_time=EXPORT_S,
    )
    return [bad, good]


def test_absurd_system_init_time_keeps_every_record():
    out, _ = both_ipfix(_absurd_init_capture())
    assert col(out, "src_addr") == [a16("10.0.0.1"), a16("10.0.0.3"), a16("10.0.0.4")]
    assert col(out, "packets") == [3, 1, 1]
    # out of range: the receive time of the datagram, and counted per record
    assert col(out, "flow_start") == [T, T - 5000, T + 1]
    assert col(out, "flow_end") == [T, T - 1000, T - 1000]
    assert out.errors[(EXP, "ipfix:time_out_of_range")] == 2


def test_netflow_v9_and_v5_times_out_of_range():
    fields = [(8, 4), (12, 4), (2, 4), (152, 8), (153, 8)]
    v9 = nf.v9_packet(
        [
            nf.v9_template_flowset({260: fields}),
            nf.v9_data_flowset(260, [b.record(fields, {8: "10.0.0.9", 2: 1, 152: 1 << 63, 153: T})]),
        ]
    )
    out, _ = both_ipfix([v9])
    assert col(out, "flow_start") == [T] and col(out, "flow_end") == [T]
    assert out.errors[(EXP, "netflow9:time_out_of_range")] == 1
    # v5: a sysUptime larger than the clock puts the boot before 1970
    v5 = nf.v5_packet(
        [nf.v5_record("10.0.0.1", "10.0.0.2", 1, 2, first=5, last=9)], uptime=4_000_000_000, secs=0
    )
    d = Decoder()
    out = d.decode(v5, EXP, T)
    assert col(out, "flow_start") == [T] and col(out, "flow_end") == [T]
    assert out.errors[(EXP, "netflow5:time_out_of_range")] == 1


def test_offline_decode_of_a_capture_with_absurd_times(tmp_path):
    path = tmp_path / "absurd.pcap"
    with PcapWriter(str(path)) as w:
        for i, payload in enumerate(_absurd_init_capture()):
            pkt = Ether() / IP(src=EXP, dst="127.0.0.1") / UDP(sport=4739, dport=4739) / payload
            pkt.time = T / 1000 + i
            w.write(pkt)
    recs = list(iter_records(path))
    assert len(recs) == 3 and recs[0]["biflow"] == 0 and recs[0]["biflow_direction"] == 0
    assert recs[0]["flow_start"] == iso_ms(T)
    assert all(r["flow_end"] for r in recs)


def test_iso_ms_outside_any_date_is_null():
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1 << 62) is None and iso_ms(-(1 << 62)) is None


# --- 6. sFlow VLAN "unknown" -------------------------------------------------------------------


@pytest.mark.parametrize("vlan, expected", [(0xFFFFFFFF, 0), (0x1005, 0), (4094, 4094), (0, 0)])
def test_sflow_switch_record_unknown_vlan(vlan, expected):
    dgram = b.sflow_datagram(
        [b.flow_sample([b.raw_header_record(b.eth(b.tcp4())), b.switch_record(vlan, 7)])]
    )
    flows, native = run_both([(dgram, EXP, T)])
    assert flows == 1
    py, nat = sflow_decoders()
    for d in (py, nat):
        assert col(d.decode(dgram, EXP, T), "vlan") == [expected]


# --- 7. data whose template came from another source port ------------------------------------

SIMPLE = [(8, 4), (12, 4), (2, 8), (1, 8)]


def test_template_from_another_source_port_is_counted_and_logged_once(caplog):
    template = b.ipfix_message([b.template_set({256: SIMPLE})])
    data = b.ipfix_message([b.data_set(256, [b.record(SIMPLE, {8: "10.0.0.1", 2: 1})])])
    # messages alternate between source ports 4739 and 4740 of the same exporter
    out, native = both_ipfix([template, data, template, data], session=True)
    assert len(out.flows) == 0  # RFC 7011 §8: templates are scoped to their transport session
    assert out.errors[(EXP, "ipfix:template_from_other_port")] == 2
    assert native.stats[EXP].unknown_templates == 2
    caplog.clear()
    with caplog.at_level("WARNING", logger="collectors.ipfix"):
        d = Decoder()
        for i, p in enumerate([template, data, data]):
            d.feed(p, EXP, T, session=f"{EXP}:{4739 + min(i, 1)}")
        d.feed(data, "192.0.2.99", T, session="192.0.2.99:1")  # never defined anywhere: not this
        d.flush()
    assert len([r for r in caplog.records if "source ports" in r.getMessage()]) == 1  # once per exporter
    assert d.stats[EXP].errors["ipfix:template_from_other_port"] == 2
    assert "ipfix:template_from_other_port" not in d.stats["192.0.2.99"].errors


def test_v9_template_from_another_source_port_is_counted():
    fields = [(8, 4), (12, 4), (2, 4)]
    template = nf.v9_packet([nf.v9_template_flowset({260: fields})])
    data = nf.v9_packet([nf.v9_data_flowset(260, [b.record(fields, {8: "10.0.0.1"})])])
    out, _ = both_ipfix([template, data], session=True)
    assert out.errors[(EXP, "netflow9:template_from_other_port")] == 1


# --- 4. Ethernet over MPLS with a control word -----------------------------------------------


def _mpls(label: int, bottom: bool, ttl: int = 64) -> bytes:
    """One label stack entry (RFC 3032 §2.1): label 20 bits, TC 3, S 1, TTL 8."""
    return struct.pack(">I", label << 12 | int(bottom) << 8 | ttl)


def eompls(customer: bytes, labels=(16001, 24005), outer_vlans=()) -> bytes:
    """A provider frame carrying an Ethernet pseudowire (RFC 4448): the label stack, the
    control word (RFC 4385 §3: first nibble 0, flags, length 0, sequence), the customer frame."""
    stack = b"".join(_mpls(x, i == len(labels) - 1) for i, x in enumerate(labels))
    head = b.eth(b"", vlans=outer_vlans, src="02:aa:00:00:00:01", dst="02:aa:00:00:00:02")
    head = head[:-2] + b"\x88\x47"  # scapy's empty payload left the type at 0x9000
    return head + stack + struct.pack(">I", 0x0000_0007) + customer


CUSTOMER = b.eth(b.udp4("172.16.1.1", "172.16.2.2", 5000, 53), vlans=(300,))


def test_sflow_raw_header_eompls_with_control_word():
    frame = eompls(CUSTOMER)
    dgram = b.sflow_datagram([b.flow_sample([b.raw_header_record(frame)])])
    flows, native = run_both([(dgram, EXP, T)])
    assert flows == 1
    py, nat = sflow_decoders()
    for d in (py, nat):
        out = d.decode(dgram, EXP, T)
        assert col(out, "src_addr") == [a16("172.16.1.1")] and col(out, "dst_addr") == [a16("172.16.2.2")]
        assert (col(out, "proto"), col(out, "src_port"), col(out, "dst_port")) == ([17], [5000], [53])
        assert col(out, "vlan") == [300] and col(out, "etype") == [0x0800]
        assert col(out, "src_mac") == [b.MAC_A_INT]  # the customer's frame, not the provider's


def test_eompls_cut_inside_the_customer_frame_and_without_control_word():
    for frame in (eompls(CUSTOMER)[: 14 + 8 + 4 + 10], eompls(CUSTOMER, labels=(24005,))[:-60]):
        dgram = b.sflow_datagram([b.flow_sample([b.raw_header_record(frame)])])
        assert run_both([(dgram, EXP, T)])[0] == 1
    # nested pseudowires are opened once: the inner one is left alone
    nested = eompls(b.eth(b"")[:-2] + b"\x88\x47" + _mpls(5, True) + bytes(4) + CUSTOMER)
    dgram = b.sflow_datagram([b.flow_sample([b.raw_header_record(nested, header_len=256)])])
    _, nat = sflow_decoders()
    out = nat.decode(dgram, EXP, T)
    assert col(out, "src_addr") == [bytes(16)] and col(out, "etype") == [0]
    assert run_both([(dgram, EXP, T)])[0] == 1


PSAMP_FRAME = [(301, 8), (323, 8), (312, 2), (315, b.VAR)]


def test_psamp_data_link_frame_section_eompls():
    frame = eompls(CUSTOMER)
    msg = b.ipfix_message(
        [
            b.template_set({400: PSAMP_FRAME}),
            b.data_set(400, [b.record(PSAMP_FRAME, {301: 1, 323: T - 10, 312: 1200, 315: frame[:128]})]),
        ]
    )
    out, _ = both_ipfix([msg])
    assert col(out, "type") == ["psamp"]
    assert col(out, "src_addr") == [a16("172.16.1.1")] and col(out, "dst_port") == [53]
    assert (col(out, "packets"), col(out, "bytes"), col(out, "vlan")) == ([1], [1200], [300])


# --- 8. SRv6 decapsulation, per exporter -----------------------------------------------------


def srv6(inner, nh=4, src="2001:db8:1::1", sids=("2001:db8:9::100", "2001:db8:8::100")) -> bytes:
    """An SRv6 packet (RFC 8754 SRH, RFC 8986 H.Encaps): outer IPv6 to the active segment."""
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrSegmentRouting

    srh = IPv6ExtHdrSegmentRouting(addresses=list(reversed(sids)), segleft=len(sids) - 1, nh=nh)
    return bytes(IPv6(src=src, dst=sids[0], nh=43) / srh / inner)


def srv6_decoders(native: bool):
    from collectors.sflow import SflowDecoder

    d = Decoder(srv6_exporters=["198.51.100.0/24", "2001:db8:ffff::/48"])
    d.sflow = SflowDecoder(native=native)
    d.ipfix.native = d.netflow9.native = NATIVE if native else None
    return d


@pytest.mark.parametrize(
    "inner, expect",
    [
        (b.tcp4("10.1.0.1", "10.2.0.2", 40000, 443), ("10.1.0.1", "10.2.0.2", 6, 40000, 443, 0x0800)),
        (b.tcp6("fd00:1::1", "fd00:2::2", 40001, 8080), ("fd00:1::1", "fd00:2::2", 6, 40001, 8080, 0x86DD)),
    ],
)
def test_sflow_srv6_decapsulated_for_configured_exporters(inner, expect):
    nh = 4 if expect[-1] == 0x0800 else 41
    frame = b.eth(b.IPv6() / b"")[:12] + b"\x86\xdd" + srv6(inner, nh=nh)
    dgram = b.sflow_datagram([b.flow_sample([b.raw_header_record(frame, header_len=256)])])
    for native in (False, True):
        out = srv6_decoders(native).decode(dgram, EXP, T)
        src, dst, proto, sport, dport, etype = expect
        assert col(out, "src_addr") == [a16(src)] and col(out, "dst_addr") == [a16(dst)]
        assert (col(out, "proto"), col(out, "src_port"), col(out, "dst_port")) == ([proto], [sport], [dport])
        assert col(out, "etype") == [etype] and col(out, "src_mac") == [b.MAC_A_INT]
        assert col(out, "tunnel_type") == ["srv6"]
        assert col(out, "tunnel_src") == [a16("2001:db8:1::1")] and col(out, "tunnel_dst") == [
            a16("2001:db8:9::100")
        ]
        # an exporter outside the configured CIDRs: the outer packet, as before
        other = srv6_decoders(native).decode(dgram, "203.0.113.1", T)
        assert col(other, "src_addr") == [a16("2001:db8:1::1")] and col(other, "tunnel_type") == [""]
        assert col(other, "proto") == [nh]
    py, nat = srv6_decoders(False), srv6_decoders(True)
    for cut in range(14, len(frame) + 1, 7):  # cut anywhere: both parsers read the same
        d = b.sflow_datagram([b.flow_sample([b.raw_header_record(frame[:cut], header_len=256)])])
        a, c = py.decode(d, EXP, T), nat.decode(d, EXP, T)
        for name in a.flows.columns:
            assert col(a, name) == col(c, name), (cut, name)


def test_sflow_raw_ipv6_header_srv6():
    """header_protocol 12 (a bare IPv6 packet): the same decapsulation as in an Ethernet frame."""
    pkt = srv6(b.tcp4("10.3.0.1", "10.3.0.2", 1000, 22))
    dgram = b.sflow_datagram([b.flow_sample([b.raw_header_record(pkt, header_len=256, proto=12)])])
    for native in (False, True):
        out = srv6_decoders(native).decode(dgram, EXP, T)
        assert col(out, "src_addr") == [a16("10.3.0.1")] and col(out, "dst_port") == [22]
        assert col(out, "tunnel_type") == ["srv6"] and col(out, "tunnel_src") == [a16("2001:db8:1::1")]


def test_psamp_ip_header_section_srv6():
    pkt = srv6(b.udp4("10.9.0.1", "10.9.0.2", 1234, 4321))
    fields = [(301, 8), (323, 8), (224, 2), (313, b.VAR)]
    msg = b.ipfix_message(
        [b.template_set({401: fields}), b.data_set(401, [b.record(fields, {323: T, 224: 200, 313: pkt})])]
    )
    for native in (False, True):
        d = srv6_decoders(native)
        out = d.decode(msg, EXP, T)
        assert col(out, "src_addr") == [a16("10.9.0.1")] and col(out, "dst_port") == [4321]
        assert col(out, "tunnel_type") == ["srv6"] and col(out, "tunnel_dst") == [a16("2001:db8:9::100")]
        plain = srv6_decoders(native).decode(msg, "203.0.113.1", T)
        assert col(plain, "src_addr") == [a16("2001:db8:1::1")]


def test_srv6_exporters_config():
    from collectors.config import CollectorConfig

    d = Decoder.from_config(CollectorConfig(srv6_exporters=("198.51.100.0/24",)))
    assert d._srv6_for(b.addr16("198.51.100.7")) and not d._srv6_for(b.addr16("198.51.101.7"))
    with pytest.raises(ValueError, match="not-a-cidr"):
        Decoder(srv6_exporters=["not-a-cidr"])


# --- 1. RFC 5103 biflows ---------------------------------------------------------------------

REV = 29305
BIFLOW = [
    (8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (56, 6), (80, 6), (10, 4), (14, 4),
    (152, 8), (153, 8), (2, 8), (1, 8), (6, 2), (2, 8, REV), (1, 8, REV), (6, 2, REV), (239, 1),
]  # fmt: skip


def _biflow_values(kw=None):
    v = {
        8: "10.0.0.1", 12: "10.0.0.2", 7: 40000, 11: 443, 4: 6, 56: b.MAC_A_INT.to_bytes(6, "big"),
        80: b.MAC_B_INT.to_bytes(6, "big"), 10: 3, 14: 4, 152: T - 9000, 153: T - 1000,
        2: 10, 1: 1000, 6: 0x02 | 0x10, (REV, 2): 8, (REV, 1): 6000, (REV, 6): 0x12, 239: 1,
    }  # fmt: skip
    v.update(kw or {})
    return v


@pytest.mark.parametrize("fields", [BIFLOW, BIFLOW + [(82, b.VAR)]], ids=["fixed", "variable"])
def test_biflow_records_give_both_directions(fields):
    recs = [
        b.record(fields, _biflow_values()),
        b.record(fields, _biflow_values({8: "10.0.0.5", (REV, 2): 0, (REV, 1): 0, 239: 2})),  # one way only
        b.record(fields, _biflow_values({8: "10.0.0.6", 4: 1, 7: 0, 11: 0x0800, (REV, 2): 1, (REV, 1): 84})),
    ]
    msg = b.ipfix_message([b.template_set({300: fields}), b.data_set(300, recs)], export_time=EXPORT_S)
    out, native = both_ipfix([msg])
    assert col(out, "biflow") == [1, 2, 1, 1, 2]
    assert col(out, "biflow_direction") == [1, 1, 2, 1, 1]
    assert col(out, "src_addr") == [
        a16(x) for x in ("10.0.0.1", "10.0.0.2", "10.0.0.5", "10.0.0.6", "10.0.0.2")
    ]
    assert col(out, "dst_addr") == [
        a16(x) for x in ("10.0.0.2", "10.0.0.1", "10.0.0.2", "10.0.0.2", "10.0.0.6")
    ]
    assert col(out, "src_port") == [40000, 443, 40000, 0, 0]
    assert col(out, "dst_port") == [443, 40000, 443, 0x0800, 0]  # ICMP: no ports for the replies
    assert col(out, "src_mac") == [b.MAC_A_INT, b.MAC_B_INT, b.MAC_A_INT, b.MAC_A_INT, b.MAC_B_INT]
    assert (col(out, "in_if"), col(out, "out_if")) == ([3, 4, 3, 3, 4], [4, 3, 4, 4, 3])
    assert col(out, "packets") == [10, 8, 10, 10, 1] and col(out, "bytes") == [1000, 6000, 1000, 1000, 84]
    assert col(out, "tcp_flags") == [0x12, 0x12, 0x12, 0x12, 0x12]
    assert col(out, "flow_start") == [T - 9000] * 5 and col(out, "proto") == [6, 6, 6, 1, 1]
    # records, not rows: statistics and the IPFIX sequence number count data records
    assert native.stats[EXP].flow_records == 3


def test_biflow_reverse_totals_and_missing_reverse_flags():
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (86, 8), (85, 8), (6, 1), (86, 8, REV), (85, 8, REV)]
    rec = {
        8: "10.1.0.1",
        12: "10.1.0.2",
        7: 1,
        11: 2,
        4: 17,
        86: 5,
        85: 500,
        6: 0,
        (REV, 86): 0,
        (REV, 85): 70,
    }
    msg = b.ipfix_message([b.template_set({301: fields}), b.data_set(301, [b.record(fields, rec)])])
    out, _ = both_ipfix([msg])
    assert col(out, "biflow") == [1, 2] and col(out, "biflow_direction") == [0, 0]
    assert col(out, "packets") == [5, 0] and col(out, "bytes") == [500, 70]  # bytes alone: still emitted
    assert col(out, "tcp_flags") == [0, 0]


def test_one_way_records_with_biflow_direction():
    fields = [(8, 4), (12, 4), (2, 8), (239, 1)]
    msg = b.ipfix_message(
        [b.template_set({302: fields}), b.data_set(302, [b.record(fields, {8: "10.2.0.1", 2: 1, 239: 3})])]
    )
    out, _ = both_ipfix([msg])
    assert col(out, "biflow") == [0] and col(out, "biflow_direction") == [3]
    plain = b.ipfix_message([b.template_set({303: SIMPLE}), b.data_set(303, [b.record(SIMPLE, {2: 1})])])
    out, _ = both_ipfix([plain])
    assert col(out, "biflow") == [0] and col(out, "biflow_direction") == [0]


# --- 2. several samplers in one domain --------------------------------------------------------


def test_netflow_v9_flows_take_their_own_samplers_rate():
    """Cisco IOS style (RFC 3954 §8): an options template scoped to the System, with
    FLOW_SAMPLER_ID (48), FLOW_SAMPLER_MODE (49) and FLOW_SAMPLER_RANDOM_INTERVAL (50)."""
    options = nf.v9_options_flowset(257, [(1, 4)], [(48, 1), (49, 1), (50, 4)])
    sampler_data = nf.v9_data_flowset(
        257, [struct.pack(">IBBI", 0, 1, 2, 100), struct.pack(">IBBI", 0, 2, 2, 1000)]
    )
    with_id = [(8, 4), (12, 4), (2, 4), (1, 4), (48, 1)]
    without = [(8, 4), (12, 4), (2, 4), (1, 4)]
    flows = nf.v9_data_flowset(
        260, [b.record(with_id, {8: f"10.0.0.{s}", 2: 1, 48: s}) for s in (1, 2, 3)]
    ) + nf.v9_data_flowset(261, [b.record(without, {8: "10.0.0.9", 2: 1})])
    templates = nf.v9_template_flowset({260: with_id, 261: without})
    out, native = both_ipfix([nf.v9_packet([options, templates]), nf.v9_packet([sampler_data, flows], seq=1)])
    # sampler 3 is unknown and the last template has no id: the domain's last rate, as before
    assert col(out, "sampling_rate") == [100, 1000, 1000, 1000]
    # flows in the same message as the options data, and across flushes, alike
    again, _ = both_ipfix([nf.v9_packet([options, templates, sampler_data, flows])])
    assert col(again, "sampling_rate") == [100, 1000, 1000, 1000]


def test_ipfix_psamp_selectors_and_sampler_ids():
    """RFC 5477 selector reports: scope selectorId (302), then systematic count-based
    sampling (305 interval, 306 space) for one, samplingProbability (311) for another;
    flows carry selectorId. A samplerId (48) with samplingInterval (34) for a third."""
    count_based = [(302, 8), (304, 2), (305, 4), (306, 4)]
    probability = [(302, 8), (304, 2), (311, 8)]
    sampler = [(48, 2), (34, 4)]
    flow = [(8, 4), (12, 4), (2, 8), (1, 8), (302, 8)]
    flow48 = [(8, 4), (12, 4), (2, 8), (1, 8), (48, 2)]
    msg = b.ipfix_message(
        [
            b.options_template_set(310, count_based[:1], count_based[1:]),
            b.options_template_set(311, probability[:1], probability[1:]),
            b.options_template_set(312, sampler[:1], sampler[1:]),
            b.template_set({320: flow, 321: flow48}),
            b.data_set(310, [b.record(count_based, {302: 7, 304: 1, 305: 1, 306: 99})]),
            b.data_set(311, [b.record(probability, {302: 8, 304: 3, 311: struct.pack(">d", 0.001)})]),
            b.data_set(312, [b.record(sampler, {48: 5, 34: 64})]),
        ]
    )
    data = b.ipfix_message(
        [
            b.data_set(320, [b.record(flow, {8: "10.0.0.1", 2: 1, 302: s}) for s in (7, 8, 9)]),
            b.data_set(321, [b.record(flow48, {8: "10.0.0.2", 2: 1, 48: 5})]),
        ],
        seq=3,
    )
    out, native = both_ipfix([msg, data])
    assert col(out, "sampling_rate") == [100, 1000, 64, 64]  # selector 9: unknown, the domain's last
    state = native.state()
    restored = Decoder()
    restored.load_state(state)
    assert restored.ipfix._domains[(EXP, 1)].samplers == {5: 64, 7: 100, 8: 1000}
    assert col(restored.decode(data, EXP, T), "sampling_rate") == [100, 1000, 64, 64]


# --- 3. templates that repeat header fields: outer then inner header --------------------------

HUAWEI = [
    (10, 4), (14, 4), (27, 16), (28, 16), (4, 1),  # outer IPv6 header, protocol 4 (IPv4 in IPv6)
    (8, 4), (12, 4), (4, 1), (7, 2), (11, 2),  # inner IPv4 header and UDP ports
    (2, 8), (1, 8), (152, 8), (153, 8),
]  # fmt: skip


def test_repeated_header_fields_inner_is_the_flow_outer_the_tunnel():
    rec = {
        10: 5, 14: 6, 27: "2001:db8:a::1", 28: "2001:db8:b::2", 4: 4, 8: "192.168.10.1", 12: "192.168.20.2",
        7: 5353, 11: 53, 2: 2, 1: 180, 152: T - 100, 153: T,
    }  # fmt: skip
    # b.record fills a repeated IE with one value: build the inner protocol (17) by hand
    raw = bytearray(b.record(HUAWEI, rec))
    inner_proto_at = 4 + 4 + 16 + 16 + 1 + 4 + 4
    raw[inner_proto_at] = 17
    msg = b.ipfix_message(
        [b.template_set({330: HUAWEI}), b.data_set(330, [bytes(raw)])], export_time=EXPORT_S
    )
    out, _ = both_ipfix([msg])
    assert col(out, "src_addr") == [a16("192.168.10.1")] and col(out, "dst_addr") == [a16("192.168.20.2")]
    assert (col(out, "proto"), col(out, "src_port"), col(out, "dst_port")) == ([17], [5353], [53])
    assert col(out, "etype") == [0x0800]
    assert col(out, "tunnel_src") == [a16("2001:db8:a::1")] and col(out, "tunnel_dst") == [
        a16("2001:db8:b::2")
    ]
    assert col(out, "tunnel_type") == ["ipip"]
    assert (col(out, "packets"), col(out, "in_if")) == ([2], [5])


@pytest.mark.parametrize(
    "outer, inner, expect",
    [
        ([(8, 4), (12, 4), (4, 1), (11, 2)], [(8, 4), (12, 4), (4, 1), (7, 2), (11, 2)], "vxlan"),
        ([(4, 1), (8, 4), (12, 4)], [(4, 1), (27, 16), (28, 16), (7, 2), (11, 2)], "gre"),
        ([(8, 4), (12, 4)], [(8, 4), (12, 4), (4, 1)], "ip"),  # addresses repeated, no outer protocol
    ],
)
def test_repeated_header_fields_variants(outer, inner, expect):
    fields = outer + inner + [(2, 8)]
    values = {"vxlan": (17, 4789), "gre": (47, 0), "ip": (0, 0)}[expect]
    raw = b""
    for i, (ie, length) in enumerate(fields):  # the outer header's fields first, then the inner
        first = i < len(outer)
        v = {
            8: "172.18.0.1" if first else "10.0.0.1",
            12: "172.18.0.2" if first else "10.0.0.2",
            27: "fd00::1",
            28: "fd00::2",
            4: values[0] if first and expect != "ip" else 6,
            7: 1111,
            11: values[1] if first else 2222,
            2: 1,
        }[ie]
        raw += b.record([(ie, length)], {ie: v})
    msg = b.ipfix_message([b.template_set({331: fields}), b.data_set(331, [raw])])
    out, _ = both_ipfix([msg])
    inner_src = "fd00::1" if (27, 16) in inner else "10.0.0.1"
    assert col(out, "src_addr") == [a16(inner_src)] and col(out, "tunnel_type") == [expect]
    assert col(out, "dst_port") == [2222 if (11, 2) in inner else 0]
    assert col(out, "tunnel_src") == [a16("172.18.0.1")]


def test_templates_with_both_address_families_are_not_layered():
    fields = [(8, 4), (12, 4), (27, 16), (28, 16), (4, 1), (2, 8)]
    recs = [
        b.record(fields, {8: "10.0.0.1", 12: "10.0.0.2", 4: 6, 2: 1}),
        b.record(fields, {27: "fd00::1", 2: 1}),
    ]
    out, _ = both_ipfix([b.ipfix_message([b.template_set({332: fields}), b.data_set(332, recs)])])
    assert col(out, "src_addr") == [a16("10.0.0.1"), a16("fd00::1")] and col(out, "tunnel_type") == ["", ""]


# --- 10. the per-datagram flush: columns taken per dtype group ---------------------------------


def test_take_groups_refuses_what_it_cannot_take():
    from collectors.sflow import native_module

    state = native_module(force=True).State()
    assert state.take_groups(((0,),)) is None  # nothing pending
    dgram = b.sflow_datagram([b.flow_sample([b.raw_header_record(b.eth(b.tcp4()))])])
    state.feed(dgram, bytes(16), T, ExporterStats())
    for bad in (((0, 2),), ((99,),), ((),), (0,)):  # widths 8 and 4; unknown; empty; not a tuple
        with pytest.raises((TypeError, ValueError)):
            state.take_groups(bad)
    with pytest.raises(TypeError):
        state.take_groups([(0,)])
    n, bufs, direction, tunnel, unrated = state.take_groups(((0,), (3, 4)))
    assert (n, len(bufs[0]), len(bufs[1]), direction, tunnel, unrated) == (1, 8, 8, 0, 0, 0)
    batch = NATIVE.Batch(
        NATIVE.Layout((4,), (None,) * len(NATIVE.ROLES), NATIVE.T_EXPORT, NATIVE.T_EXPORT, 0, 0)
    )
    assert batch.decode(b"\x00" * 8, 0, 8, 0, 0, bytes(16), 0, 0, -1, None, 10, b"") == 2
    with pytest.raises(ValueError):
        batch.take_groups(((0, 4),))  # 8 and 4 bytes wide
    n, bufs = batch.take_groups(((0, 1, 2),))
    assert n == 2 and len(bufs[0]) == 3 * 2 * 8 and len(batch) == 0
