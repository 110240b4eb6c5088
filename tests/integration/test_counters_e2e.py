"""Interface counters end to end, from a real Open vSwitch sFlow capture into ClickHouse.

``tests/testdata/ovs-sflow.pcap`` holds OVS 3.1's counter samples (one per port, plus the
bridge's own samples without an interface record). Two independent decoders say what they
hold: tshark gives every sample (agent, datagram sequence, data source, time, Ethernet
record) but stops at OVS's port-name record before the generic interface record, so
pmacct's ``sfacctd`` (its counter log) gives the generic interface counters. The rows
that arrive in ``interface_counters`` must equal the samples both show, through:
- decode → Kafka (the counters' own wire kind) → pipeline → chdb, including a replay of
  an inserted-but-uncommitted batch that leaves no duplicate in either table;
- the UDP collector service → in-process transport → pipeline → chdb (embedded mode);
- the ClickHouse 18.16 server through the legacy DDL.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pytest

from collectors.config import CollectorConfig, ListenerConfig
from collectors.decoder import Decoder
from collectors.pcap import PcapReader
from collectors.replay import replay
from collectors.service import UdpCollector
from netobs import ddl
from netobs.batch import conform, ip_bytes
from netobs.config import (
    ChdbStoreConfig,
    ClickHouseStoreConfig,
    InprocessTransportConfig,
    KafkaTransportConfig,
    StoreConfig,
)
from netobs.store import make_store
from netobs.transport.inprocess import InprocessTransport
from netobs.transport.kafka import KafkaTransport
from pipeline import Pipeline
from pipeline.config import PipelineConfig
from tests.collectors import _tshark
from tests.services._require import unavailable

pytestmark = pytest.mark.integration

CAPTURE = Path(__file__).parent.parent / "testdata" / "ovs-sflow.pcap"
PORT = 6343
ALL_ONES = 0xFFFFFFFF
#: sfacctd's generic interface counter names → our columns.
GENERIC = {
    "ifIndex": "if_index",
    "ifType": "if_type",
    "ifSpeed": "if_speed",
    "ifDirection": "if_direction",
    "ifStatus": "if_status",
    "ifInOctets": "in_octets",
    "ifInUcastPkts": "in_unicast_packets",
    "ifInMulticastPkts": "in_multicast_packets",
    "ifInBroadcastPkts": "in_broadcast_packets",
    "ifInDiscards": "in_discards",
    "ifInErrors": "in_errors",
    "ifInUnknownProtos": "in_unknown_protos",
    "ifOutOctets": "out_octets",
    "ifOutUcastPkts": "out_unicast_packets",
    "ifOutMulticastPkts": "out_multicast_packets",
    "ifOutBroadcastPkts": "out_broadcast_packets",
    "ifOutDiscards": "out_discards",
    "ifOutErrors": "out_errors",
    "ifPromiscuousMode": "promiscuous",
}
#: tshark's Ethernet record fields → our columns.
ETHERNET = {
    "dot3StatsAlignmentErrors": "alignment_errors",
    "dot3StatsFCSErrors": "fcs_errors",
    "dot3StatsSingleCollisionFrames": "single_collisions",
    "dot3StatsMultipleCollisionFrames": "multiple_collisions",
    "dot3StatsSQETestErrors": "sqe_test_errors",
    "dot3StatsDeferredTransmissions": "deferred_transmissions",
    "dot3StatsLateCollisions": "late_collisions",
    "dot3StatsExcessiveCollisions": "excessive_collisions",
    "dot3StatsInternalMacTransmitErrors": "internal_mac_tx_errors",
    "dot3StatsCarrierSenseErrors": "carrier_sense_errors",
    "dot3StatsFrameTooLongs": "frame_too_longs",
    "dot3StatsInternalMacReceiveErrors": "internal_mac_rx_errors",
    "dot3StatsSymbolErrors": "symbol_errors",
}
COMPARED = (
    "time_received",
    "exporter",
    "observation_domain",
    "source_id",
    *GENERIC.values(),
    *ETHERNET.values(),
)


def _known(value: int) -> int:
    """Agents send all ones for a counter they do not have; netobs stores 0."""
    return 0 if value == ALL_ONES else value


def tshark_samples() -> dict[tuple, dict]:
    """(agent, datagram sequence, source index) → what tshark shows of each counter sample."""
    samples = {}
    for packet in _tshark.dissect(str(CAPTURE), PORT, "sflow"):
        layers = _tshark._get(_tshark._get(packet, "_source"), "layers")
        frame, sflow = _tshark._get(layers, "frame"), _tshark._get(layers, "sflow")
        seconds, frac = _tshark._get(frame, "frame.time_epoch").split(".")
        head = {
            "time_received": int(seconds) * 1000 + int(frac[:3]),
            "exporter": _tshark._get(sflow, "sflow_245.agent"),
            "observation_domain": int(_tshark._get(sflow, "sflow_245.sub_agent_id")),
        }
        seq = int(_tshark._get(sflow, "sflow_245.sequence_number"))
        for _, sample in _tshark._walk(sflow, "Counters sample"):
            kind = int(_tshark._get(sample, "sflow.counters_sample.source_id_type"))
            index = int(_tshark._get(sample, "sflow.counters_sample.source_id_index"))
            ethernet = _tshark._get(sample, "Ethernet interface counters", default=[])
            row = {**head, "source_id": kind << 24 | index, "source_type": kind}
            row.update((ours, _known(int(_tshark._get(ethernet, f"sflow_245.{theirs}", default=0))))
                       for theirs, ours in ETHERNET.items())  # fmt: skip
            samples[(head["exporter"], seq, index)] = row
    return samples


def sfacctd_generic(work: Path) -> dict[tuple, dict]:
    """(agent, datagram sequence, source index) → sfacctd's generic interface counters."""
    log = work / "counters.json"
    conf = work / "sfacctd.conf"
    conf.write_text(
        f"daemonize: false\npcap_savefile: {CAPTURE}\nsfacctd_counter_file: {log}\n"
        f"sfacctd_counter_output: json\nplugins: print\naggregate: src_host\n"
        f"print_output_file: {work / 'flows.json'}\nprint_output: json\n"
    )
    subprocess.run(["sfacctd", "-f", str(conf)], capture_output=True, timeout=60, check=True)
    out = {}
    for line in log.read_text().splitlines():
        event = json.loads(line)
        if event.get("sf_cnt_type") == "sflow_cnt_generic":
            key = (event["peer_ip_src"], event["sflow_seq"], event["source_id_index"])
            out[key] = {ours: _known(event[theirs]) for theirs, ours in GENERIC.items()}
    return out


