"""The ``clickhouse`` store against a real ClickHouse server process (Debian's 18.16).

18.16 predates IPv6, DateTime64 and LowCardinality, so the store detects the version and
uses the legacy dialect of the same schema: this exercises the driver path (connect,
converge, columnar insert, select, errors, reconnect) for real.
"""

import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from netobs.batch import FlowBatch, ip_bytes
from netobs.config import ClickHouseStoreConfig, StoreConfig
from netobs.store import StoreError, StoreUnavailable, make_store
from pipeline.enrich import Enricher
from pipeline.metadata.inventory import apply_inventory
from pipeline.metadata.versions import MetadataStore

pytestmark = pytest.mark.integration
T0 = int(time.time() * 1000) // 86_400_000 * 86_400_000 - 86_400_000  # yesterday, 00:00 UTC
TS = pa.timestamp("ms", tz="UTC")


def store_for(server, **kw):
    cfg = StoreConfig(
        type="clickhouse",
        database=kw.pop("database", "netobs_it"),
        retry_backoff_s=kw.pop("retry_backoff_s", 0.5),
        insert_retries=kw.pop("insert_retries", 6),
        clickhouse=ClickHouseStoreConfig(host=server.host, port=server.port, connect_timeout_s=2, **kw),
    )
    return make_store(cfg)


def batch(n, start=0):
    now = int(time.time() * 1000)
    return pa.Table.from_batches(
        [
            FlowBatch(
                {
                    "time_received": np.full(n, now, dtype="int64"),
                    "flow_start": np.full(n, now - 1000, dtype="int64"),
                    "type": np.array(["sflow"] * n, dtype=object),
                    "src_addr": np.array([ip_bytes("10.244.1.11")] * n, dtype="V16"),
                    "dst_addr": np.array([ip_bytes("2001:db8::9")] * n, dtype="V16"),
                    "dst_port": np.full(n, 443, dtype="uint16"),
                    "packets": np.arange(start, start + n, dtype="uint64"),
                    "bytes": np.full(n, 1500, dtype="uint64"),
                }
            ).to_arrow()
        ]
    )


def rows(store, db="netobs_it"):
    return store.query_arrow(f"SELECT count() AS n, sum(packets) AS p FROM {db}.flows").to_pylist()[0]


def test_converge_insert_select(clickhouse_server):
    s = store_for(clickhouse_server, database="netobs_conv")
    s.start()
    s.start()  # idempotent
    assert s.dialect == "legacy"
    s.insert(batch(100))
    got = s.query_arrow(
        "SELECT IPv6NumToString(src_addr) AS src, IPv6NumToString(dst_addr) AS dst, dst_port, type "
        "FROM netobs_conv.flows LIMIT 1"
    ).to_pylist()
    assert got == [{"src": "::ffff:10.244.1.11", "dst": "2001:db8::9", "dst_port": 443, "type": "sflow"}]
    assert rows(s, "netobs_conv") == {"n": 100, "p": sum(range(100))}
    s.stop()


def test_insert_survives_server_restart(clickhouse_server):
    s = store_for(clickhouse_server)
    s.start()
    s.insert(batch(50, 0))
    clickhouse_server.stop()
    # The second insert runs while the server is down; the server comes back while the
    # store retries. (The server is started from the main thread: the fixture ties the
    # child's life to the thread that spawned it.)
    errors = []

    def second_insert():
        try:
            s.insert(batch(50, 50))
        except Exception as e:
            errors.append(e)

    inserter = threading.Thread(target=second_insert)
    inserter.start()
    time.sleep(2.0)
    clickhouse_server.start()
    inserter.join(60)
    assert not errors and not inserter.is_alive()
    assert rows(s) == {"n": 100, "p": sum(range(100))}
    s.stop()


def test_server_down_is_unavailable_not_a_crash(clickhouse_server):
    s = store_for(clickhouse_server, insert_retries=1, retry_backoff_s=0.1, database="netobs_down")
    s.start()
    clickhouse_server.stop()
    try:
        with pytest.raises(StoreUnavailable, match="unreachable"):
            s.insert(batch(5))
    finally:
        clickhouse_server.start()
    s.insert(batch(5))  # the same store object recovers once the server is back
    assert rows(s, "netobs_down")["n"] == 5


def test_server_errors_are_store_errors(clickhouse_server):
    s = store_for(clickhouse_server, database="netobs_err")
    s.start()
    with pytest.raises(StoreError) as e:
        s.query_arrow("SELECT nonsense FROM nowhere")
    assert not isinstance(e.value, StoreUnavailable)


def test_wrong_password_is_a_clear_error(clickhouse_server):
    from pydantic import SecretStr

    s = store_for(clickhouse_server, user="netobs", password=SecretStr("wrong"), database="netobs_auth")
    with pytest.raises(StoreError, match="(?i)password|authentic"):
        s.start()


# ---- an enriched batch, column by column -----------------------------------------------------
INVENTORY = Path(__file__).resolve().parent.parent / "testdata" / "inventory.yaml"
ENRICHED_PAIRS = [
    ("10.244.1.10", "10.244.1.11"),  # pod → pod, same node
    ("10.244.1.12", "fd00:245:1::10"),  # pod → DR pod over IPv6
    ("10.244.1.10", "172.30.5.9"),  # pod → legacy mainframe network
    ("10.244.2.10", "203.0.113.5"),  # pod → external system
    ("8.8.8.8", "2001:db8::1"),  # unknown both ends
]


