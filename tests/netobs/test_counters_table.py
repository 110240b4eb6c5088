"""Interface counters: the table's DDL variants, the wire kind, the pipeline's dispatch, and
per-interval deltas (wrap, reset) computed by the real engine (chdb)."""

from __future__ import annotations

import json
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from collectors._sflow_counters import ETHERNET_NAMES
from collectors.counters import COUNTER_NAMES, CounterBatch
from collectors.decoder import Decoder
from netobs import counter_rates, ddl, schema, wire
from netobs.batch import FlowBatch, conform, ip_bytes
from netobs.config import InprocessTransportConfig
from netobs.store import StoreUnavailable
from netobs.transport.deadletter import DirectoryDeadLetters
from netobs.transport.inprocess import InprocessTransport
from netobs_app.settings import Settings
from pipeline import Pipeline
from pipeline.config import EnrichConfig, PipelineConfig
from pipeline.enrich import make_enricher
from tests.collectors import _builders as b

T0 = 1_796_017_000_000  # ms
GBIT = 1_000_000_000


# ---- schema and DDL ---------------------------------------------------------------------------
def test_decoder_rows_follow_the_schema():
    assert COUNTER_NAMES == tuple(c.name for c in schema.COUNTER_COLLECT_COLUMNS)
    assert tuple(ETHERNET_NAMES) == schema.ETHERNET_COUNTERS
    assert schema.COUNTER_NAMES[-2:] == ("exporter_node", "exporter_center")
    assert len(set(schema.COUNTER_NAMES)) == len(schema.COUNTER_NAMES)


def test_single_node_ddl():
    (stmt,) = ddl.create_table("netobs", ddl.COUNTERS_TABLE, retention_days=30)
    assert stmt.startswith("CREATE TABLE IF NOT EXISTS `netobs`.`interface_counters` (")
    assert "ENGINE = MergeTree\nPARTITION BY toDate(time_received)" in stmt
    assert (
        "ORDER BY (toStartOfHour(time_received), exporter, observation_domain, if_index, time_received)"
        in stmt
    )
    assert "TTL toDateTime(time_received) + INTERVAL 30 DAY DELETE" in stmt
    assert "non_replicated_deduplication_window = 1000" in stmt
    assert "`exporter` IPv6" in stmt and "`if_name` LowCardinality(String)" in stmt
    assert "`in_octets` UInt64 CODEC(T64, ZSTD(1))" in stmt
    for c in schema.COUNTER_COLUMNS:
        assert f"`{c.name}` " in stmt


def test_cluster_and_replicated_ddl():
    local, dist = ddl.create_table("netobs", ddl.COUNTERS_TABLE, retention_days=7, cluster="bank")
    assert "`netobs`.`interface_counters_local` ON CLUSTER 'bank'" in local
    assert (
        "ReplicatedMergeTree('/clickhouse/tables/{shard}/netobs/interface_counters_local', '{replica}')"
        in local
    )
    assert "INTERVAL 7 DAY" in local
    assert (
        "ENGINE = Distributed('bank', 'netobs', 'interface_counters_local', rand())" in dist
        and "AS `netobs`.`interface_counters_local`" in dist
    )
    assert counter_rates.create_view("netobs", "bank").startswith(
        "CREATE OR REPLACE VIEW `netobs`.`interface_counter_rates` ON CLUSTER 'bank' AS\nSELECT"
    )
    (rep,) = ddl.create_table("n", ddl.COUNTERS_TABLE, dialect="legacy", replicated=True)
    assert "ReplicatedMergeTree('/clickhouse/tables/n/interface_counters', 'r1')" in rep


def test_legacy_ddl_types():
    (stmt,) = ddl.create_table("netobs", ddl.COUNTERS_TABLE, retention_days=30, dialect="legacy")
    for modern in ("LowCardinality", "IPv6", "DateTime64", "CODEC", "TTL", "COMMENT", "SETTINGS"):
        assert modern not in stmt
    assert "`exporter` FixedString(16)" in stmt and "`time_received` DateTime" in stmt
    assert "PARTITION BY toYYYYMMDD(time_received)" in stmt