@pytest.fixture(scope="module")
def expected(tmp_path_factory) -> list[dict]:
    """The interface counter rows both oracles agree the capture holds, in a stable order."""
    for tool in ("tshark", "sfacctd"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} not installed (run scripts/install-services.sh)")
    samples = tshark_samples()
    generic = sfacctd_generic(tmp_path_factory.mktemp("sfacctd"))
    # Every sample about an interface (source class 0) has a generic record; the bridge's
    # own samples (class 2) carry none and give no row.
    assert set(generic) == {k for k, s in samples.items() if s["source_type"] == 0}
    assert len(generic) >= 3
    rows = [
        {**{k: v for k, v in samples[key].items() if k != "source_type"}, **generic[key]} for key in generic
    ]
    return sorted(rows, key=lambda r: (r["time_received"], r["if_index"]))


def stored(store, database="netobs") -> list[dict]:
    cols = ", ".join(f"`{c}`" for c in COMPARED if c not in ("time_received", "exporter"))
    sql = (
        f"SELECT toUnixTimestamp64Milli(time_received) AS time_received, IPv6NumToString(exporter) AS exporter, "
        f"{cols} FROM {database}.interface_counters ORDER BY time_received, if_index"
    )
    rows = store.query_arrow(sql).to_pylist()
    for r in rows:
        r["exporter"] = r["exporter"].removeprefix("::ffff:")
    return rows


def decoded() -> tuple[list[pa.RecordBatch], int, int]:
    """The capture decoded per datagram (capture times), as the transport batches a collector sends."""
    decoder, batches, flows, counters = Decoder(), [], 0, 0
    for d in PcapReader(CAPTURE):
        out = decoder.decode(
            d.payload, d.src_ip, d.timestamp_ns // 1_000_000, session=f"{d.src_ip}:{d.src_port}"
        )
        if len(out.flows):
            batches.append(out.flows.to_arrow())
            flows += len(out.flows)
        if len(out.counters):
            batches.append(out.counters.to_arrow())
            counters += len(out.counters)
    return batches, flows, counters


def count(store, table):
    return store.query_arrow(f"SELECT count() AS n FROM netobs.{table}").to_pylist()[0]["n"]


def wait_until(predicate, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)
    return predicate()


