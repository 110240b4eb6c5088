"""IPFIX (RFC 7011): templates, options, data records → flow columns."""

from __future__ import annotations

import struct

import pytest

from collectors.decoder import Decoder
from netobs.batch import ip_str
from tests.collectors import _builders as b
from tests.collectors._builders import VAR

T = 1_700_000_123_456
EXPORT = 1_700_000_100
EXP = "198.51.100.9"

BASIC = [
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
    (5, 1),
    (10, 4),
    (14, 4),
    (56, 6),
    (80, 6),
    (58, 2),
    (2, 8),
    (1, 8),
    (152, 8),
    (153, 8),
    (61, 1),
]
BASIC_VALUES = {
    8: "10.0.0.1",
    12: "10.0.0.2",
    7: 1234,
    11: 80,
    4: 6,
    6: 0x12,
    5: 0x10,
    10: 5,
    14: 6,
    56: b"\x02\x00\x00\x00\x00\x0a",
    80: b"\x02\x00\x00\x00\x00\x0b",
    58: 30,
    2: 7,
    1: 700,
    152: 1_700_000_000_001,
    153: 1_700_000_050_002,
    61: 1,
}


def decoder_with(*messages, exporter=EXP, d=None):
    d = d or Decoder()
    outs = [d.decode(m, exporter, T) for m in messages]
    return d, outs


def row(batch, i=0):
    return {k: (v[i].tobytes() if v.dtype.kind == "V" else v[i]) for k, v in batch.columns.items()}


def test_template_then_data_fixed_fields():
    msg = b.ipfix_message(
        [b.template_set({256: BASIC}), b.data_set(256, [b.record(BASIC, BASIC_VALUES)])], export_time=EXPORT
    )
    d, (out,) = decoder_with(msg)
    r = row(out.flows)
    assert (ip_str(r["src_addr"]), ip_str(r["dst_addr"]), r["src_port"], r["dst_port"]) == (
        "10.0.0.1",
        "10.0.0.2",
        1234,
        80,
    )
    assert (r["proto"], r["tcp_flags"], r["tos"], r["in_if"], r["out_if"], r["vlan"]) == (
        6,
        0x12,
        0x10,
        5,
        6,
        30,
    )
    assert (r["src_mac"], r["dst_mac"], r["packets"], r["bytes"]) == (b.MAC_A_INT, b.MAC_B_INT, 7, 700)
    assert (r["flow_start"], r["flow_end"], r["time_received"]) == (1_700_000_000_001, 1_700_000_050_002, T)
    assert (r["direction"], r["type"], r["etype"], r["observation_domain"], r["sampling_rate"]) == (
        "egress",
        "ipfix",
        0x0800,
        1,
        0,
    )
    assert ip_str(r["exporter"]) == EXP
    st = d.stats[EXP]
    assert (st.templates, st.flow_records, st.error_count) == (1, 1, 0)


def test_many_one_record_sets_and_messages_decode_in_one_batch():
    fields = b.ovs_fields(interface_names=False)
    sets = [b.data_set(300, [b.record(fields, b.ovs_values(i))]) for i in range(5)]
    d = Decoder()
    d.feed(b.ipfix_message([b.template_set({300: fields})] + sets[:2]), EXP, T)
    d.feed(b.ipfix_message(sets[2:]), EXP, T + 1)
    out = d.flush()
    assert out.flows.columns["src_port"].tolist() == [40000 + i for i in range(5)]
    assert out.flows.columns["time_received"].tolist() == [T, T, T + 1, T + 1, T + 1]


