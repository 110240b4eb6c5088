"""Rows counted as the store confirms them: a block the store drops as a duplicate is counted
apart (on ClickHouse 18.16, identical blocks from two sources are dropped: it has no tokens)."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

from netobs.batch import FlowBatch
from netobs.config import ChdbStoreConfig, ClickHouseStoreConfig, StoreConfig
from netobs.store import make_store
from netobs.transport import Message
from pipeline import Pipeline
from pipeline.config import PipelineConfig
from tests.services.zookeeper import clickhouse_replicated, zookeeper  # noqa: F401

pytestmark = pytest.mark.integration


def flows(n: int) -> pa.Table:
    return pa.Table.from_batches(
        [
            FlowBatch(
                {
                    "time_received": np.full(n, int(time.time()) * 1000, dtype="int64"),
                    "packets": np.arange(n, dtype="uint64"),
                }
            ).to_arrow()
        ]
    )


class TwoSources:
    """Two messages with identical rows from two partitions (two sources), then nothing."""

    def __init__(self, table: pa.Table):
        self.msgs = [Message(table, ("t", 0, 0)), Message(table, ("t", 1, 0))]
        self.committed: list = []

    def poll(self, timeout_s: float, max_messages: int = 100) -> list[Message]:
        out, self.msgs = self.msgs, []
        time.sleep(0 if out else timeout_s)
        return out

    def commit_offsets(self, offsets) -> None:
        self.committed.append(offsets)

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass


def run(store, table: pa.Table) -> Pipeline:
    p = Pipeline(PipelineConfig(max_batch_rows=1000, max_batch_delay_ms=50), TwoSources(table), store)
    p.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and p.rows_inserted + p.rows_deduplicated < 2 * table.num_rows:
        time.sleep(0.1)
    p.stop()
    return p


def test_identical_blocks_from_two_sources_on_18_16(clickhouse_replicated):  # noqa: F811
    cfg = StoreConfig(
        type="clickhouse",
        database="honest",
        replicated=True,
        clickhouse=ClickHouseStoreConfig(host=clickhouse_replicated.host, port=clickhouse_replicated.port),
    )
    store = make_store(cfg)
    for attempt in range(5):  # a fresh ZooKeeper session may still be handshaking
        try:
            store.start()
            break
        except Exception:
            if attempt == 4:
                raise
            time.sleep(1)
    try:
        p = run(store, flows(300))
        stored = store.query_arrow("SELECT count() AS n FROM honest.flows").column("n")[0].as_py()
        assert stored == 300  # the server kept one of the two identical blocks
        assert (p.rows_inserted, p.rows_deduplicated) == (300, 300)
    finally:
        store.stop()


def test_a_replayed_token_on_chdb_is_counted_as_deduplicated(tmp_path):
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    store.start()
    try:
        t = flows(100)
        assert store.insert(t, token="netobs:x:0:0-0:100") == 100
        assert store.insert(t, token="netobs:x:0:0-0:100") == 0
        assert store.insert(t, token="netobs:x:0:1-1:100") == 100
    finally:
        store.stop()