def test_add_missing_counter_columns():
    existing = {c.name: c.ch_type for c in schema.COUNTER_COLUMNS if c.name != "in_unknown_protos"}
    alters = ddl.add_missing_columns(
        "netobs", existing, table=ddl.INTERFACE_COUNTERS, columns=schema.COUNTER_COLUMNS
    )
    assert alters == [
        "ALTER TABLE `netobs`.`interface_counters` ADD COLUMN IF NOT EXISTS `in_unknown_protos` UInt32 "
        "AFTER `in_broadcast_packets`"
    ]
    existing = {c.name: c.ch_type for c in schema.COUNTER_COLUMNS} | {"in_octets": "UInt32"}
    with pytest.raises(ddl.SchemaDrift, match="interface_counters.in_octets"):
        ddl.add_missing_columns(
            "netobs", existing, table=ddl.INTERFACE_COUNTERS, columns=schema.COUNTER_COLUMNS
        )


@pytest.fixture
def store(store_factory):
    return store_factory(interface_counters_retention_days=12)


def test_converge_creates_the_table_with_its_ttl(store):
    store.start()  # idempotent
    (row,) = store.query_arrow(
        "SELECT engine_full FROM system.tables WHERE database = 'netobs' AND name = 'interface_counters'"
    ).to_pylist()
    assert "toIntervalDay(12)" in row["engine_full"]
    assert list(store._columns_of("interface_counters")) == list(schema.COUNTER_NAMES)


# ---- decoder → batch → wire -------------------------------------------------------------------
def _generic(if_index, **v):
    """A generic interface record (0:1) with every counter distinct, ``v`` overriding."""
    values = dict(
        if_index=if_index, if_type=6, speed=GBIT, direction=1, status=3, in_octets=10_000, in_ucast=100,
        in_mcast=7, in_bcast=3, in_discards=2, in_errors=1, in_unknown=5, out_octets=20_000, out_ucast=200,
        out_mcast=9, out_bcast=0xFFFFFFFF, out_discards=4, out_errors=6, promiscuous=1,
    )  # fmt: skip
    values.update(v)
    return b._tlv(1, struct.pack(">IIQIIQIIIIIIQIIIIII", *values.values()))


def test_decoded_counters_keep_each_packet_counter():
    d = Decoder()
    dgram = b.sflow_datagram([b.counter_sample([_generic(7)], source=(0, 7))], agent="192.0.2.5")
    out = d.decode(dgram, "192.0.2.5", T0)
    row = next(out.counters.rows())
    assert (row["in_unicast_packets"], row["in_multicast_packets"], row["in_broadcast_packets"]) == (
        100,
        7,
        3,
    )
    assert row["in_packets"] == 110 and row["in_unknown_protos"] == 5 and row["promiscuous"] == 1
    assert (row["out_unicast_packets"], row["out_multicast_packets"], row["out_broadcast_packets"]) == (
        200,
        9,
        0,
    )
    assert row["out_packets"] == 209  # the unknown (all ones) broadcast counter counts as 0
    assert (row["in_errors"], row["in_discards"], row["out_errors"], row["out_discards"]) == (1, 2, 6, 4)


def counter_batch(rows: list[dict]) -> CounterBatch:
    n = len(rows)
    cols = {}
    for name, dtype in ((c.name, c.numpy) for c in schema.COUNTER_COLLECT_COLUMNS):
        if any(name in r for r in rows):
            default = b"" if dtype.kind == "V" else "" if dtype == np.dtype(object) else 0
            cols[name] = np.array([r.get(name, default) for r in rows], dtype=dtype)
    cols.setdefault("type", np.array(["sflow"] * n, dtype=object))
    return CounterBatch(cols, n)


def test_counter_batches_travel_as_their_own_kind():
    cb = counter_batch(
        [{"time_received": T0, "exporter": ip_bytes("10.0.0.1"), "if_index": 3, "in_octets": 9}]
    )
    rb = cb.to_arrow()
    assert schema.kind_of(rb) == schema.COUNTERS and rb.schema.names == list(COUNTER_NAMES)
    data = wire.encode(rb)
    assert data[4:7] == b"\x01\x01\x01"  # format 1; kind 1 (counters), counter schema version 1
    back = wire.decode(data)
    assert schema.kind_of(back) == schema.COUNTERS
    assert back.column("in_octets").to_pylist() == [9] and back.column("if_index").to_pylist() == [3]
    flows = wire.encode(FlowBatch({"packets": np.ones(1, "uint64")}).to_arrow())
    assert flows[4:7] == b"\x01\x00" + bytes([schema.SCHEMA_VERSION])  # kind 0, as they always were
    assert schema.kind_of(wire.decode(flows)) == schema.FLOWS


