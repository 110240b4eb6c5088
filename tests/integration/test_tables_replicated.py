"""Tables as code on a real ClickHouse 18.16 with ZooKeeper: the replicated layout's DDL runs.

18.16 predates the types most component tables use (LowCardinality, DateTime64, Map), so the
tables here use the types it has; what is checked is the layout the declaration generates.
"""

from __future__ import annotations

import time
from datetime import date

import pytest

from alerts.state import CURSORS_TABLE
from netobs import ddl
from netobs.tables import Column, Table
from tests.services.zookeeper import CLUSTER, clickhouse_cluster, clickhouse_replicated, zookeeper  # noqa: F401

pytestmark = pytest.mark.integration

DB = "netobs_tables"
EVENTS = Table(
    "events",
    (Column("day", "Date"), Column("id", "String"), Column("n", "UInt64")),
    order_by=("day", "id"),
    partition_by="toYYYYMM(day)",
)


def wait_for_zookeeper(client, timeout_s: float = 60.0) -> None:
    """The server's ZooKeeper session comes up after the server answers queries."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.execute("SELECT count() FROM system.zookeeper WHERE path = '/'")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_replicated_layouts_run_and_deduplicate(clickhouse_replicated):  # noqa: F811
    client = clickhouse_replicated.client()
    try:
        wait_for_zookeeper(client)
        client.execute(f"CREATE DATABASE IF NOT EXISTS {DB}")
        for table in (CURSORS_TABLE, EVENTS):
            for stmt in table.create(DB, replicated=True) * 2:  # idempotent
                client.execute(stmt)
        engines = dict(client.execute(f"SELECT name, engine FROM system.tables WHERE database = '{DB}'"))
        assert engines == {"alert_cursors": "ReplicatedReplacingMergeTree", "events": "ReplicatedMergeTree"}
        rows = [("flows", 1, "a", 1), ("flows", 2, "b", 2)]
        client.execute(f"INSERT INTO {DB}.alert_cursors (source, position, last_id, version) VALUES", rows)
        assert client.execute(f"SELECT source, position FROM {DB}.alert_cursors FINAL") == [("flows", 2)]
        block = [(date(2026, 12, 1), "x", 1)]
        for _ in range(2):  # an identical block inserted twice is kept once (replicated deduplication)
            client.execute(f"INSERT INTO {DB}.events (day, id, n) VALUES", block)
        assert client.execute(f"SELECT count() FROM {DB}.events") == [(1,)]
        (path,) = client.execute("SELECT zookeeper_path FROM system.replicas WHERE table = 'events'")[0]
        assert path == f"/clickhouse/tables/{DB}/events"
    finally:
        client.disconnect()


def test_cluster_layouts_run_on_a_one_replica_cluster(clickhouse_cluster):  # noqa: F811
    client = clickhouse_cluster.client()
    try:
        wait_for_zookeeper(client)
        db = "netobs_cluster"
        statements = [ddl.create_database(db, CLUSTER)]
        statements += ddl.create_table(db, ddl.FLOWS_TABLE, dialect="legacy", cluster=CLUSTER)
        statements += CURSORS_TABLE.create(db, cluster=CLUSTER) + EVENTS.create(db, cluster=CLUSTER)
        for stmt in statements * 2:  # idempotent, through the distributed DDL queue
            client.execute(stmt)
        engines = dict(client.execute(f"SELECT name, engine FROM system.tables WHERE database = '{db}'"))
        assert engines == {
            "flows": "Distributed",
            "flows_local": "ReplicatedMergeTree",
            "alert_cursors": "Distributed",
            "alert_cursors_local": "ReplicatedReplacingMergeTree",
            "events": "Distributed",
            "events_local": "ReplicatedMergeTree",
        }
        client.execute(
            f"INSERT INTO {db}.alert_cursors (source, position, last_id, version) VALUES",
            [("flows", 1, "a", 1), ("flows", 2, "b", 2)],
            settings={"insert_distributed_sync": 1},
        )
        assert client.execute(f"SELECT source, max(position) FROM {db}.alert_cursors GROUP BY source") == [
            ("flows", 2)
        ]
    finally:
        client.disconnect()
