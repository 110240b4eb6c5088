"""The offline ``netobs decode`` contract: a capture in, JSON-ready records out."""

from __future__ import annotations

import io
import json

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapWriter

from collectors.decoder import Decoder
from collectors.jsonl import iso_ms, iter_records, write_jsonl
from netobs import schema
from tests.collectors import _builders as b

T0 = 1_796_016_000.123  # capture time of the first datagram

FLOW_KEYS = {
    "kind",
    "type",
    "exporter",
    "time_received",
    "flow_start",
    "flow_end",
    "sampling_rate",
    "src_addr",
    "dst_addr",
    "src_port",
    "dst_port",
    "proto",
    "packets",
    "bytes",
    "in_if",
    "out_if",
    "direction",
    "tcp_flags",
    "src_mac",
    "dst_mac",
    "vlan",
    "tos",
    "tunnel_type",
    "tunnel_id",
    "tunnel_src",
    "tunnel_dst",
}


@pytest.fixture
def capture(tmp_path):
    """sFlow and IPFIX to unusual ports, from two exporters, template before data."""
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 8), (1, 8), (152, 8), (153, 8)]
    values = {
        8: "10.1.0.1",
        12: "10.1.0.2",
        7: 1000,
        11: 2000,
        4: 17,
        2: 3,
        1: 300,
        152: 1_796_016_000_001,
        153: 1_796_016_000_999,
    }
    payloads = [
        ("192.0.2.10", 9999, b.ipfix_message([b.template_set({256: fields})])),
        ("192.0.2.10", 9999, b.ipfix_message([b.data_set(256, [b.record(fields, values)])])),
        (
            "192.0.2.20",
            7777,
            b.sflow_datagram(
                [
                    b.flow_sample([b.raw_header_record(b.eth(b.geneve(b.eth(b.tcp4()), vni=42)))], rate=64),
                    b.counter_sample([b.generic_if_counters(if_index=5)]),
                ],
                agent="192.0.2.20",
            ),
        ),
    ]
    path = tmp_path / "exports.pcap"
    with PcapWriter(str(path)) as w:
        for i, (src, dport, payload) in enumerate(payloads):
            pkt = Ether() / IP(src=src, dst="127.0.0.1") / UDP(sport=40000, dport=dport) / payload
            pkt.time = T0 + i
            w.write(pkt)
    return path


def test_iter_records(capture):
    recs = list(iter_records(capture))
    assert [(r["kind"], r["type"]) for r in recs] == [
        ("flow", "ipfix"),
        ("flow", "sflow"),
        ("counter", "sflow"),
    ]
    ipfix, sflow, counter = recs
    assert FLOW_KEYS <= set(ipfix) and FLOW_KEYS <= set(sflow)
    assert json.loads(json.dumps(recs)) == recs  # JSON-ready
    assert (ipfix["exporter"], ipfix["src_addr"], ipfix["dst_port"], ipfix["packets"], ipfix["bytes"]) == (
        "192.0.2.10",
        "10.1.0.1",
        2000,
        3,
        300,
    )
    assert (ipfix["flow_start"], ipfix["flow_end"]) == (
        "2026-11-30T05:20:00.001Z",
        "2026-11-30T05:20:00.999Z",
    )
    assert ipfix["time_received"] == "2026-11-30T05:20:01.123Z"
    assert (sflow["tunnel_type"], sflow["tunnel_id"], sflow["tunnel_src"], sflow["sampling_rate"]) == (
        "geneve",
        42,
        "192.168.1.1",
        64,
    )
    assert (sflow["src_mac"], sflow["dst_port"], sflow["direction"]) == ("02:00:00:00:00:0a", 443, "ingress")
    assert (counter["if_index"], counter["exporter"], counter["in_octets"]) == (5, "192.0.2.20", 1000)
    assert counter["time_received"] == "2026-11-30T05:20:02.123Z"


def test_write_jsonl_both_call_styles(capture, tmp_path):
    out = tmp_path / "out.jsonl"
    assert write_jsonl(capture, out) == 3
    stream = io.StringIO()
    assert write_jsonl(iter_records(capture), stream) == 3  # how `netobs decode` calls it
    assert stream.getvalue() == out.read_text()
    assert [json.loads(line)["kind"] for line in stream.getvalue().splitlines()] == [
        "flow",
        "flow",
        "counter",
    ]


@pytest.mark.parametrize(
    "ms,text",
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_796_016_000_123, "2026-11-30T05:20:00.123Z"),
        (1_796_016_000_999, "2026-11-30T05:20:00.999Z"),
    ],
)
def test_iso_ms(ms, text):
    assert iso_ms(ms) == text


def test_mixed_batch_converts_to_arrow_with_the_schema(capture):
    from collectors.pcap import PcapReader

    d = Decoder()
    out = d.decode_many((x.payload, x.src_ip, x.timestamp_ns // 1_000_000) for x in PcapReader(capture))
    rb = out.flows.to_arrow()
    assert rb.schema.equals(schema.arrow_schema(), check_metadata=True) and rb.num_rows == 2
    assert rb.column("type").to_pylist() == ["sflow", "ipfix"]
    for name, dtype in schema.numpy_dtypes().items():
        assert out.flows.columns[name].dtype == dtype, name