@pytest.mark.parametrize("egress", [False, True])
def test_ovs_template_with_interface_names_and_tunnel(egress):
    fields = b.ovs_fields(egress=egress, tunnel=True)
    values = b.ovs_values(3, egress=egress)
    values[82] = b"x" * 300  # forces the 3-byte length form
    msg = b.ipfix_message(
        [
            b.template_set({260: fields}),
            b.data_set(260, [b.record(fields, values), b.record(fields, b.ovs_values(4, egress))]),
        ],
        export_time=EXPORT,
    )
    d, (out,) = decoder_with(msg)
    r = row(out.flows)
    assert len(out.flows) == 2 and d.stats[EXP].error_count == 0
    assert (ip_str(r["src_addr"]), r["src_port"], r["dst_port"], r["packets"], r["bytes"]) == (
        "10.16.0.4",
        40003,
        443,
        13,
        1003,
    )
    assert (r["tunnel_type"], r["tunnel_id"], ip_str(r["tunnel_src"]), ip_str(r["tunnel_dst"])) == (
        "geneve",
        5,
        "172.18.0.2",
        "172.18.0.3",
    )
    assert (r["direction"], r["in_if"], r["out_if"]) == (("egress", 3, 4) if egress else ("ingress", 3, 0))
    # flowStart/EndDeltaMicroseconds count back from the export time (RFC 5102 §5.9).
    assert (r["flow_start"], r["flow_end"]) == (EXPORT * 1000 - 2500, EXPORT * 1000 - 1)
    assert out.flows.columns["src_port"][1] == 40004


def test_total_counters_when_no_delta_and_reduced_size_encoding():
    fields = [(8, 4), (12, 4), (86, 4), (85, 4)]  # reduced-size (RFC 7011 §6.2)
    msg = b.ipfix_message(
        [
            b.template_set({256: fields}),
            b.data_set(256, [b.record(fields, {8: "1.1.1.1", 12: "2.2.2.2", 86: 9, 85: 900})]),
        ]
    )
    _, (out,) = decoder_with(msg)
    assert (out.flows.columns["packets"][0], out.flows.columns["bytes"][0]) == (9, 900)


def test_variable_length_fields_are_skipped_correctly():
    fields = [(7, 2), (82, VAR), (11, 2), (83, VAR), (96, VAR), (2, 8)]
    recs = [
        b.record(fields, {7: 1, 82: b"eth0", 11: 2, 83: b"d" * 254, 2: 3}),
        b.record(fields, {7: 4, 82: b"", 11: 5, 83: b"y" * 1000, 96: b"app", 2: 6}),
    ]
    d, (out,) = decoder_with(b.ipfix_message([b.template_set({256: fields}), b.data_set(256, recs, pad=3)]))
    cols = out.flows.columns
    assert (cols["src_port"].tolist(), cols["dst_port"].tolist(), cols["packets"].tolist()) == (
        [1, 4],
        [2, 5],
        [3, 6],
    )
    assert d.stats[EXP].error_count == 0


def test_data_before_template_is_counted_then_decoded():
    data = b.data_set(256, [b.record(BASIC, BASIC_VALUES)])
    d, (first, second) = decoder_with(
        b.ipfix_message([data]), b.ipfix_message([b.template_set({256: BASIC}), data])
    )
    assert len(first.flows) == 0 and len(second.flows) == 1
    assert d.stats[EXP].unknown_templates == 1


def test_templates_are_scoped_per_domain_and_exporter():
    other = [(11, 2), (7, 2)]  # same id 256, other layout, in domain 2
    d, _ = decoder_with(
        b.ipfix_message([b.template_set({256: BASIC})], domain=1),
        b.ipfix_message([b.template_set({256: other})], domain=2),
    )
    out1 = d.decode(b.ipfix_message([b.data_set(256, [b.record(BASIC, BASIC_VALUES)])], domain=1), EXP, T)
    out2 = d.decode(b.ipfix_message([b.data_set(256, [b.record(other, {11: 53, 7: 9})])], domain=2), EXP, T)
    out3 = d.decode(
        b.ipfix_message([b.data_set(256, [b.record(other, {11: 53, 7: 9})])], domain=2), "10.9.9.9", T
    )
    assert (out1.flows.columns["dst_port"][0], out1.flows.columns["observation_domain"][0]) == (80, 1)
    assert (out2.flows.columns["dst_port"][0], out2.flows.columns["src_port"][0]) == (53, 9)
    assert len(out3.flows) == 0 and d.stats["10.9.9.9"].unknown_templates == 1


