"""The fast enrichment paths: version lookup against a brute-force reference, address ids,
dictionary-encoded output equal to the string output, and its insert into chdb."""

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from netobs import ddl
from netobs.batch import FlowBatch, ip_bytes
from netobs.config import ChdbStoreConfig, StoreConfig
from netobs.schema import BY_NAME
from netobs.store import make_store
from pipeline.coded_metadata import ATTRS
from pipeline.enrich import Enricher
from pipeline.lookups import Addresses, AddressSet, IntervalIndex
from pipeline.metadata.inventory import apply_inventory
from pipeline.metadata.model import Namespace, Pod
from pipeline.metadata.versions import Change, MetadataStore

INVENTORY = Path(__file__).resolve().parent.parent / "testdata" / "inventory.yaml"
T = 1_700_000_000_000
ENRICHED = [f"{end}_{a}" for end in ("src", "dst") for a in ATTRS] + [
    "path",
    "exporter_node",
    "exporter_center",
]


def reference(keys, starts, ends, qk, qt):
    """Per query: the version of the key with the latest start <= t (ties: the last given), if t < its end."""
    out = []
    for k, t in zip(qk, qt, strict=True):
        best = -1
        for row in sorted(range(len(keys)), key=lambda r: (keys[r], starts[r], r)):
            if keys[row] == k and starts[row] <= t:
                best = row
        out.append(best if best >= 0 and t < ends[best] else -1)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_interval_index_matches_reference_for_many_and_overlapping_versions(seed):
    rng = np.random.default_rng(seed)
    nkeys = 12
    counts = rng.integers(0, 9, nkeys)  # 0..8 versions: none, one, scanned (<= 4) and searched (> 4)
    keys = np.repeat(np.arange(nkeys), counts)
    starts = rng.integers(0, 1000, len(keys))
    ends = starts + rng.integers(1, 400, len(keys))  # versions of one key may overlap
    idx = IntervalIndex(keys, starts, ends, nkeys)
    qk = rng.integers(-1, nkeys + 2, 3000)  # also unknown keys (-1) and keys out of range
    qt = rng.integers(-50, 1500, 3000)
    got = idx.lookup(qk, qt).tolist()
    want = reference(
        keys.tolist(), starts.tolist(), ends.tolist(), qk.tolist(), np.clip(qt, 0, None).tolist()
    )
    assert got == want


def test_address_set_gives_ipv4_then_ipv6_ids_and_masks_prefixes():
    texts = ["10.0.0.1", "fd00::1", "10.0.0.2", "10.0.0.1", "fd00::2", "fd00::1"]
    aset = AddressSet([ip_bytes(t) for t in texts])
    assert aset.ids_of_input.tolist() == [0, 2, 1, 0, 3, 2]
    assert len(aset) == 4
    probe = Addresses.from_text(["10.0.0.2", "fd00::2", "10.0.0.3", "fd00::3", "::ffff:10.0.0.1"])
    assert aset.lookup(probe).tolist() == [1, 3, -1, -1, 0]
    nets = AddressSet([ip_bytes("10.1.0.0"), ip_bytes("fd00:1::")], bits=112)  # a /16 and a /112
    assert nets.lookup(
        Addresses.from_text(["10.1.255.9", "10.2.0.1", "fd00:1::ff", "fd00:2::1"])
    ).tolist() == [
        0,
        -1,
        1,
        -1,
    ]


def flows(pairs, times, exporter="192.0.2.11") -> pa.Table:
    n = len(pairs)
    cols = {
        "src_addr": np.array([ip_bytes(a) for a, _ in pairs], dtype="V16"),
        "dst_addr": np.array([ip_bytes(b) for _, b in pairs], dtype="V16"),
        "exporter": np.array([ip_bytes(exporter)] * n, dtype="V16"),
        "flow_start": np.asarray(times, dtype="int64"),
        "time_received": np.asarray(times, dtype="int64") + 1000,
        "src_port": np.arange(n, dtype="uint16"),  # a row id
    }
    return pa.Table.from_batches([FlowBatch(cols).to_arrow()])


@pytest.fixture(scope="module")
def enricher():
    """The test inventory, plus a pod IP reused by another tenant and a namespace moving tenant."""
    meta = MetadataStore()
    apply_inventory(meta, INVENTORY, at=T)
    meta.apply(
        [Change.upsert(Namespace(name="a", tenant="t1")), Change.upsert(Namespace(name="b", tenant="t2"))], T
    )
    meta.apply([Change.upsert(Pod(name="old", namespace="a", ip="10.244.1.77", node="node-1"))], T)
    meta.apply(
        [Change.delete("pod", "a/old"), Change.upsert(Pod(name="new", namespace="b", ip="10.244.1.77"))],
        T + 50,
    )
    meta.apply([Change.upsert(Namespace(name="b", tenant="t3"))], T + 80)
    return Enricher(meta)