def test_consumers_refuse_kinds_and_versions_they_do_not_know():
    data = wire.encode(counter_batch([{"if_index": 1}]).to_arrow())
    # A consumer from before counters existed compared the field with its flow schema version.
    assert struct.unpack_from("!H", data, 5)[0] > schema.SCHEMA_VERSION
    with pytest.raises(wire.WireError, match="unknown record kind 7"):
        wire.decode(data[:5] + b"\x07\x01" + data[7:])
    with pytest.raises(wire.WireError, match="counters schema version 2 is newer"):
        wire.decode(data[:5] + b"\x01\x02" + data[7:])
    bogus = pa.RecordBatch.from_pylist([{"x": 1}]).replace_schema_metadata({schema.KIND_KEY: b"bogus"})
    with pytest.raises(wire.WireError, match="unknown kind 'bogus'"):
        wire.encode(bogus)


def test_conform_fills_columns_an_older_producer_lacked():
    rb = counter_batch([{"if_index": 4, "in_octets": 5}]).to_arrow()
    old = pa.Table.from_batches([rb]).drop_columns(["in_unknown_protos", "promiscuous"])
    table = conform(old, schema.COUNTERS)
    assert table.schema.names == list(schema.COUNTER_NAMES)
    assert table.column("in_unknown_protos").to_pylist() == [0] and table.column("in_octets").to_pylist() == [
        5
    ]


# ---- the pipeline dispatches by kind ----------------------------------------------------------
def _flows(n):
    return FlowBatch(
        {"time_received": np.full(n, int(time.time() * 1000), "int64"), "packets": np.ones(n, "uint64")}
    ).to_arrow()


def _counters(n, if_index=1):
    now = int(time.time() * 1000)
    return counter_batch(
        [
            {"time_received": now + i, "exporter": ip_bytes("192.0.2.9"), "if_index": if_index}
            for i in range(n)
        ]
    ).to_arrow()


def counts(store):
    sql = (
        "SELECT (SELECT count() FROM netobs.flows) AS f, (SELECT count() FROM netobs.interface_counters) AS c"
    )
    return store.query_arrow(sql).to_pylist()[0]


def run(pipeline, transport, *batches):
    pipeline.start()
    producer = transport.producer()
    for rb in batches:
        producer.send(rb, b"e")
    pipeline.stop()


def test_flows_and_counters_land_in_their_tables(store):
    t = InprocessTransport(InprocessTransportConfig(max_batches=8))
    p = Pipeline(PipelineConfig(max_batch_delay_ms=50), t.consumer(), store, drain=True)
    run(p, t, _flows(5), _counters(3), _flows(2), _counters(1, if_index=2))
    assert counts(store) == {"f": 7, "c": 4}
    assert (p.rows_inserted, p.counters_inserted, p.bad_messages) == (7, 4, 0)


def test_unknown_kind_and_rejected_counters_are_dead_lettered(store, tmp_path):
    t = InprocessTransport(InprocessTransportConfig(max_batches=8))
    letters = DirectoryDeadLetters(tmp_path / "dlq")
    p = Pipeline(PipelineConfig(max_batch_delay_ms=50), t.consumer(), store, drain=True, dead_letters=letters)
    store.execute("DROP TABLE netobs.interface_counters")  # the store now rejects counter inserts
    bogus = _counters(2)
    bogus = bogus.replace_schema_metadata({**bogus.schema.metadata, schema.KIND_KEY: b"bogus"})
    run(p, t, _flows(3), _counters(2), bogus)
    assert counts_flows(store) == 3 and p.counters_inserted == 0
    assert (p.bad_messages, p.dead_lettered) == (2, 2)
    reasons = sorted(json.loads(path.read_text())["reason"] for path in (tmp_path / "dlq").glob("*.json"))
    assert reasons == ["rejected_by_store", "unknown_kind"]
    assert len(list((tmp_path / "dlq").glob("*.nobs"))) == 2