SAMPLING = {
    "samplingInterval": ([(34, 4)], {34: 1000}, 1000),
    "samplerRandomInterval": ([(50, 4)], {50: 64}, 64),
    "packetInterval_space": ([(305, 4), (306, 4)], {305: 1, 306: 255}, 256),
    "size_population": ([(309, 4), (310, 4)], {309: 1, 310: 100}, 100),
}


@pytest.mark.parametrize("fields,values,rate", SAMPLING.values(), ids=SAMPLING.keys())
def test_options_template_sampling_applies_per_domain(fields, values, rate):
    scope = [(149, 4)]  # observationDomainId
    opts = b.ipfix_message(
        [
            b.options_template_set(400, scope, fields),
            b.data_set(400, [b.record(scope + fields, {149: 1, **values})]),
        ],
        domain=1,
    )
    data = b.data_set(256, [b.record(BASIC, BASIC_VALUES)])
    d, _ = decoder_with(
        b.ipfix_message([b.template_set({256: BASIC})], domain=1),
        b.ipfix_message([b.template_set({256: BASIC})], domain=2),
        opts,
    )
    out1 = d.decode(b.ipfix_message([data], domain=1), EXP, T)
    out2 = d.decode(b.ipfix_message([data], domain=2), EXP, T)
    assert out1.flows.columns["sampling_rate"][0] == rate
    assert out2.flows.columns["sampling_rate"][0] == 0
    assert d.stats[EXP].options_records == 1


def test_sampling_in_the_data_record_wins_and_default_applies():
    fields = [(8, 4), (34, 4)]
    msg = b.ipfix_message(
        [
            b.template_set({256: fields, 257: [(8, 4)]}),
            b.data_set(256, [b.record(fields, {8: "1.1.1.1", 34: 32})]),
            b.data_set(257, [b.record([(8, 4)], {8: "1.1.1.1"})]),
        ]
    )
    _, (out,) = decoder_with(msg, d=Decoder(default_sampling_rate=10))
    assert sorted(out.flows.columns["sampling_rate"].tolist()) == [10, 32]


NTP_2023 = (1_700_000_000 + 2_208_988_800) << 32 | (1 << 31)  # + 0.5 s


TIMES = {
    "seconds": (
        [(150, 4), (151, 4)],
        {150: 1_700_000_000, 151: 1_700_000_001},
        (1_700_000_000_000, 1_700_000_001_000),
    ),
    "microseconds_ntp": ([(154, 8), (155, 8)], {154: NTP_2023, 155: NTP_2023}, (1_700_000_000_500,) * 2),
    "nanoseconds_ntp": ([(156, 8), (157, 8)], {156: NTP_2023, 157: NTP_2023}, (1_700_000_000_500,) * 2),
    "delta_micro": ([(158, 4), (159, 4)], {158: 1_500, 159: 0}, (EXPORT * 1000 - 2, EXPORT * 1000)),
    "uptime_with_init": (
        [(160, 8), (22, 4), (21, 4)],
        {160: 1_600_000_000_000, 22: 1000, 21: 2000},
        (1_600_000_001_000, 1_600_000_002_000),
    ),
    "uptime_without_init": ([(22, 4), (21, 4)], {22: 1000, 21: 2000}, (EXPORT * 1000,) * 2),
    "none": ([(8, 4)], {8: "1.2.3.4"}, (EXPORT * 1000,) * 2),
}


@pytest.mark.parametrize("fields,values,expected", TIMES.values(), ids=TIMES.keys())
def test_flow_times(fields, values, expected):
    msg = b.ipfix_message(
        [b.template_set({256: fields}), b.data_set(256, [b.record(fields, values)])], export_time=EXPORT
    )
    _, (out,) = decoder_with(msg)
    assert (out.flows.columns["flow_start"][0], out.flows.columns["flow_end"][0]) == expected


def test_system_init_time_from_options_data():
    scope, fields = [(149, 4)], [(160, 8)]
    opts = [
        b.options_template_set(400, scope, fields),
        b.data_set(400, [b.record(scope + fields, {160: 1_000_000})]),
    ]
    up = [(22, 4), (21, 4)]
    msg = b.ipfix_message(opts + [b.template_set({256: up}), b.data_set(256, [b.record(up, {22: 5, 21: 9})])])
    _, (out,) = decoder_with(msg)
    assert (out.flows.columns["flow_start"][0], out.flows.columns["flow_end"][0]) == (1_000_005, 1_000_009)