ADDRS = [
    "10.244.1.10",
    "10.244.1.12",
    "10.244.2.10",
    "fd00:245:1::10",
    "172.30.5.9",
    "203.0.113.5",
    "8.8.8.8",
    "2001:db8::1",
    "192.0.2.21",
    "10.244.1.77",
    "10.244.9.9",
]


def random_flows(n=400, seed=7, base=T):
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, len(ADDRS), n), rng.integers(0, len(ADDRS), n)
    pairs = [(ADDRS[i], ADDRS[j]) for i, j in zip(src, dst, strict=True)]
    return flows(pairs, base + rng.integers(-10, 120, n))


def test_dictionary_output_names_every_flow_like_the_string_output(enricher):
    table = random_flows()
    strings = enricher.enrich(table, dictionary=False)
    encoded = enricher.enrich(table, dictionary=True)
    for name in ENRICHED:
        # the store keeps pods as String: those stay plain strings, the rest are its LowCardinality
        low_cardinality = BY_NAME[name].ch_type.startswith("LowCardinality")
        assert pa.types.is_dictionary(encoded.schema.field(name).type) == low_cardinality, name
        assert pa.types.is_string(strings.schema.field(name).type), name
        assert encoded.column(name).to_pylist() == strings.column(name).to_pylist(), name
    pods = strings.column("src_pod").to_pylist()
    tenants = strings.column("src_tenant").to_pylist()
    at = table.column("flow_start").cast(pa.int64()).to_pylist()
    src = strings.column("src_addr").to_pylist()
    for raw, t, pod, tenant in zip(src, at, pods, tenants, strict=True):
        if raw == ip_bytes("10.244.1.77"):  # the reused address: named by the time of each flow
            want = (
                ("", "retail")
                if t < T
                else ("old", "t1")
                if t < T + 50
                else ("new", "t2" if t < T + 80 else "t3")
            )
            assert (pod, tenant) == want, t


def test_dictionary_columns_insert_into_chdb_as_their_strings(enricher, tmp_path):
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    store.start()
    try:
        table = random_flows(200, seed=3, base=int(time.time() * 1000))  # inside the retention TTL
        encoded = enricher.enrich(table, dictionary=True)
        store.insert(encoded, token="t:0:0-199")
        store.insert(encoded, token="t:0:0-199")  # a replay stays harmless with dictionary columns
        cols = ", ".join(ENRICHED)
        got = store.query_arrow(f"SELECT {cols} FROM netobs.flows ORDER BY src_port")
        want = enricher.enrich(table, dictionary=False)
        assert got.num_rows == 200
        for name in ENRICHED:
            assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    finally:
        store.stop()


def test_chained_hourly_rollup_equals_aggregating_the_flows(enricher, tmp_path):
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    store.start()
    try:
        now = int(time.time() * 1000)
        rng = np.random.default_rng(11)
        for i in range(3):  # three inserts spread over three hours and many minutes
            table = random_flows(300, seed=i, base=now - 3 * 3_600_000)
            shift = pa.array(rng.integers(0, 3 * 3_600_000, table.num_rows), pa.int64())
            received = pc.add(table.column("time_received").cast(pa.int64()), shift)
            table = table.set_column(
                table.schema.get_field_index("time_received"),
                table.schema.field("time_received"),
                received.cast(table.schema.field("time_received").type),
            )
            table = table.set_column(
                table.schema.get_field_index("bytes"),
                table.schema.field("bytes"),
                pa.array(rng.integers(1, 10_000, table.num_rows), pa.uint64()),
            )
            store.insert(enricher.enrich(table, dictionary=True), token=f"t:0:{i}")
        keys = "src_center, dst_center, src_tenant, dst_tenant, src_zone, dst_zone, dst_port"
        rolled = store.query_arrow(
            f"SELECT time, {keys}, sum(bytes) AS b, sum(flows) AS n FROM netobs.flows_1h "
            f"GROUP BY time, {keys} ORDER BY time, {keys}"
        ).to_pylist()
        # The same counted records, spread over their event time, aggregated by hour in one query.
        minute = next(r for r in ddl.ROLLUPS if r.table == "flows_1m")
        direct = store.query_arrow(
            f"SELECT toStartOfHour(time) AS time, {keys}, sum(bytes) AS b, sum(flows) AS n "
            f"FROM ({ddl.rollup_select('netobs', minute)}) GROUP BY time, {keys} ORDER BY time, {keys}"
        ).to_pylist()
        assert len({r["time"] for r in rolled}) >= 3
        assert [{k: v for k, v in r.items() if k not in "bn"} for r in rolled] == [
            {k: v for k, v in r.items() if k not in "bn"} for r in direct
        ]
        for got, want in zip(rolled, direct, strict=True):
            assert got["b"] == pytest.approx(want["b"]) and got["n"] == pytest.approx(want["n"])
        counted = store.query_arrow("SELECT sum(bytes) AS b FROM netobs.flows WHERE counted = 1").column("b")
        assert sum(r["b"] for r in rolled) == pytest.approx(counted.to_pylist()[0])
    finally:
        store.stop()
