"""The harness's ClickHouse + ZooKeeper server merges the parts of replicated tables (it needs an
interserver HTTP port for that): without merges every insert adds a part until the server
refuses inserts with "Too many parts"."""

from __future__ import annotations

import time
from datetime import date

import pytest
from clickhouse_driver.errors import ServerException

from tests.services.zookeeper import clickhouse_replicated, zookeeper  # noqa: F401

pytestmark = pytest.mark.integration


def test_replicated_table_merges_its_parts(clickhouse_replicated):  # noqa: F811
    client = clickhouse_replicated.client()
    try:
        client.execute("CREATE DATABASE IF NOT EXISTS merges")
        client.execute("DROP TABLE IF EXISTS merges.t")
        for attempt in range(5):  # a ZooKeeper session just opened may still be handshaking
            try:
                client.execute(
                    "CREATE TABLE merges.t (d Date, n UInt64) "
                    "ENGINE = ReplicatedMergeTree('/clickhouse/tables/merges/t', 'r1', d, (n), 8192)"
                )
                break
            except ServerException as e:
                if e.code != 999 or attempt == 4:
                    raise
                time.sleep(1)
        for i in range(80):  # far more parts than merges may leave
            client.execute("INSERT INTO merges.t (d, n) VALUES", [(date.today(), i)])
        deadline = time.monotonic() + 30
        parts = 80
        while time.monotonic() < deadline:
            parts = client.execute("SELECT count() FROM system.parts WHERE database = 'merges' AND active")[
                0
            ][0]
            if parts < 20:
                break
            time.sleep(0.5)
        assert parts < 20, f"{parts} active parts after 80 inserts: replicated merges do not run"
        assert client.execute("SELECT count(), sum(n) FROM merges.t") == [(80, sum(range(80)))]
    finally:
        client.execute("DROP TABLE IF EXISTS merges.t")
        client.disconnect()
