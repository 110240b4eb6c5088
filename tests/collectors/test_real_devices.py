"""Issue 14 (part 2): what real devices send that the decoders got wrong, built from the standards.

Every case is decoded by the pure-Python path and the native one (collectors/_native), which
must agree (:func:`tests.collectors.test_native_ipfix.differential`,
:func:`tests.collectors.test_native_sflow.run_both`), and checked against the values the
standard gives.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapWriter

from collectors.decode import iso_ms, iter_records
from collectors.decoder import Decoder
from tests.collectors import _builders as b
from tests.collectors import _nf_builders as nf
from tests.collectors.test_native_ipfix import _decoders, differential
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
    assert len(recs) == 3
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
