"""goflow2's protobuf FlowMessage topic as a pipeline input.

Unit level: the columnar decoder against the upb parser of the generated module (an
independent decoder of the same bytes), bad records, and batch ranges of record runs.
End to end: the real goflow2 v2.2.6 binary gets the project's captures over UDP and writes
to a real Kafka topic; ``netobs pipeline`` consumes it, enriches and stores in chdb; the
per-5-tuple sums there equal netobs's own decoding of the same captures.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from google.protobuf.internal.encoder import _VarintBytes

from netobs.batch import ip_bytes
from pipeline import goflow2
from pipeline._goflow2_pb2 import FlowMessage
from pipeline.delivery import Batcher
from tests.services import _require
from tests.services._proc import ManagedProcess, free_port
from tests.services.goflow2 import goflow2_binary

DATA = Path(__file__).resolve().parents[1] / "testdata"
V4 = bytes(10) + b"\xff\xff"


def framed(msg: FlowMessage) -> bytes:
    body = msg.SerializeToString()
    return _VarintBytes(len(body)) + body


def random_message(rng: random.Random) -> FlowMessage:
    """A FlowMessage with a random subset of fields set, as goflow2 would fill them."""
    m = FlowMessage()
    if rng.random() < 0.9:
        m.type = rng.choice([1, 2, 3, 4])
    m.time_received_ns = rng.randrange(1, 1 << 62)
    if rng.random() < 0.7:
        m.time_flow_start_ns = rng.randrange(1, 1 << 62)
        m.time_flow_end_ns = m.time_flow_start_ns + rng.randrange(0, 10**12)
    m.sampling_rate = rng.choice([0, 1, 64, 4096, 1 << 20])
    m.sampler_address = rng.choice([bytes(rng.randrange(256) for _ in range(n)) for n in (4, 16)])
    for name in ("src_addr", "dst_addr"):
        if rng.random() < 0.95:
            setattr(m, name, bytes(rng.randrange(256) for _ in range(rng.choice((4, 16)))))
    for name, hi in (
        ("packets", 1 << 40),
        ("bytes", 1 << 63),
        ("in_if", 1 << 32),
        ("out_if", 1 << 32),
        ("src_port", 1 << 16),
        ("dst_port", 1 << 16),
        ("proto", 256),
        ("etype", 1 << 16),
        ("tcp_flags", 256),
        ("ip_tos", 256),
        ("src_mac", 1 << 48),
        ("dst_mac", 1 << 48),
        ("observation_domain_id", 1 << 32),
        ("src_as", 1 << 32),
        ("dst_as", 1 << 32),
        ("src_net", 129),
        ("dst_net", 129),
        ("observation_point_id", 1 << 32),
        ("ip_ttl", 256),
    ):
        if rng.random() < 0.8:
            setattr(m, name, rng.randrange(hi))
    if rng.random() < 0.3:
        m.vlan_id = rng.randrange(1, 4096)
    if rng.random() < 0.3:
        m.src_vlan = rng.randrange(1, 4096)
    if rng.random() < 0.4:
        m.next_hop = rng.choice([bytes(4), bytes(16), rng.randbytes(4), rng.randbytes(16)])
    if rng.random() < 0.4:
        m.bgp_next_hop = rng.choice([bytes(4), rng.randbytes(4), rng.randbytes(16)])
    m.layer_stack.extend(rng.choice([[0, 1, 4], [0, 1, 4, 12, 0, 1, 3], [0, 2, 9, 1, 3], []]))
    m.layer_size.extend([rng.randrange(1, 2000) for _ in m.layer_stack])
    m.as_path.extend(rng.randrange(1 << 32) for _ in range(rng.randrange(3)))
    return m


def addr16(raw: bytes) -> bytes:
    return V4 + raw if len(raw) == 4 else raw or bytes(16)


def test_decoder_agrees_with_upb_on_random_messages():
    rng = random.Random(7)
    msgs = [random_message(rng) for _ in range(3000)]
    d = goflow2.decode([framed(m) for m in msgs])
    assert d.bad == [] and d.table.num_rows == len(msgs)
    t = d.table.to_pydict()
    for name in ("time_received", "flow_start"):
        t[name] = d.table.column(name).cast(pa.int64()).to_pylist()  # ms, without float rounding
    for i, m in enumerate(msgs):
        want_start = m.time_flow_start_ns // 10**6 or m.time_received_ns // 10**6
        icmp = m.proto in (1, 58) and m.dst_port == 0
        row = {k: t[k][i] for k in t}
        assert row["time_received"] == m.time_received_ns // 10**6
        assert row["flow_start"] == want_start
        assert row["type"] == goflow2.FLOW_TYPES[m.type]
        assert row["exporter"] == addr16(m.sampler_address)
        assert (row["src_addr"], row["dst_addr"]) == (addr16(m.src_addr), addr16(m.dst_addr))
        assert row["sampling_rate"] == m.sampling_rate
        assert (row["packets"], row["bytes"]) == (m.packets, m.bytes)
        assert (row["in_if"], row["out_if"], row["proto"]) == (m.in_if, m.out_if, m.proto)
        assert row["src_port"] == m.src_port
        assert row["dst_port"] == ((m.icmp_type << 8 | m.icmp_code) if icmp else m.dst_port)
        assert (row["src_mac"], row["dst_mac"], row["tos"]) == (m.src_mac, m.dst_mac, m.ip_tos)
        assert row["vlan"] == (m.vlan_id or m.src_vlan)
        assert row["observation_domain"] == m.observation_domain_id
        assert row["tunnel_type"] == (
            "geneve" if 12 in m.layer_stack else "gre" if 9 in m.layer_stack else ""
        )
        assert row["direction"] == "unknown"
        assert (row["src_as"], row["dst_as"]) == (m.src_as, m.dst_as)
        assert (row["src_mask"], row["dst_mask"]) == (m.src_net, m.dst_net)
        assert row["observation_point"] == m.observation_point_id
        hops = [addr16(h) for h in (m.next_hop, m.bgp_next_hop) if h.strip(b"\x00")]
        assert row["next_hop"] == (hops[0] if hops else bytes(16))  # the IP next hop, else BGP's


def test_icmp_type_and_code_become_the_destination_port_as_netobs_decodes_them():
    m = FlowMessage(
        proto=1, icmp_type=8, icmp_code=0, src_addr=b"\x0a\x00\x00\x01", dst_addr=b"\x0a\x00\x00\x02"
    )
    m6 = FlowMessage(proto=58, icmp_type=128, icmp_code=3, src_addr=bytes(16), dst_addr=bytes(16))
    t = goflow2.decode([framed(m), framed(m6)]).table
    assert t.column("dst_port").to_pylist() == [8 << 8, 128 << 8 | 3]


def test_flow_direction_from_goflow2s_documented_mapping_field_42():
    body = FlowMessage(packets=1, src_addr=b"\x0a\x00\x00\x01").SerializeToString()
    recs = [body + b"\xd0\x02\x00", body + b"\xd0\x02\x01", body, body + b"\xd0\x02\x07"]
    t = goflow2.decode([_VarintBytes(len(r)) + r for r in recs]).table
    assert t.column("direction").to_pylist() == ["ingress", "egress", "unknown", "unknown"]


def test_records_that_are_not_flow_messages_are_listed_with_their_reason():
    good = [framed(FlowMessage(packets=i + 1, src_addr=b"\x0a\x00\x00\x01")) for i in range(4)]
    wrong_wire = b"\x4a\x02\xff\xff"  # field 9 (bytes, a varint) as a length-delimited field
    records = [
        good[0],
        b"",  # empty
        b"\x05hello",  # framed, but a group wire type inside
        good[1],
        good[2][:-2],  # truncated: prefix promises more
        _VarintBytes(len(wrong_wire)) + wrong_wire,
        _VarintBytes(7) + FlowMessage(src_addr=b"\x01\x02\x03\x04\x05").SerializeToString(),
        b"\xff\xff\xff\xff\xff\xff",  # a length prefix that never ends
        good[3],
        None,
    ]
    d = goflow2.decode(records)
    assert d.good.tolist() == [0, 3, 8]
    assert d.table.column("packets").to_pylist() == [1, 2, 4]
    why = dict(d.bad)
    assert sorted(why) == [1, 2, 4, 5, 6, 7, 9]
    assert "empty record" in why[1] and "empty record" in why[9]
    assert "group" in why[2]
    assert "length prefix says" in why[4]
    assert "wrong wire type" in why[5]
    assert "src_addr of 5 bytes" in why[6]
    assert "truncated length prefix" in why[7]
    assert goflow2.decode([]).table.num_rows == 0
    assert goflow2.decode([b"", b"\x05hello"]).table.num_rows == 0


class _Record:
    def __init__(self, offset, value):
        self.offset, self.value = offset, value


def test_runs_split_at_bad_records_and_at_a_recorded_batch_end():
    recs = [_Record(100 + i, framed(FlowMessage(packets=i))) for i in range(10)]
    recs[4] = _Record(104, b"\x02\x08\x80")  # framed, but its varint never ends
    out, bad, plan_done = goflow2.runs("t", 0, recs, plan_end=106)
    spans = [(m.position[2], getattr(m, "last_offset", None), m.table is not None) for m in out]
    assert spans == [(100, 103, True), (104, None, False), (105, 106, True), (107, 109, True)]
    assert bad == 1 and plan_done and "goflow2: not a goflow2 FlowMessage" in out[1].error
    assert out[1].raw == b"\x02\x08\x80"
    assert [m.table.num_rows for m in out if m.table is not None] == [4, 2, 3]
    assert out[2].table.column("packets").to_pylist() == [5, 6]

    # A batch replayed after a crash closes exactly at its recorded range.
    b = Batcher(max_rows=1000)
    b.set_plans({("t", 0): (105, 106)})
    for m in out[2:]:
        b.add(m)
    first = b.next_ready(0)
    assert (first.first, first.last, first.rows) == (105, 106, 2)
    assert first.token == "netobs:t:0:105-106:2"


def test_a_decoder_failure_keeps_the_records_aside_instead_of_stopping_the_consumer(monkeypatch):
    def broken(values):
        raise IndexError("boom")

    monkeypatch.setattr(goflow2, "decode", broken)
    out, bad, _ = goflow2.runs("t", 0, [_Record(7, b"x"), _Record(8, b"y")])
    assert [(m.table, m.position[2], m.raw) for m in out] == [(None, 7, b"x"), (None, 8, b"y")]
    assert "decoder failed: IndexError: boom" in out[0].error and bad == 2


@pytest.mark.parametrize(
    "transport, why",
    [
        ({}, "needs transport.type: kafka"),
        ({"type": "kafka", "kafka": {"topic": "flow-messages"}}, "goflow2 needs a topic of its own"),
    ],
)
def test_goflow2_topics_are_refused_where_they_cannot_work(tmp_path, transport, why):
    from netobs_app.runtime import Runtime
    from netobs_app.settings import ConfigError, Settings

    s = Settings(
        transport=transport,
        pipeline={"goflow2_topics": ["flow-messages"]},
        store={"chdb": {"path": str(tmp_path / "chdb")}},
        analytics={"schedule_interval_s": 0},
    )
    runtime = Runtime(s, collect=False, process=True)
    try:
        with pytest.raises(ConfigError, match=why):
            runtime.start()
    finally:
        runtime.stop()


# ---- end to end: goflow2 → Kafka → netobs pipeline → chdb ----------------------------------------


class Goflow2(ManagedProcess):
    def __init__(self, binary, work, bootstrap, topic):
        self.binary, self.work, self.bootstrap, self.topic = binary, Path(work), bootstrap, topic
        self.sflow, self.netflow = udp_port(), udp_port()
        self.log = self.work / "goflow2.log"

    def mapping(self) -> Path:
        """goflow2's documented mapping that adds IPFIX/NetFlow v9 flowDirection as field 42."""
        path = self.work / "mapping.yaml"
        path.write_text(
            "formatter:\n  protobuf:\n    - {name: flow_direction, index: 42, type: varint}\n"
            "ipfix:\n  mapping:\n    - {field: 61, destination: flow_direction}\n"
            "netflowv9:\n  mapping:\n    - {field: 61, destination: flow_direction}\n"
        )
        return path

    def start(self, timeout=30.0):
        cmd = [
            self.binary,
            "-transport=kafka",
            f"-transport.kafka.brokers={self.bootstrap}",
            f"-transport.kafka.topic={self.topic}",
            "-transport.kafka.flushfreq=100ms",
            "-format=bin",
            # one worker: with several, a data datagram can be decoded before the template
            # datagram in front of it (goflow2 then drops it for an unknown template)
            f"-listen=sflow://127.0.0.1:{self.sflow}?workers=1&blocking=true,"
            f"netflow://127.0.0.1:{self.netflow}?workers=1&blocking=true",
            f"-addr=127.0.0.1:{free_port()}",
            f"-templates.path={self.work / 'templates'}",
            f"-mapping={self.mapping()}",
        ]
        self.spawn(cmd, self.work, self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if text.count("starting collection") >= 2:
                return self
            if self.proc is None or self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"goflow2 did not start:\n{self.log.read_text(errors='replace')[-2000:]}")


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SFLOW = ("ovs-sflow",)


