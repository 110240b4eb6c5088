"""The walking skeleton, for real: Open vSwitch → collector → Kafka → pipeline → chdb.

A live OVS bridge (userspace) with pods in network namespaces exports sFlow and IPFIX to
netobs's collector; batches travel through a real Kafka broker (KRaft, started by the
test session) to the pipeline, which inserts them into the embedded ClickHouse engine.
The pod-to-pod flows must be queryable with the right addresses, ports and counts.
"""

from __future__ import annotations

import time

import pytest

from collectors.config import CollectorConfig, ListenerConfig
from collectors.service import UdpCollector
from netobs.config import ChdbStoreConfig, KafkaTransportConfig, StoreConfig
from netobs.store import make_store
from netobs.transport.kafka import KafkaTransport
from pipeline import Pipeline
from pipeline.config import PipelineConfig

pytestmark = pytest.mark.integration

FLOWS_BY_TUPLE = """
SELECT type, direction, count() AS records, sum(packets) AS packets, sum(bytes) AS bytes,
       any(sampling_rate) AS rate
FROM netobs.flows
WHERE src_addr = toIPv6('{src}') AND dst_addr = toIPv6('{dst}') AND proto = {proto}
  AND src_port = {sport} AND dst_port = {dport}
GROUP BY type, direction ORDER BY type, direction
"""


def wait_until(predicate, timeout_s=30.0, every=0.25):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


@pytest.fixture
def skeleton(tmp_path, kafka_broker, topic_factory):
    """Collector → Kafka → pipeline → chdb, all started; yields (collector, pipeline, store)."""
    topic = topic_factory(partitions=3)
    kcfg = KafkaTransportConfig(
        bootstrap_servers=(kafka_broker.bootstrap,), topic=topic, group_id=f"g-{topic}"
    )
    transport = KafkaTransport(kcfg)
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    store.start()
    pipeline = Pipeline(PipelineConfig(max_batch_delay_ms=200), transport.consumer(), store)
    pipeline.start()
    collector = UdpCollector(
        CollectorConfig(
            listeners=(ListenerConfig(listen="127.0.0.1:0"), ListenerConfig(listen="127.0.0.1:0")),
            batch_max_delay_ms=100,
        ),
        transport.producer(),
    )
    collector.start()
    yield collector, pipeline, store
    collector.stop()
    pipeline.stop()
    store.stop()


def query(store, traffic, proto):
    sql = FLOWS_BY_TUPLE.format(
        src=traffic.src_ip, dst=traffic.dst_ip, proto=proto, sport=traffic.src_port, dport=traffic.dst_port
    )
    return {(r["type"], r["direction"]): r for r in store.query_arrow(sql).to_pylist()}


def test_pod_flows_reach_clickhouse_through_kafka(ovs_lab, skeleton):
    collector, pipeline, store = skeleton
    sflow_port, ipfix_port = (port for _, port in collector.addresses)
    ovs_lab.enable_sflow(sflow_port, sampling=1, header=128)
    ovs_lab.enable_ipfix(ipfix_port, sampling=1, cache_active_timeout=2)
    time.sleep(0.5)
    tcp = ovs_lab.tcp_transfer("pod1", "pod2", port=5201, nbytes=200_000)
    udp = ovs_lab.udp_send("pod3", "pod1", port=5353, count=20, size=300)
    ovs_lab.flush_exports()
    ovs_lab.disable_exports()  # forces the IPFIX cache out

    def landed():
        got = query(store, tcp, 6)
        return any(k[0] == "sflow" for k in got) and any(k[0] == "ipfix" for k in got)

    assert wait_until(landed), f"flows did not land; collector published {collector.published}"
    assert wait_until(lambda: pipeline.rows_inserted == collector.published, 15)
    assert collector.lost == 0 and pipeline.bad_messages == 0

    got = query(store, tcp, 6)
    # sFlow, sampling 1: one sample per packet the bridge received from pod1 for this connection.
    sflow = got[("sflow", "unknown")]
    assert sflow["rate"] == 1
    assert sflow["packets"] == tcp.sent_packets
    assert sflow["bytes"] >= tcp.sent_bytes  # frames: payload + Ethernet/IP/TCP headers (+ FCS)
    # Bridge IPFIX reports every flow twice (ingress and egress observation); each side counts all packets.
    ipfix_dirs = {d: r for (t, d), r in got.items() if t == "ipfix"}
    assert set(ipfix_dirs) == {"ingress", "egress"}
    for r in ipfix_dirs.values():
        assert r["packets"] == tcp.sent_packets
        assert tcp.sent_bytes < r["bytes"] < tcp.sent_bytes + 100 * tcp.sent_packets

    got = query(store, udp, 17)
    assert got[("sflow", "unknown")]["packets"] == udp.sent_packets == 20
    assert got[("sflow", "unknown")]["bytes"] == 20 * (300 + 8 + 20 + 14 + 4)  # payload+UDP+IP+Ethernet+FCS
    for direction in ("ingress", "egress"):
        assert got[("ipfix", direction)]["packets"] == 20
        assert got[("ipfix", direction)]["bytes"] == 20 * (300 + 8 + 20)  # IP octets