@pytest.mark.parametrize("code,expected", [(0, "ingress"), (1, "egress"), (7, "unknown"), (None, "unknown")])
def test_direction(code, expected):
    fields = [(8, 4)] + ([(61, 1)] if code is not None else [])
    msg = b.ipfix_message(
        [b.template_set({256: fields}), b.data_set(256, [b.record(fields, {61: code or 0})])]
    )
    _, (out,) = decoder_with(msg)
    assert out.flows.columns["direction"][0] == expected


ICMP = {
    "icmpTypeCodeIPv4": ([(4, 1), (32, 2)], {4: 1, 32: 0x0303}, 0x0303),
    "icmpTypeCodeIPv6": ([(4, 1), (139, 2)], {4: 58, 139: 0x8000}, 0x8000),
    "icmpType_Code_IPv4": ([(4, 1), (176, 1), (177, 1)], {4: 1, 176: 11, 177: 1}, 11 * 256 + 1),
    "ports_kept_for_tcp": ([(4, 1), (11, 2), (32, 2)], {4: 6, 11: 22, 32: 0x0800}, 22),
}


@pytest.mark.parametrize("fields,values,dport", ICMP.values(), ids=ICMP.keys())
def test_icmp_type_code_as_dst_port(fields, values, dport):
    msg = b.ipfix_message([b.template_set({256: fields}), b.data_set(256, [b.record(fields, values)])])
    _, (out,) = decoder_with(msg)
    assert out.flows.columns["dst_port"][0] == dport


#: Router elements → (next_hop, src_as, dst_as, src_mask, dst_mask, observation_point).
ROUTE = {
    "ipv4_ip_next_hop_over_bgp_2_byte_as": (
        [(8, 4), (15, 4), (18, 4), (16, 2), (17, 4), (9, 1), (13, 1), (138, 4)],
        {
            8: "10.0.0.1",
            15: "10.9.0.1",
            18: "192.0.2.1",
            16: 64512,
            17: 4_200_000_000,
            9: 24,
            13: 16,
            138: 4242,
        },
        ("10.9.0.1", 64512, 4_200_000_000, 24, 16, 4242),
    ),
    "ipv4_bgp_next_hop_when_ip_is_0.0.0.0": (
        [(15, 4), (18, 4), (16, 4), (17, 2)],
        {15: "0.0.0.0", 18: "192.0.2.1", 16: 65551, 17: 64500},
        ("192.0.2.1", 65551, 64500, 0, 0, 0),
    ),
    "no_next_hop_is_unspecified": ([(15, 4), (18, 4)], {}, ("::", 0, 0, 0, 0, 0)),
    "ipv6_ip_next_hop_and_prefix_lengths": (
        [(27, 16), (62, 16), (63, 16), (16, 4), (17, 4), (29, 1), (30, 1), (138, 8)],
        {27: "fd00::1", 62: "fe80::1", 63: "2001:db8::1", 16: 1, 17: 2, 29: 64, 30: 128, 138: 7},
        ("fe80::1", 1, 2, 64, 128, 7),
    ),
    "ipv6_bgp_next_hop": ([(62, 16), (63, 16)], {63: "2001:db8::1"}, ("2001:db8::1", 0, 0, 0, 0, 0)),
    "dual_stack_ipv6_where_set": (
        [(15, 4), (62, 16), (9, 1), (29, 1), (13, 1), (30, 1)],
        {15: "10.0.0.254", 62: "fd00::fe", 9: 24, 29: 56, 13: 16},
        ("fd00::fe", 0, 0, 56, 16, 0),
    ),
    "ipv4_next_hop_beside_an_unset_ipv6_one": (
        [(15, 4), (62, 16), (63, 16)],
        {15: "10.0.0.254", 63: "2001:db8::1"},
        ("10.0.0.254", 0, 0, 0, 0, 0),
    ),
    "prefix_lengths_out_of_range_are_unknown": (
        [(9, 1), (13, 2), (29, 1), (30, 1)],
        {9: 33, 13: 0x118, 29: 129, 30: 255},
        ("::", 0, 0, 0, 0, 0),
    ),
    "observation_point_wider_than_32_bits_is_unknown": ([(138, 8)], {138: 1 << 32}, ("::", 0, 0, 0, 0, 0)),
    "observation_point_reduced_size": ([(138, 2)], {138: 0xFFFF}, ("::", 0, 0, 0, 0, 0xFFFF)),
    "variable_length_encodings": (
        [(16, VAR), (9, VAR), (138, VAR)],
        {16: b"\xfd\xe8", 9: b"\x18", 138: b"\x00\x00\x10\x92"},
        ("::", 65000, 0, 24, 0, 4242),
    ),
}