def comparable(key: tuple) -> tuple:
    """The key both decoders agree on.

    goflow2 2.2.6 fills no ICMP type/code from sFlow sampled headers (netobs puts them in
    dst_port) and does not skip an IPv6 hop-by-hop header (it reports next-header 0 where
    netobs reports the ICMPv6 behind it): those sFlow rows are compared by address pair.
    """
    kind, direction, src, dst, proto, sport, dport = key
    if kind == "sflow":  # no flowDirection in sFlow for goflow2 (netobs infers it from the sample)
        direction = ""
        if proto in (0, 1, 58):
            return (kind, direction, src, dst, "icmp/hop-by-hop", sport, 0)
    return (kind, direction, src, dst, proto, sport, dport)


NETFLOW = ("ovs-ipfix", "softflowd-netflow9", "softflowd-netflow5")


def netobs_sums(captures):
    """(type, direction, src, dst, proto, sport, dport) → [packets, bytes, packets*rate, rows], by netobs."""
    from collectors.decoder import Decoder
    from collectors.pcap import PcapReader

    sums = defaultdict(lambda: [0, 0, 0, 0])
    for name in captures:
        decoder = Decoder()
        for d in PcapReader(DATA / f"{name}.pcap"):
            out = decoder.decode(
                d.payload, d.src_ip, d.timestamp_ns // 10**6, session=f"{d.src_ip}:{d.src_port}"
            )
            c = out.flows.columns
            for i in range(len(out.flows)):
                key = (
                    str(c["type"][i]),
                    str(c["direction"][i]),
                    bytes(c["src_addr"][i]).hex(),
                    bytes(c["dst_addr"][i]).hex(),
                    int(c["proto"][i]),
                    int(c["src_port"][i]),
                    int(c["dst_port"][i]),
                )
                s = sums[key]
                s[0] += int(c["packets"][i])
                s[1] += int(c["bytes"][i])
                s[2] += int(c["packets"][i]) * int(c["sampling_rate"][i])
                s[3] += 1
    return dict(sums)