class NoFinalCommit:
    """A Kafka consumer that dies between insert and commit: plans are recorded, offsets never."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def commit_offsets(self, offsets):
        pass

    def commit(self):
        pass


def test_capture_through_kafka_into_chdb_exactly_once(expected, tmp_path, kafka_broker, topic_factory):
    batches, n_flows, n_counters = decoded()
    assert n_counters == len(expected) and n_flows > 0
    topic = topic_factory(partitions=1)
    kcfg = KafkaTransportConfig(
        bootstrap_servers=(kafka_broker.bootstrap,), topic=topic, group_id=f"g-{topic}"
    )
    transport = KafkaTransport(kcfg)
    producer = transport.producer()
    for rb in batches:
        producer.send(rb, key=b"127.0.0.1")
    producer.flush()
    producer.close()
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    store.start()
    cfg = PipelineConfig(max_batch_delay_ms=3000, max_batch_rows=1_000_000)
    try:
        first = Pipeline(cfg, NoFinalCommit(transport.consumer()), store)
        first.start()
        assert wait_until(lambda: first.counters_inserted == n_counters and first.rows_inserted == n_flows)
        first.stop()
        assert stored(store) == expected
        assert (count(store, "flows"), count(store, "interface_counters")) == (n_flows, n_counters)
        # The next owner of the partition replays the recorded batch: same token, no new rows, and
        # it says so (the rows the store dropped count as deduplicated, not inserted).
        second = Pipeline(cfg, transport.consumer(), store)
        second.start()
        assert wait_until(lambda: second.rows_deduplicated == n_flows + n_counters)
        second.stop()
        assert (second.rows_inserted, second.counters_inserted) == (0, 0)
        assert (count(store, "flows"), count(store, "interface_counters")) == (n_flows, n_counters)
        assert (first.bad_messages, second.bad_messages) == (0, 0)
    finally:
        store.stop()


def test_collector_service_embedded(expected, tmp_path):
    transport = InprocessTransport(InprocessTransportConfig(max_batches=64))
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    store.start()
    pipeline = Pipeline(PipelineConfig(max_batch_delay_ms=100), transport.consumer(), store, drain=True)
    pipeline.start()
    collector = UdpCollector(
        CollectorConfig(listeners=(ListenerConfig(listen="127.0.0.1:0"),), batch_max_delay_ms=50),
        transport.producer(),
    )
    collector.start()
    try:
        host, port = collector.addresses[0]
        replay(CAPTURE, f"{host}:{port}", rate=2000)
        assert wait_until(lambda: collector.counters_published == len(expected), 20)
    finally:
        collector.stop()
        pipeline.stop()
    try:
        got = stored(store)
    finally:
        store.stop()
    assert collector.counters_lost == 0
    # Replayed now: the collector's clock, not the capture's; everything else as exported.
    strip = [{k: v for k, v in r.items() if k != "time_received"} for r in expected]
    assert sorted(({k: v for k, v in r.items() if k != "time_received"} for r in got), key=_order) == sorted(
        strip, key=_order
    )


def _order(row: dict) -> tuple:
    return (row["if_index"], row["in_octets"])


def test_legacy_server_stores_the_same_rows(expected, clickhouse_server):
    cfg = StoreConfig(
        type="clickhouse",
        database="netobs_counters",
        clickhouse=ClickHouseStoreConfig(host=clickhouse_server.host, port=clickhouse_server.port),
    )
    store = make_store(cfg)
    store.start()
    try:
        assert store.dialect == "legacy"
        batches, _, _ = decoded()
        counters = [rb for rb in batches if rb.schema.metadata.get(b"netobs.kind") == b"counters"]
        table = conform(pa.Table.from_batches(counters), "counters")
        store.insert(table, target=ddl.INTERFACE_COUNTERS)
        got = store.query_arrow(
            "SELECT toUInt64(time_received) * 1000 AS t, exporter, if_index, in_octets, out_octets, "
            "in_unicast_packets, fcs_errors, if_name FROM netobs_counters.interface_counters ORDER BY t, if_index"
        ).to_pylist()
    finally:
        store.stop()
    # DateTime keeps seconds on pre-19 servers; FixedString(16) keeps the address bytes.
    want = [
        (r["time_received"] // 1000 * 1000, ip_bytes(r["exporter"]), r["if_index"], r["in_octets"], r["out_octets"],
         r["in_unicast_packets"], r["fcs_errors"])
        for r in expected
    ]  # fmt: skip
    assert [
        (g["t"], g["exporter"], g["if_index"], g["in_octets"], g["out_octets"], g["in_unicast_packets"], g["fcs_errors"])
        for g in got
    ] == want  # fmt: skip
    assert all(g["if_name"].startswith("ovscaph") for g in got)