@pytest.mark.parametrize("fields,values,expected", ROUTE.values(), ids=ROUTE.keys())
def test_next_hop_as_prefix_lengths_and_observation_point(fields, values, expected):
    msg = b.ipfix_message([b.template_set({256: fields}), b.data_set(256, [b.record(fields, values)])])
    _, (out,) = decoder_with(msg)
    r = row(out.flows)
    got = (ip_str(r["next_hop"]), *(int(r[k]) for k in ("src_as", "dst_as", "src_mask", "dst_mask")))
    assert (*got, int(r["observation_point"])) == expected


def test_ipv6_and_unknown_enterprise_fields():
    fields = [(27, 16), (28, 16), (1, 4, 9), (100, 2, 29305), (7, 2), (200, VAR, 1234), (11, 2)]
    values = {27: "fd00::1", 28: "fd00::2", 7: 1, 11: 2, (1234, 200): b"zz"}
    _, (out,) = decoder_with(
        b.ipfix_message([b.template_set({256: fields}), b.data_set(256, [b.record(fields, values)])])
    )
    r = row(out.flows)
    assert (ip_str(r["src_addr"]), ip_str(r["dst_addr"]), r["etype"], r["src_port"], r["dst_port"]) == (
        "fd00::1",
        "fd00::2",
        0x86DD,
        1,
        2,
    )


def test_sequence_numbers_count_data_records():
    d = Decoder()
    d.decode(b.ipfix_message([b.template_set({256: BASIC})], seq=0), EXP, T)
    rec = b.record(BASIC, BASIC_VALUES)
    d.decode(b.ipfix_message([b.data_set(256, [rec, rec])], seq=0), EXP, T)
    d.decode(b.ipfix_message([b.data_set(256, [rec])], seq=2), EXP, T)
    assert d.stats[EXP].sequence_gaps == 0
    d.decode(b.ipfix_message([b.data_set(256, [rec])], seq=9), EXP, T)
    assert d.stats[EXP].sequence_gaps == 1


def test_scapy_built_message():
    from scapy.layers.netflow import (
        NetflowDataflowsetV9,
        NetflowFlowsetV9,
        NetflowHeader,
        NetflowHeaderV10,
        NetflowTemplateFieldV9,
        NetflowTemplateV9,
    )
    from scapy.packet import Raw

    spec = [(8, 4), (12, 4), (2, 8), (1, 8)]
    tpl = NetflowFlowsetV9(
        flowSetID=2,
        templates=[
            NetflowTemplateV9(
                templateID=256,
                template_fields=[NetflowTemplateFieldV9(fieldType=i, fieldLength=n) for i, n in spec],
            )
        ],
    )
    data = NetflowDataflowsetV9(
        templateID=256, records=[Raw(bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack(">QQ", 3, 300))]
    )
    body = bytes(tpl / data)
    msg = (
        bytes(
            NetflowHeader(version=10)
            / NetflowHeaderV10(length=16 + len(body), ExportTime=EXPORT, ObservationDomainID=1)
        )
        + body
    )
    _, (out,) = decoder_with(msg)
    r = row(out.flows)
    assert (ip_str(r["src_addr"]), ip_str(r["dst_addr"]), r["packets"], r["bytes"]) == (
        "10.0.0.1",
        "10.0.0.2",
        3,
        300,
    )
