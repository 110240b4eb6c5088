"""Row-level quarantine with the real engines: a record the store cannot take goes to the
dead-letter destination alone, with its reason, and the rest of its batch goes in; on chdb
and on the ClickHouse 18.16 server alike."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pytest

from netobs import wire
from netobs.batch import FlowBatch
from netobs.config import ChdbStoreConfig, ClickHouseStoreConfig, InprocessTransportConfig, StoreConfig
from netobs.store import make_store
from netobs.transport.deadletter import DirectoryDeadLetters
from netobs.transport.inprocess import InprocessTransport
from pipeline import Pipeline
from pipeline.config import PipelineConfig

pytestmark = pytest.mark.integration

YEAR_2200_MS = 7_258_118_400_000
HUGE_MS = 10**17  # past what datetime can hold: once took an OverflowError path


def flows(start: int, n: int, times: dict[int, int] | None = None) -> pa.RecordBatch:
    t = np.full(n, int(time.time() * 1000), dtype="int64")
    for i, v in (times or {}).items():
        t[i] = v
    return FlowBatch(
        {
            "time_received": t,
            "type": np.array(["ipfix"] * n, dtype=object),
            "packets": np.arange(start, start + n, dtype="uint64"),
        }
    ).to_arrow()


def run_pipeline(store, tmp_path, batches: list[pa.RecordBatch]) -> Pipeline:
    t = InprocessTransport(InprocessTransportConfig(max_batches=64))
    p = Pipeline(
        PipelineConfig(max_batch_rows=100_000, max_batch_delay_ms=100),
        t.consumer(),
        store,
        drain=True,
        dead_letters=DirectoryDeadLetters(tmp_path / "dlq"),
    )
    p.start()
    prod = t.producer()
    for rb in batches:
        prod.send(rb, b"10.0.0.1")
    p.stop()
    return p


def dead_letters(tmp_path) -> list[tuple[dict, pa.Table]]:
    out = []
    for meta in sorted((tmp_path / "dlq").glob("*.json")):
        out.append((json.loads(meta.read_text()), wire.decode(meta.with_suffix(".nobs").read_bytes())))
    return out


def check_only_poison_quarantined(store, tmp_path, database: str) -> None:
    poison = {5: YEAR_2200_MS, 17: HUGE_MS, 1203: -1000}  # row index in the batch → time
    batches = [flows(0, 1000), flows(1000, 720, {i - 1000: v for i, v in poison.items() if i >= 1000})]
    batches[0] = flows(0, 1000, {i: v for i, v in poison.items() if i < 1000})
    p = run_pipeline(store, tmp_path, batches)
    got = store.query_arrow(f"SELECT packets FROM {database}.flows ORDER BY packets").column("packets")
    assert got.to_pylist() == [i for i in range(1720) if i not in poison]
    assert p.rows_inserted == 1717 and p.quarantined_rows == 3
    letters = dead_letters(tmp_path)
    assert {m["reason"] for m, _ in letters} == {"time_out_of_range"}
    assert sorted(v for _, t in letters for v in t.column("packets").to_pylist()) == sorted(poison)
    assert all("time_received outside 1970-01-01..2106-02-07" in m["error"] for m, _ in letters)


def test_poison_rows_alone_are_quarantined_on_chdb(tmp_path):
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    store.start()
    try:
        check_only_poison_quarantined(store, tmp_path, "netobs")
        # what went in stays queryable (a 2200 row once made every later query fail)
        assert store.query_arrow("SELECT max(time_received) AS t FROM netobs.flows").num_rows == 1
    finally:
        store.stop()


def test_poison_rows_alone_are_quarantined_on_the_clickhouse_server(clickhouse_server, tmp_path):
    cfg = StoreConfig(
        type="clickhouse",
        database="netobs_quarantine",
        clickhouse=ClickHouseStoreConfig(host=clickhouse_server.host, port=clickhouse_server.port),
    )
    store = make_store(cfg)
    store.start()
    try:
        store.execute("TRUNCATE TABLE netobs_quarantine.flows")
        check_only_poison_quarantined(store, tmp_path, "netobs_quarantine")
    finally:
        store.stop()


def test_rows_the_engine_refuses_are_found_by_halving(tmp_path):
    """A refusal no pre-insert check foresees (here a CHECK constraint of the real engine) makes
    the pipeline split the batch until the refused rows are alone."""
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    store.start()
    try:
        store.execute("ALTER TABLE netobs.flows ADD CONSTRAINT small_packets CHECK packets NOT IN (77, 1500)")
        p = run_pipeline(store, tmp_path, [flows(0, 1000), flows(1000, 1000)])
        got = store.query_arrow("SELECT packets FROM netobs.flows ORDER BY packets").column("packets")
        assert got.to_pylist() == [i for i in range(2000) if i not in (77, 1500)]
        letters = dead_letters(tmp_path)
        assert sorted(v for _, t in letters for v in t.column("packets").to_pylist()) == [77, 1500]
        assert {m["reason"] for m, _ in letters} == {"rejected_by_store"}
        assert p.rows_inserted == 1998 and p.quarantined_rows == 2
    finally:
        store.stop()