def test_counters_with_unreadable_columns_are_dead_lettered(store, tmp_path):
    t = InprocessTransport(InprocessTransportConfig(max_batches=8))
    letters = DirectoryDeadLetters(tmp_path / "dlq")
    p = Pipeline(PipelineConfig(max_batch_delay_ms=50), t.consumer(), store, drain=True, dead_letters=letters)
    garbled = pa.RecordBatch.from_pydict({"if_index": ["not a number"]})
    garbled = garbled.replace_schema_metadata({schema.KIND_KEY: b"counters"})
    run(p, t, garbled, _counters(2), _flows(1))
    assert counts(store) == {"f": 1, "c": 2}  # only the unreadable message goes aside
    (meta,) = [json.loads(path.read_text()) for path in (tmp_path / "dlq").glob("*.json")]
    assert meta["reason"] == "unreadable_columns" and "ArrowInvalid" in meta["error"]
    assert (p.dead_lettered, p.bad_messages, p.rows_inserted, p.counters_inserted) == (1, 1, 1, 2)


def counts_flows(store):
    return store.query_arrow("SELECT count() AS n FROM netobs.flows").to_pylist()[0]["n"]


def test_counters_name_their_exporter_node_and_center(store):
    inventory = Path(__file__).resolve().parent.parent / "testdata" / "inventory.yaml"
    enricher = make_enricher(Settings(enrich=EnrichConfig(inventory=inventory)))
    t = InprocessTransport(InprocessTransportConfig(max_batches=8))
    p = Pipeline(
        PipelineConfig(max_batch_delay_ms=50),
        t.consumer(),
        store,
        drain=True,
        counter_transform=enricher.enrich_exporters,
    )
    now = int(time.time() * 1000)
    rb = counter_batch(
        [
            {"time_received": now, "exporter": ip_bytes(addr), "if_index": i}
            for i, addr in enumerate(("198.51.100.31", "192.0.2.11", "192.0.2.99"))
        ]
    ).to_arrow()
    run(p, t, rb)
    got = store.query_arrow(
        "SELECT exporter_node AS n, exporter_center AS c FROM netobs.interface_counters ORDER BY if_index"
    ).to_pylist()
    assert [(g["n"], g["c"]) for g in got] == [("node-9", "dc3"), ("node-1", "dc1"), ("", "")]


class CountersDownOnce:
    """The real store, refusing the first interface-counter insert as unavailable."""

    def __init__(self, inner):
        self.inner = inner
        self.refused = 0
        self.lock = threading.Lock()

    def insert(self, table, token=None, target="flows"):
        with self.lock:
            if target == ddl.INTERFACE_COUNTERS and not self.refused:
                self.refused += 1
                raise StoreUnavailable("simulated outage of one insert")
        self.inner.insert(table, token, target)


def test_a_retried_batch_does_not_insert_its_flows_twice(store):
    t = InprocessTransport(InprocessTransportConfig(max_batches=8))
    flaky = CountersDownOnce(store)
    p = Pipeline(
        PipelineConfig(max_batch_delay_ms=20, max_batch_rows=10_000), t.consumer(), flaky, drain=True
    )
    p.start()
    producer = t.producer()
    producer.send(_flows(4), b"e")
    producer.send(_counters(2), b"e")
    deadline = time.monotonic() + 20
    while p.counters_inserted < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    p.stop()
    assert flaky.refused == 1
    assert counts(store) == {"f": 4, "c": 2}  # in-process batches carry no token: no second flow insert


# ---- deltas, wrap and reset on the real engine ------------------------------------------------
M32, M64 = 1 << 32, 1 << 64


def snapshots(store, series: list[dict], speed=10 * GBIT, if_index=5, step_s=10):
    rows = [
        {
            "time_received": T0 + i * step_s * 1000,
            "exporter": ip_bytes("10.0.0.1"),
            "if_index": if_index,
            "source_id": if_index,
            "if_speed": speed,
            "if_name": f"eth{if_index}",
            **values,
        }
        for i, values in enumerate(series)
    ]
    store.insert(pa.Table.from_batches([counter_batch(rows).to_arrow()]), target=ddl.INTERFACE_COUNTERS)


