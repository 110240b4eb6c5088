"""Rollup and exporter-health DDL: expected SQL, and execution with data on the real chdb engine."""

import dataclasses
import time

import numpy as np
import pyarrow as pa
import pytest

from netobs import ddl
from netobs.batch import FlowBatch, ip_bytes
from netobs.config import ChdbStoreConfig, StoreConfig
from netobs.ddl import FLOWS_TABLE
from netobs.store import make_store

MODEL_COLUMNS = (
    "event_start",
    "event_end",
    "observer",
    "counted",
    "count_reason",
    "initiator",
    "role_method",
    "role_confidence",
    "biflow",
    "biflow_direction",
)

EXPECTED_1M = """CREATE TABLE IF NOT EXISTS `n`.`flows_1m` (
    `time` DateTime('UTC') COMMENT 'Start of the bucket.',
    `src_center` LowCardinality(String),
    `dst_center` LowCardinality(String),
    `src_tenant` LowCardinality(String),
    `dst_tenant` LowCardinality(String),
    `src_zone` LowCardinality(String),
    `dst_zone` LowCardinality(String),
    `dst_port` UInt16,
    `proto` UInt8,
    `type` LowCardinality(String),
    `direction` LowCardinality(String),
    `initiator` LowCardinality(String),
    `bytes` Float64 COMMENT 'Bytes scaled by the sampling rate.',
    `packets` Float64 COMMENT 'Packets scaled by the sampling rate.',
    `raw_bytes` Float64 COMMENT 'Bytes as exported (unscaled).',
    `raw_packets` Float64 COMMENT 'Packets as exported (unscaled).',
    `flows` Float64 COMMENT 'Counted flow records (a record spread over buckets counts in shares).'
)
ENGINE = SummingMergeTree((bytes, packets, raw_bytes, raw_packets, flows))
PARTITION BY toYYYYMM(time)
ORDER BY (time, src_center, dst_center, src_tenant, dst_tenant, src_zone, dst_zone, dst_port, proto, type, direction, initiator)
TTL time + INTERVAL 30 DAY DELETE
SETTINGS non_replicated_deduplication_window = 1000
COMMENT 'netobs rollup v2'"""

EXPECTED_1M_MV = """CREATE MATERIALIZED VIEW IF NOT EXISTS `n`.`flows_1m_mv` TO `n`.`flows_1m` AS
WITH
    toUnixTimestamp64Milli(f.event_end) AS _ee,
    toUnixTimestamp64Milli(f.event_start) AS _es,
    if(_ee > _es, intDiv(_ee - 1, 60000), intDiv(_ee, 60000)) AS _last,
    if(_ee > _es, (least(_ee, (_m + 1) * 60000) - greatest(_es, _m * 60000)) / (_ee - _es), 1) AS _w
SELECT
    toStartOfMinute(toDateTime(intDiv(_m * 60000, 1000), 'UTC')) AS `time`,
    `src_center`,
    `dst_center`,
    `src_tenant`,
    `dst_tenant`,
    `src_zone`,
    `dst_zone`,
    `dst_port`,
    `proto`,
    `type`,
    `direction`,
    `initiator`,
    sum(f.bytes * if(f.sampling_rate = 0, 1, f.sampling_rate) * _w) AS `bytes`,
    sum(f.packets * if(f.sampling_rate = 0, 1, f.sampling_rate) * _w) AS `packets`,
    sum(f.bytes * _w) AS `raw_bytes`,
    sum(f.packets * _w) AS `raw_packets`,
    sum(_w) AS `flows`
FROM `n`.`flows` AS f
ARRAY JOIN range(toUInt64(intDiv(_es, 60000)), toUInt64(_last) + 1) AS _m
WHERE counted = 1
GROUP BY time, src_center, dst_center, src_tenant, dst_tenant, src_zone, dst_zone, dst_port, proto, type, direction, initiator"""


def rollup(name):
    return next(r for r in ddl.ROLLUPS if r.table == name)


def test_one_minute_rollup_sql():
    assert ddl.create_rollup("n", rollup("flows_1m"), retention_days=30) == [EXPECTED_1M, EXPECTED_1M_MV]


