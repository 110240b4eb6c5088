"""Tables as code (netobs.tables): one declaration, every layout's DDL."""

from __future__ import annotations

import pytest

from netobs.tables import Column, Table

STATE = Table(
    "state",
    (Column("key", "String"), Column("value", "String", "JSON"), Column("version", "UInt64")),
    order_by=("key",),
    version="version",
    ttl="toDateTime(intDiv(version, 1000))",
    shard_by="cityHash64(key)",
)
LOG = Table(
    "log", (Column("t", "DateTime"), Column("line", "String")), ("t", "line"), partition_by="toDate(t)"
)


def test_single_node():
    (stmt,) = STATE.create("db", retention_days=7)
    assert stmt == (
        "CREATE TABLE IF NOT EXISTS `db`.`state` (\n"
        "    `key` String,\n    `value` String COMMENT 'JSON',\n    `version` UInt64\n)\n"
        "ENGINE = ReplacingMergeTree(version)\nORDER BY key\n"
        "TTL toDateTime(intDiv(version, 1000)) + INTERVAL 7 DAY"
    )
    (stmt,) = LOG.create("db")
    assert stmt.endswith("ENGINE = MergeTree\nPARTITION BY toDate(t)\nORDER BY (t, line)")


def test_single_server_with_zookeeper():
    (stmt,) = STATE.create("db", replicated=True, retention_days=1)
    assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/db/state', 'r1', version)\n" in stmt
    (stmt,) = LOG.create("db", replicated=True)
    assert "ENGINE = ReplicatedMergeTree('/clickhouse/tables/db/log', 'r1')\n" in stmt


def test_cluster():
    local, dist = STATE.create("db", cluster="bank", retention_days=1)
    assert local.startswith("CREATE TABLE IF NOT EXISTS `db`.`state_local` ON CLUSTER 'bank' (\n")
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/state_local', '{replica}', version)"
        in local
    )
    assert dist == (
        "CREATE TABLE IF NOT EXISTS `db`.`state` ON CLUSTER 'bank' AS `db`.`state_local`\n"
        "ENGINE = Distributed('bank', 'db', 'state_local', cityHash64(key))"
    )


def test_a_ttl_needs_its_retention():
    with pytest.raises(ValueError, match="retention_days"):
        STATE.create("db")


def test_the_single_node_statements_run_on_the_embedded_engine(store):
    for stmt in STATE.create(store.database, retention_days=3) + LOG.create(store.database):
        store.execute(stmt)
        store.execute(stmt)  # idempotent
    rows = store.query_arrow(
        f"SELECT name, engine FROM system.tables WHERE database = '{store.database}' "
        "AND name IN ('state', 'log') ORDER BY name"
    ).to_pylist()
    assert rows == [{"name": "log", "engine": "MergeTree"}, {"name": "state", "engine": "ReplacingMergeTree"}]