def enriched_table() -> pa.Table:
    """An enriched batch as the pipeline inserts it, in two chunks: the first straight from
    the enricher (dictionary columns), the second re-encoded with other dictionaries and with
    NULL entries in dictionary, string, address, time and counter columns."""
    meta = MetadataStore()
    apply_inventory(meta, INVENTORY, at=T0)
    enricher = Enricher(meta, dictionary=True)
    parts = []
    for chunk in range(2):
        n = len(ENRICHED_PAIRS) * 4
        pairs = [ENRICHED_PAIRS[i % len(ENRICHED_PAIRS)] for i in range(n)]
        rng = np.random.default_rng(chunk)
        received = T0 + 60_000 + rng.integers(0, 86_400_000, n)  # ms fractions, two days
        cols = {
            "time_received": received,
            "flow_start": received - rng.integers(0, 30_000, n),
            "flow_end": received - 5,
            "type": np.array(["ipfix", "sflow"] * (n // 2), dtype=object),
            "exporter": np.array([ip_bytes("192.0.2.11"), ip_bytes("198.51.100.31")] * (n // 2), dtype="V16"),
            "src_addr": np.array([ip_bytes(a) for a, _ in pairs], dtype="V16"),
            "dst_addr": np.array([ip_bytes(b) for _, b in pairs], dtype="V16"),
            "src_port": rng.integers(1024, 65535, n).astype("uint16"),
            "dst_port": np.full(n, 443, dtype="uint16"),
            "proto": np.full(n, 6, dtype="uint8"),
            "src_mac": np.full(n, 0xFFFF_FFFF_FFFF, dtype="uint64"),
            "packets": rng.integers(1, 2**40, n).astype("uint64"),
            "bytes": np.full(n, 2**63 + 12345, dtype="uint64"),  # above float64's exact range
            "observation_point": np.arange(chunk * n, (chunk + 1) * n, dtype="uint32"),  # row id
        }
        parts.append(enricher.enrich(pa.Table.from_batches([FlowBatch(cols).to_arrow()])))
    schema = _nullable(parts[0].schema)
    first = pa.RecordBatch.from_arrays(parts[0].combine_chunks().to_batches()[0].columns, schema=schema)
    return pa.Table.from_batches([first, _reencoded_with_nulls(parts[1], schema)], schema)


def _nullable(s: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in s], metadata=s.metadata)


def _reencoded_with_nulls(t: pa.Table, schema: pa.Schema) -> pa.RecordBatch:
    nulls = np.zeros(t.num_rows, dtype=bool)
    nulls[[1, 6, 13]] = True
    mask = pa.array(nulls)
    arrays = []
    for f in schema:
        col = t.column(f.name).combine_chunks()
        if pa.types.is_dictionary(f.type):  # another dictionary: the values present, in row order
            col = pc.dictionary_encode(col.cast(pa.string()))
        if f.name in (
            "src_namespace",
            "dst_center",
            "path",
            "src_pod",
            "exporter",
            "dst_addr",
            "flow_start",
            "packets",
        ):
            col = pc.if_else(mask, pa.scalar(None, col.type), col)
        arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def expected_rows(table: pa.Table) -> list[dict]:
    """What the server must hold: NULL as the type's default, times to the second, addresses
    as hex, computed from the Arrow input without the store's conversion code."""
    out = {}
    for f in table.schema:
        col = table.column(f.name)
        if pa.types.is_timestamp(f.type):
            values = [None if v is None else v // 1000 for v in col.cast(pa.int64()).to_pylist()]
            out[f.name] = [0 if v is None else v for v in values]
        elif pa.types.is_fixed_size_binary(f.type):
            out[f.name] = ["0" * 32 if v is None else v.hex().upper() for v in col.to_pylist()]
        elif pa.types.is_dictionary(f.type) or pa.types.is_string(f.type):
            out[f.name] = ["" if v is None else v for v in col.to_pylist()]
        else:
            out[f.name] = [0 if v is None else v for v in col.to_pylist()]
    rows = [dict(zip(out, values, strict=True)) for values in zip(*out.values(), strict=True)]
    return sorted(rows, key=lambda r: r["observation_point"])


def test_enriched_batch_round_trips(clickhouse_server):
    table = enriched_table()
    assert table.column("dst_center").num_chunks == 2 and table.column("dst_center").null_count == 3
    assert pa.types.is_dictionary(table.schema.field("src_center").type)
    s = store_for(clickhouse_server, database="netobs_enriched")
    s.start()
    s.insert(table)
    select = []
    for f in table.schema:
        if pa.types.is_timestamp(f.type):
            select.append(f"toUnixTimestamp(`{f.name}`) AS `{f.name}`")
        elif pa.types.is_fixed_size_binary(f.type):
            select.append(f"hex(`{f.name}`) AS `{f.name}`")
        else:
            select.append(f"`{f.name}`")
    got = s.query_arrow(
        f"SELECT {', '.join(select)} FROM netobs_enriched.flows ORDER BY observation_point"
    ).to_pylist()
    want = expected_rows(table)
    assert len(got) == len(want) == table.num_rows
    for g, w in zip(got, want, strict=True):
        assert g == w, {k: (g[k], w[k]) for k in w if g[k] != w[k]}
    names = {r["src_pod"] for r in got} | {r["dst_pod"] for r in got}
    assert {"pod-a", "pod-b", "pod-c", "pod-d", "pod-dr", ""} <= names  # really enriched
    assert {r["path"] for r in got} >= {"intra_node", "cross_site", "external", "unknown", ""}
    s.stop()


def test_time_outside_datetime_is_a_store_error(clickhouse_server):
    s = store_for(clickhouse_server, database="netobs_range")
    s.start()
    bad = batch(3).set_column(0, "time_received", pa.array([T0, T0, 7_500_000_000_000], pa.int64()).cast(TS))
    with pytest.raises(StoreError, match="1 times outside DateTime's range"):
        s.insert(bad)
    assert rows(s, "netobs_range")["n"] == 0
    s.stop()