EXPECTED_1H_MV = """CREATE MATERIALIZED VIEW IF NOT EXISTS `n`.`flows_1h_mv` TO `n`.`flows_1h` AS
SELECT
    toStartOfHour(f.time) AS `time`,
    `src_center`,
    `dst_center`,
    `src_tenant`,
    `dst_tenant`,
    `src_zone`,
    `dst_zone`,
    `dst_port`,
    `proto`,
    `type`,
    `direction`,
    `initiator`,
    sum(f.bytes) AS `bytes`,
    sum(f.packets) AS `packets`,
    sum(f.raw_bytes) AS `raw_bytes`,
    sum(f.raw_packets) AS `raw_packets`,
    sum(f.flows) AS `flows`
FROM `n`.`flows_1m` AS f
GROUP BY time, src_center, dst_center, src_tenant, dst_tenant, src_zone, dst_zone, dst_port, proto, type, direction, initiator"""


def test_hourly_rollup_table_differs_only_in_name_and_its_view_chains_the_minute_rollup():
    table, mv = ddl.create_rollup("n", rollup("flows_1h"), retention_days=30)
    assert table == EXPECTED_1M.replace("flows_1m", "flows_1h")
    assert mv == EXPECTED_1H_MV  # fed from flows_1m's inserts (already filtered), not every flow again


def test_no_ttl_when_retention_is_zero():
    (table, _) = ddl.create_rollup("n", rollup("flows_1h"))
    assert "TTL" not in table


def test_cluster_variant_is_replicated_local_plus_distributed():
    local, dist, mv = ddl.create_rollup("n", rollup("flows_1m"), cluster="c")
    assert "CREATE TABLE IF NOT EXISTS `n`.`flows_1m_local` ON CLUSTER 'c'" in local
    assert (
        "ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/n/flows_1m_local', '{replica}', "
        "(bytes, packets, raw_bytes, raw_packets, flows))" in local
    )
    assert dist.endswith("ENGINE = Distributed('c', 'n', 'flows_1m_local', rand())")
    assert "TO `n`.`flows_1m_local` AS" in mv and "FROM `n`.`flows_local` AS f" in mv


def test_exporter_health_sql():
    table, mv = ddl.create_rollup("n", rollup("exporter_health_1m"))
    assert "ENGINE = AggregatingMergeTree\n" in table
    assert "`sampling_rates` SimpleAggregateFunction(groupUniqArrayArray, Array(UInt32))" in table
    assert "ORDER BY (time, exporter, type, observation_domain)" in table
    assert "WHERE" not in mv  # health counts every record, both directions


def test_single_server_replicated_flows_table():
    (stmt,) = ddl.create_flows("n", dialect="legacy", replicated=True)
    assert "ENGINE = ReplicatedMergeTree('/clickhouse/tables/n/flows', 'r1')" in stmt
    assert "SETTINGS" not in stmt  # 18.16 knows no non_replicated_deduplication_window


# ---- execution on chdb ---------------------------------------------------------------------------
@pytest.fixture
def store(store_factory):
    return store_factory(rollup_1m_retention_days=7)


def flows(now_ms):
    rows = [  # type, direction, sampling_rate, bytes, packets, dst_port, exporter, counted
        ("ipfix", "ingress", 0, 1000, 2, 443, "192.0.2.1", 1),
        ("ipfix", "egress", 0, 1000, 2, 443, "192.0.2.1", 0),  # the same flow, seen leaving the bridge
        ("sflow", "ingress", 100, 10, 1, 443, "192.0.2.2", 1),
        ("sflow", "ingress", 100, 20, 1, 443, "192.0.2.2", 1),
        ("sflow", "ingress", 100, 40, 1, 443, "192.0.2.3", 0),  # the same packets, sampled on the other node
        ("sflow", "unknown", 400, 5, 1, 5432, "192.0.2.2", 1),
    ]
    n = len(rows)
    cols = list(zip(*rows, strict=True))
    table = pa.Table.from_batches(
        [
            FlowBatch(
                {
                    "time_received": np.full(n, now_ms, dtype="int64"),
                    "flow_start": np.full(n, now_ms - 1000, dtype="int64"),
                    "flow_end": np.full(n, now_ms - 1000, dtype="int64"),
                    "type": np.array(cols[0], dtype=object),
                    "direction": np.array(cols[1], dtype=object),
                    "sampling_rate": np.array(cols[2], dtype="uint32"),
                    "bytes": np.array(cols[3], dtype="uint64"),
                    "packets": np.array(cols[4], dtype="uint64"),
                    "dst_port": np.array(cols[5], dtype="uint16"),
                    "proto": np.full(n, 6, dtype="uint8"),
                    "exporter": np.array([ip_bytes(a) for a in cols[6]], dtype="V16"),
                    "src_center": np.array(["dc1"] * n, dtype=object),
                    "dst_center": np.array(["dc3"] * n, dtype=object),
                    "src_tenant": np.array(["retail"] * n, dtype=object),
                    "dst_tenant": np.array(["core-banking"] * n, dtype=object),
                }
            ).to_arrow()
        ]
    )
    return with_model(table, counted=cols[7], start=[now_ms - 1000] * n, end=[now_ms - 1000] * n)