def rates(store, **kw):
    return store.query_arrow(counter_rates.rates_sql("netobs", **kw)).to_pylist()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, before, after, delta, reset",
    [
        ("in_octets", 1_000, 126_000, 125_000, 0),  # plain increase
        ("in_octets", M64 - 500, 300, 800, 0),  # 64-bit wrap
        ("in_octets", M32 - 1_000, 500, 500, 1),  # octets are 64-bit (ifHCInOctets): a reset
        ("in_octets", 5_000_000_000, 700, 700, 1),  # reset: the new value, not 2^64 - 5e9
        ("in_unicast_packets", M32 - 10, 5, 15, 0),  # 32-bit wrap of a packet counter
        ("in_unicast_packets", 3_000_000_000, 5, 5, 0),  # too far for one interval: that counter restarted
        ("in_errors", 9, 2, 2, 0),
        ("out_discards", 4, 4, 0, 0),
    ],
)
def test_deltas_handle_wrap_and_reset(store, name, before, after, delta, reset):
    snapshots(store, [{name: before}, {name: after}])
    (row,) = rates(store)
    assert (row[name], row["reset"], row["interval_s"]) == (delta, reset, 10.0)


def test_an_agent_reset_resets_every_delta_of_the_interval(store):
    snapshots(
        store,
        [
            {"in_octets": 9_000_000, "out_octets": 4_000_000, "in_errors": 5, "in_unicast_packets": 900},
            {"in_octets": 1_000, "out_octets": 2_000, "in_errors": 7, "in_unicast_packets": 3},
        ],
    )
    (row,) = rates(store)
    assert row["reset"] == 1
    assert (row["in_octets"], row["out_octets"], row["in_errors"], row["in_packets"]) == (1_000, 2_000, 7, 3)


def test_unknown_speed_makes_every_decrease_a_reset(store):
    snapshots(store, [{"in_octets": M64 - 10}, {"in_octets": 20}], speed=0)
    (row,) = rates(store)
    assert (row["in_octets"], row["reset"], row["in_utilisation"]) == (20, 1, None)


def test_rates_utilisation_and_intervals(store):
    # 10 Gbit/s link, 10 s polling: 1.25 GB in an interval is 1 Gbit/s, 10% utilisation.
    series = [
        {"in_octets": 0, "out_octets": 0, "in_unicast_packets": 0, "in_multicast_packets": 0},
        {"in_octets": 1_250_000_000, "out_octets": 125_000_000, "in_unicast_packets": 900, "in_multicast_packets": 100},
        {"in_octets": 2_500_000_000, "out_octets": 250_000_000, "in_unicast_packets": 1900, "in_multicast_packets": 100},
    ]  # fmt: skip
    snapshots(store, series)
    snapshots(store, series[:2], if_index=6, speed=GBIT)
    got = rates(store)
    assert [(r["if_index"], r["if_name"]) for r in got] == [(5, "eth5"), (5, "eth5"), (6, "eth6")]
    first = got[0]
    assert (first["in_bps"], first["out_bps"], first["in_packets"], first["in_pps"]) == (
        1e9,
        1e8,
        1000,
        100.0,
    )
    assert (first["in_utilisation"], first["out_utilisation"]) == (0.1, 0.01)
    assert got[2]["in_utilisation"] == 1.0  # the same traffic fills a 1 Gbit/s link
    # The interval ending at start is computed from the snapshot before it (lookback).
    later = rates(store, start=T0 + 15_000, exporter="10.0.0.1", if_index=5)
    assert [(r["time"].timestamp() * 1000, r["in_octets"]) for r in later] == [(T0 + 20_000, 1_250_000_000)]
    assert rates(store, start=T0 + 15_000, lookback_s=1) == []
    assert rates(store, end=T0 + 15_000, if_index=5) == [got[0]]
    # The same from the parameterized view that converge creates, as netobs query / Grafana use it.
    view = store.query_arrow(
        "SELECT * FROM netobs.interface_counter_rates(start='2026-11-30 05:36:55', end='2026-12-01 00:00:00') "
        "WHERE if_index = 5"
    ).to_pylist()
    assert view == later


def test_the_view_is_replaced_when_its_definition_changes(store):
    stale = counter_rates.create_view("netobs").replace("lagInFrame(`fcs_errors`)", "lagInFrame(`in_errors`)")
    store.execute(stale)
    store.start()  # converge again
    (row,) = store.query_arrow(
        "SELECT create_table_query AS q FROM system.tables WHERE database = 'netobs' AND name = 'interface_counter_rates'"
    ).to_pylist()
    assert "lagInFrame(fcs_errors)" in row["q"]  # the stale definition read in_errors there
