"""Batches sorted in Arrow by a table's ORDER BY, checked against ClickHouse's own order (chdb)."""

import time

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netobs import ddl, sortkey
from netobs.batch import FlowBatch, ip_bytes

HOUR = 3_600_000
T = (int(time.time() * 1000) // HOUR - 3) * HOUR  # recent: the flows table has a TTL

ADDRS = ["10.244.1.11", "10.244.1.2", "192.0.2.11", "2001:db8::1", "fd00::1", "::", "255.255.255.255"]
NAMES = ["", "dc1", "dc2", "dc3", "DC1", "dc10", "ä-center", "tenant-a", "tenant-b"]


def flows(rng: np.random.Generator, n: int) -> pa.Table:
    """Flows with the key columns varied, some enrichment values NULL, dictionaries unsorted."""
    table = pa.Table.from_batches(
        [
            FlowBatch(
                {
                    "time_received": T + rng.integers(0, 3 * HOUR, n),
                    "exporter": np.array([ip_bytes(ADDRS[i]) for i in rng.integers(0, len(ADDRS), n)], "V16"),
                    "packets": np.arange(n, dtype="uint64"),
                }
            ).to_arrow()
        ]
    )
    for name in ("src_center", "dst_center", "src_tenant", "dst_tenant"):
        values = pa.array(rng.permutation(NAMES).tolist())  # dictionary order is not string order
        codes = rng.integers(-1, len(NAMES), n)
        indices = pa.array(codes, pa.int32(), mask=codes < 0)  # -1: NULL, stored as ''
        col = pa.DictionaryArray.from_arrays(indices, values)
        table = table.set_column(table.schema.get_field_index(name), name, col)
    return table


@pytest.fixture(scope="module")
def store(module_store_factory):
    return module_store_factory()


def already_sorted_blocks(store) -> int:
    got = store.query_arrow(
        "SELECT value FROM system.events WHERE event = 'MergeTreeDataWriterBlocksAlreadySorted'"
    ).to_pylist()
    return got[0]["value"] if got else 0


def clickhouse_order(store, table: pa.Table) -> list[int]:
    """``packets`` (the row number) in the order ClickHouse sorts the rows by the flows key."""
    store.execute("DROP TABLE IF EXISTS netobs.sortkey_probe")
    store.execute("CREATE TABLE netobs.sortkey_probe AS netobs.flows ENGINE = MergeTree ORDER BY tuple()")
    store.insert(table, target="sortkey_probe")
    key = ", ".join(ddl.FLOWS_TABLE.order_by)
    got = store.query_arrow(f"SELECT packets FROM netobs.sortkey_probe ORDER BY {key}, packets")
    return got.column("packets").to_pylist()


def test_presorted_batch_is_in_clickhouse_order_and_skips_its_sort(store):
    table = flows(np.random.default_rng(1), 5000)
    ordered = sortkey.presort(table, ddl.FLOWS_TABLE.order_by)
    assert ordered.column("packets").to_pylist() == clickhouse_order(store, table)
    before = already_sorted_blocks(store)
    store.insert(table, token="unsorted")
    assert already_sorted_blocks(store) == before  # ClickHouse had to sort this one
    store.insert(ordered, token="sorted")
    assert already_sorted_blocks(store) >= before + 1  # the flows block (rollups may add theirs)
    stored = store.query_arrow("SELECT packets FROM netobs.flows").column("packets").to_pylist()
    assert sorted(stored) == sorted(2 * list(range(5000)))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300), chunks=st.integers(1, 3))
def test_presort_matches_clickhouse_on_random_batches(store, seed, n, chunks):
    rng = np.random.default_rng(seed)
    parts = [flows(rng, n // chunks + (i < n % chunks)) for i in range(chunks)]
    table = pa.concat_tables(parts, promote_options="permissive")  # chunked, one dictionary per chunk
    ordered = sortkey.presort(table, ddl.FLOWS_TABLE.order_by)
    assert ordered.num_rows == n
    assert ordered.column("packets").to_pylist() == clickhouse_order(store, table)


def test_stable_and_unchanged_when_in_order():
    table = pa.table({"a": pa.array([2, 1, 2, 1], pa.uint32()), "i": pa.array([0, 1, 2, 3])})
    assert sortkey.presort(table, ("a",)).column("i").to_pylist() == [1, 3, 0, 2]
    done = sortkey.presort(table, ("a",))
    assert sortkey.presort(done, ("a",)) is done


@pytest.mark.parametrize(
    "order_by",
    [("cityHash64(a)",), ("missing",), ("a", "toStartOfHour(missing)"), ("b",)],
)
def test_an_unknown_key_leaves_the_batch_as_it_is(order_by):
    table = pa.table({"a": pa.array([3, 1, 2]), "b": pa.array([[1], [2], [3]])})  # b: a list column
    assert sortkey.presort(table, order_by) is table


def test_empty_chunks_are_skipped():
    table = flows(np.random.default_rng(5), 50)
    chunked = pa.concat_tables([table.slice(0, 0), table, table.slice(50, 0)])
    assert sortkey.presort(chunked, ddl.FLOWS_TABLE.order_by).equals(
        sortkey.presort(table, ddl.FLOWS_TABLE.order_by)
    )


def test_other_time_units_and_buckets():
    seconds = pa.array([7200, 10, 3600], pa.timestamp("s", tz="UTC"))
    table = pa.table({"t": seconds, "i": pa.array([0, 1, 2])})
    assert sortkey.presort(table, ("toStartOfHour(t)",)).column("i").to_pylist() == [1, 2, 0]
    micros = pa.array([3_600_000_001, 5, 60_000_000], pa.timestamp("us", tz="UTC"))
    table = pa.table({"t": micros, "i": pa.array([0, 1, 2])})
    assert sortkey.presort(table, ("toStartOfMinute(t)",)).column("i").to_pylist() == [1, 2, 0]
    plain = pa.table({"s": pa.array(["b", None, "a"]), "i": pa.array([0, 1, 2])})
    assert sortkey.presort(plain, ("s",)).column("i").to_pylist() == [1, 2, 0]  # NULL is ''