def with_model(table, counted, start, end):
    """``table`` with the counting model's columns as the pipeline would have filled them."""
    ts = pa.timestamp("ms", tz="UTC")
    for name, arr in (
        ("counted", pa.array(counted, pa.uint8())),
        ("event_start", pa.array(start, pa.int64()).cast(ts)),
        ("event_end", pa.array(end, pa.int64()).cast(ts)),
    ):
        table = table.set_column(table.schema.get_field_index(name), pa.field(name, arr.type, False), arr)
    return table


ROLLUP_QUERY = (
    "SELECT type, direction, dst_port, sum(bytes) AS b, sum(packets) AS p, sum(raw_bytes) AS rb, "
    "sum(flows) AS f FROM netobs.{t} WHERE src_center = 'dc1' AND dst_tenant = 'core-banking' "
    "GROUP BY type, direction, dst_port ORDER BY type, direction, dst_port"
)
EXPECTED_ROWS = [
    {"type": "ipfix", "direction": "ingress", "dst_port": 443, "b": 1000, "p": 2, "rb": 1000, "f": 1},
    {"type": "sflow", "direction": "ingress", "dst_port": 443, "b": 3000, "p": 200, "rb": 30, "f": 2},
    {"type": "sflow", "direction": "unknown", "dst_port": 5432, "b": 2000, "p": 400, "rb": 5, "f": 1},
]


@pytest.mark.parametrize("table", ["flows_1m", "flows_1h"])
def test_rollups_scale_count_once_and_deduplicate(store, table):
    now = int(time.time() * 1000)
    store.insert(flows(now), token="t:0:0-4")
    store.insert(flows(now), token="t:0:0-4")  # a replay: neither flows nor rollups change
    store.execute(f"OPTIMIZE TABLE netobs.{table} FINAL")
    assert store.query_arrow(ROLLUP_QUERY.format(t=table)).to_pylist() == EXPECTED_ROWS
    assert store.query_arrow("SELECT count() AS n FROM netobs.flows").column("n").to_pylist() == [6]


def test_one_insert_writes_one_row_per_rollup_key_without_optimize_on_insert(store):
    """The embedded store inserts flows with ``optimize_on_insert = 0``: each view's GROUP BY must
    already give one row per key of its target's ORDER BY (records 3 and 4 share every key)."""
    now = int(time.time() * 1000)
    store.insert(flows(now), token="t:0:0-5")
    for r in ddl.ROLLUPS:
        keys = ", ".join(("time", *r.keys, *(n for n, _, _ in r.computed)))
        got = store.query_arrow(f"SELECT count() AS n, uniqExact(tuple({keys})) AS u FROM netobs.{r.table}")
        n, u = got.column("n")[0].as_py(), got.column("u")[0].as_py()
        assert n == u > 0, r.table