@pytest.mark.integration
def test_goflow2_topic_through_the_pipeline_into_chdb(tmp_path, kafka_broker, topic_factory):
    from kafka import KafkaConsumer, KafkaProducer

    from netobs.control import remote_health, remote_query

    binary = goflow2_binary()
    if binary is None:
        _require.unavailable("goflow2 binary not built (scripts/install-services.sh)")
    gtopic, ntopic, dead = topic_factory(3), topic_factory(3), topic_factory(1)
    gf = Goflow2(binary, tmp_path, kafka_broker.bootstrap, gtopic).start()
    control = f"127.0.0.1:{free_port()}"
    (tmp_path / "p.yaml").write_text(
        "transport:\n  type: kafka\n"
        f"  kafka: {{bootstrap_servers: ['{kafka_broker.bootstrap}'], topic: {ntopic}, group_id: g-{gtopic},"
        f" dead_letter_topic: {dead}}}\n"
        f"store: {{chdb: {{path: '{tmp_path / 'chdb'}'}}}}\n"
        f"pipeline: {{max_batch_delay_ms: 200, goflow2_topics: [{gtopic}]}}\n"
        f"enrich: {{inventory: '{DATA / 'inventory.yaml'}'}}\n"
        f"control: {{listen: '{control}'}}\n"
    )
    log = open(tmp_path / "pipeline.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "netobs", "--config", str(tmp_path / "p.yaml"), "pipeline"],
        stdout=log,
        stderr=log,
    )
    try:
        from collectors.replay import replay

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the pipeline is up (and busy no more) before the replay
            try:
                remote_health(control)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "pipeline.log").read_text()
                time.sleep(0.2)
        # UDP: paced, so a loaded CI machine does not overflow goflow2's socket buffer
        for name in SFLOW:
            replay(DATA / f"{name}.pcap", f"127.0.0.1:{gf.sflow}", rate=500)
        for name in NETFLOW:
            replay(DATA / f"{name}.pcap", f"127.0.0.1:{gf.netflow}", rate=500)
        producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        for bad in (b"\x05hello", b"not protobuf at all"):
            producer.send(gtopic, bad).get(30)
        producer.close()
        expected = netobs_sums(SFLOW + NETFLOW)
        n_rows = sum(s[3] for s in expected.values())
        deadline = time.monotonic() + 60
        health = {}
        while time.monotonic() < deadline:
            try:
                health = remote_health(control)
            except OSError:
                assert proc.poll() is None, (tmp_path / "pipeline.log").read_text()
            if health.get("rows_inserted", 0) >= n_rows and health.get("bad_messages", 0) >= 2:
                break
            time.sleep(0.3)
        rows = remote_query(
            control,
            "SELECT type, direction, lower(hex(src_addr)) AS s, lower(hex(dst_addr)) AS d, proto, src_port, dst_port,"
            " sum(packets) AS p, sum(bytes) AS b, sum(packets * sampling_rate) AS sp, count() AS n,"
            " any(src_pod) AS pod, any(src_center) AS center, any(path) AS path"
            " FROM netobs.flows GROUP BY type, direction, s, d, proto, src_port, dst_port",
        ).to_pylist()
    finally:
        proc.send_signal(2)
        proc.wait(30)
        log.close()
        gf.stop()
    per_type = {t: sum(r["n"] for r in rows if r["type"] == t) for t in {r["type"] for r in rows}}
    assert sum(per_type.values()) == n_rows, (per_type, (tmp_path / "pipeline.log").read_text()[-3000:])
    got: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in rows:
        key = comparable(
            (r["type"], r["direction"], r["s"], r["d"], r["proto"], r["src_port"], r["dst_port"])
        )
        got[key] = [a + b for a, b in zip(got[key], (r["p"], r["b"], r["sp"]), strict=True)]
    want: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    for key, sums in expected.items():
        want[comparable(key)] = [a + b for a, b in zip(want[comparable(key)], sums[:3], strict=True)]
    assert set(got) == set(want)
    mismatched = {k: (want[k], got[k]) for k in want if got[k] != want[k]}
    # goflow2 does not read OVS's layer2OctetDeltaCount (IE 352): its non-IP IPFIX flows carry no bytes.
    l2 = {k for k in mismatched if k[0] == "ipfix" and k[2:] == ("0" * 32, "0" * 32, 0, 0, 0)}
    assert set(mismatched) <= l2, mismatched
    for k in l2:
        (p, _, sp), (gp, gb, gsp) = mismatched[k]
        assert (gp, gb, gsp) == (p, 0, sp)  # packets agree, bytes are 0
    # The same enrichment as netobs's own batches: both ends named from the inventory.
    pod_b = (V4 + ip_bytes("10.244.1.11")[12:]).hex()
    named = [r for r in rows if r["s"] == pod_b]
    assert named and all(r["pod"] == "pod-b" and r["center"] == "dc1" for r in named)
    # The two records that are not FlowMessages: counted and dead-lettered with the reason.
    assert health["bad_messages"] == 2
    c = KafkaConsumer(
        dead, bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    letters = [(m.value, dict(m.headers)) for m in c]
    c.close()
    assert sorted(v for v, _ in letters) == sorted([b"\x05hello", b"not protobuf at all"])
    assert all(
        h["netobs.source_topic"] == gtopic.encode() and b"goflow2" in h["netobs.error"] for _, h in letters
    )
    assert np.all([h["netobs.reason"] == b"unreadable" for _, h in letters])