def test_a_record_is_spread_over_the_minutes_of_its_event_time_not_its_receive_time(store):
    t0 = (int(time.time()) // 60 - 30) * 60_000  # a minute boundary, half an hour ago
    table = flows(t0 + 600_000).slice(0, 1)  # received ten minutes later
    # 1000 bytes over [t0 + 30 s, t0 + 150 s): 25% in the first minute, 50% in the second, 25% in the third
    table = with_model(table, counted=[1], start=[t0 + 30_000], end=[t0 + 150_000])
    store.insert(table)
    got = store.query_arrow(
        "SELECT toUnixTimestamp(time) * 1000 AS t, sum(bytes) AS b, sum(flows) AS f FROM netobs.flows_1m "
        "GROUP BY t ORDER BY t"
    ).to_pylist()
    assert got == [
        {"t": t0, "b": 250.0, "f": 0.25},
        {"t": t0 + 60_000, "b": 500.0, "f": 0.5},
        {"t": t0 + 120_000, "b": 250.0, "f": 0.25},
    ]


def test_coverage_rollup_keeps_what_was_not_counted_and_why(store):
    now = int(time.time() * 1000)
    table = flows(now)
    reasons = ["source_node", "dual_direction_copy", "source_node", "source_node", "seen_at_source_node",
               "source_node"]  # fmt: skip
    table = table.set_column(
        table.schema.get_field_index("count_reason"), "count_reason", pa.array(reasons, pa.string())
    )
    store.insert(table)
    got = store.query_arrow(
        "SELECT count_reason, counted, sum(flows) AS n FROM netobs.counting_1m GROUP BY count_reason, counted "
        "ORDER BY count_reason"
    ).to_pylist()
    assert got == [
        {"count_reason": "dual_direction_copy", "counted": 0, "n": 1},
        {"count_reason": "seen_at_source_node", "counted": 0, "n": 1},
        {"count_reason": "source_node", "counted": 1, "n": 4},
    ]


def test_exporter_health(store):
    now = int(time.time() * 1000)
    store.insert(flows(now - 1000))
    store.insert(flows(now))
    got = store.query_arrow(
        "SELECT IPv6NumToString(exporter) AS e, sum(flows) AS n, arraySort(groupUniqArrayArray(sampling_rates)) AS "
        "rates, max(last_seen) - min(first_seen) AS span FROM netobs.exporter_health_1m GROUP BY e ORDER BY e"
    ).to_pylist()
    assert [(g["e"], g["n"], g["rates"]) for g in got] == [
        ("::ffff:192.0.2.1", 4, [0]),
        ("::ffff:192.0.2.2", 6, [100, 400]),
        ("::ffff:192.0.2.3", 2, [100]),  # health counts every record, counted or not
    ]
    assert all(0.99 <= float(g["span"]) <= 1.01 for g in got)


def test_converge_is_idempotent_and_applies_rollup_ttl(store):
    store.start()  # a second converge changes nothing and does not fail
    engine = store.query_arrow(
        "SELECT name, engine_full FROM system.tables WHERE database = 'netobs' ORDER BY name"
    ).to_pylist()
    names = [e["name"] for e in engine]
    assert names == [
        "counting_1m", "counting_1m_mv", "exporter_health_1m", "exporter_health_1m_mv", "flows", "flows_1h",
        "flows_1h_mv", "flows_1m", "flows_1m_mv", "interface_counter_rates", "interface_counters",
        "l7_conversations", "packet_samples", "planes_qos_1m", "planes_qos_1m_mv",
    ]  # fmt: skip
    by = {e["name"]: e["engine_full"] for e in engine}
    assert "toIntervalDay(7)" in by["packet_samples"] and "toIntervalDay(90)" in by["l7_conversations"]
    assert "toIntervalDay(7)" in by["flows_1m"] and "toIntervalDay(1830)" in by["flows_1h"]


# ---- a past state: the rollups before the counting model ----------------------------------------
V1_1M = """CREATE TABLE IF NOT EXISTS `netobs`.`flows_1m` (
    `time` DateTime('UTC') COMMENT 'Start of the bucket.',
    `src_center` LowCardinality(String),
    `dst_center` LowCardinality(String),
    `src_tenant` LowCardinality(String),
    `dst_tenant` LowCardinality(String),
    `src_zone` LowCardinality(String),
    `dst_zone` LowCardinality(String),
    `dst_port` UInt16,
    `proto` UInt8,
    `type` LowCardinality(String),
    `direction` LowCardinality(String),
    `bytes` UInt64 COMMENT 'Bytes scaled by the sampling rate.',
    `packets` UInt64 COMMENT 'Packets scaled by the sampling rate.',
    `raw_bytes` UInt64 COMMENT 'Bytes as exported (unscaled).',
    `raw_packets` UInt64 COMMENT 'Packets as exported (unscaled).',
    `flows` UInt64 COMMENT 'Flow records.'
)
ENGINE = SummingMergeTree((bytes, packets, raw_bytes, raw_packets, flows))
PARTITION BY toYYYYMM(time)
ORDER BY (time, src_center, dst_center, src_tenant, dst_tenant, src_zone, dst_zone, dst_port, proto, type, direction)
TTL time + INTERVAL 30 DAY DELETE
SETTINGS non_replicated_deduplication_window = 1000"""

V1_1M_MV = """CREATE MATERIALIZED VIEW IF NOT EXISTS `netobs`.`flows_1m_mv` TO `netobs`.`flows_1m` AS
SELECT
    toStartOfMinute(toDateTime(time_received, 'UTC')) AS `time`,
    `src_center`,
    `dst_center`,
    `src_tenant`,
    `dst_tenant`,
    `src_zone`,
    `dst_zone`,
    `dst_port`,
    `proto`,
    `type`,
    `direction`,
    sum(f.bytes * if(f.sampling_rate = 0, 1, f.sampling_rate)) AS `bytes`,
    sum(f.packets * if(f.sampling_rate = 0, 1, f.sampling_rate)) AS `packets`,
    sum(f.bytes) AS `raw_bytes`,
    sum(f.packets) AS `raw_packets`,
    count() AS `flows`
FROM `netobs`.`flows` AS f
WHERE NOT (type = 'ipfix' AND direction = 'egress')
GROUP BY time, src_center, dst_center, src_tenant, dst_tenant, src_zone, dst_zone, dst_port, proto, type, direction"""


@pytest.mark.slow
def test_converge_rebuilds_rollups_of_an_older_definition_from_the_raw_flows(tmp_path):
    """A store made before the counting model: flows without the model's columns, rollups by
    receive time with the old rule. Converge adds the columns (old rows read the old rule's
    decision), drops the old rollups and rebuilds them from the raw flows."""
    import chdb.session

    path = tmp_path / "chdb"
    sess = chdb.session.Session(str(path))
    now = int(time.time() * 1000)
    old_columns = [c for c in FLOWS_TABLE.columns if c.name not in MODEL_COLUMNS]
    spec = dataclasses.replace(FLOWS_TABLE, columns=tuple(old_columns))
    sess.query("CREATE DATABASE netobs")
    for stmt in ddl.create_table("netobs", spec):
        sess.query(stmt)
    sess.query(V1_1M)
    sess.query(V1_1M_MV)
    sess.query(
        "INSERT INTO netobs.flows (time_received, flow_start, flow_end, type, direction, bytes, packets, "
        f"sampling_rate, src_center) VALUES (fromUnixTimestamp64Milli({now}), fromUnixTimestamp64Milli({now}), "
        f"fromUnixTimestamp64Milli({now}), 'ipfix', 'ingress', 100, 1, 10, 'dc1'), "
        f"(fromUnixTimestamp64Milli({now}), fromUnixTimestamp64Milli({now}), fromUnixTimestamp64Milli({now}), "
        "'ipfix', 'egress', 100, 1, 10, 'dc1')"
    )
    sess.close()
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=path)))
    store.start()
    try:
        rows = store.query_arrow(
            "SELECT direction, counted, count_reason, event_end = time_received AS same FROM netobs.flows "
            "ORDER BY direction"
        ).to_pylist()
        assert rows == [
            {"direction": "egress", "counted": 0, "count_reason": "legacy_rule", "same": 1},
            {"direction": "ingress", "counted": 1, "count_reason": "legacy_rule", "same": 1},
        ]
        comment = store.query_arrow(
            "SELECT comment FROM system.tables WHERE database = 'netobs' AND name = 'flows_1m'"
        ).column("comment")
        assert comment.to_pylist() == [ddl.rollup_comment()]
        for t in ("flows_1m", "flows_1h"):
            got = store.query_arrow(f"SELECT sum(bytes) AS b, sum(flows) AS f FROM netobs.{t}").to_pylist()
            assert got == [{"b": 1000.0, "f": 1.0}], t
        store.stop()
        store.start()  # converged: a second start rebuilds nothing
        got = store.query_arrow("SELECT sum(bytes) AS b FROM netobs.flows_1h").to_pylist()
        assert got == [{"b": 1000.0}]
    finally:
        store.stop()
