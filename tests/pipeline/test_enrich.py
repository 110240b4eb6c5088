"""Vectorized, time-correct enrichment: attribution, LPM (IPv4/IPv6), IP reuse, unknowns, paths."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from netobs.batch import FlowBatch, ip_bytes
from netobs.config import ChdbStoreConfig, StoreConfig
from netobs.store import make_store
from netobs_app.settings import Settings
from pipeline.config import EnrichConfig
from pipeline.enrich import Enricher, make_enricher
from pipeline.lookups import Addresses, IntervalIndex, PrefixIndex
from pipeline.metadata.inventory import apply_inventory
from pipeline.metadata.model import Namespace, Node, Pod
from pipeline.metadata.versions import OPEN, Change, MetadataStore

INVENTORY = Path(__file__).resolve().parent.parent / "testdata" / "inventory.yaml"
T = 1_700_000_000_000


def flows(pairs, times=T, exporter="127.0.0.1") -> pa.Table:
    n = len(pairs)
    cols = {
        "src_addr": np.array([ip_bytes(a) for a, _ in pairs], dtype="V16"),
        "dst_addr": np.array([ip_bytes(b) for _, b in pairs], dtype="V16"),
        "exporter": np.array([ip_bytes(exporter)] * n, dtype="V16"),
        "flow_start": np.broadcast_to(np.asarray(times, dtype="int64"), (n,)).copy(),
    }
    return pa.Table.from_batches([FlowBatch(cols).to_arrow()])


@pytest.fixture(scope="module")
def enricher():
    meta = MetadataStore()
    apply_inventory(meta, INVENTORY, at=T)
    return Enricher(meta)


def ends(table, i, *names):
    row = table.slice(i, 1).to_pylist()[0]
    return tuple(row[n] for n in names)


@pytest.mark.parametrize(
    "src, dst, path",
    [
        ("10.244.1.10", "10.244.1.11", "intra_node"),
        ("10.244.1.10", "10.244.1.12", "intra_center"),
        ("10.244.1.10", "10.244.2.10", "cross_center"),
        ("10.244.1.10", "10.245.1.10", "cross_site"),
        ("10.244.1.10", "fd00:245:1::10", "cross_site"),
        ("10.244.1.10", "172.30.5.9", "intra_center"),
        ("10.244.1.10", "203.0.113.5", "external"),
        ("10.244.1.10", "8.8.8.8", "external"),
        ("8.8.8.8", "2001:db8::1", "unknown"),
    ],
)
def test_path(enricher, src, dst, path):
    assert enricher.enrich(flows([(src, dst)])).column("path").to_pylist() == [path]


def test_pod_end_is_fully_named(enricher):
    t = enricher.enrich(flows([("10.244.1.12", "fd00:245:1::10")]))
    attrs = ("pod", "namespace", "workload", "node", "tenant", "subnet", "vpc", "zone", "center", "site")
    assert ends(t, 0, *(f"src_{a}" for a in attrs)) == (
        "pod-c",
        "payments",
        "pay",
        "node-2",
        "payments",
        "retail",
        "retail-vpc",
        "pci",
        "dc1",
        "site-a",
    )  # namespace tenant/zone win over the subnet's
    assert ends(t, 0, *(f"dst_{a}" for a in attrs)) == (
        "pod-dr",
        "retail-web",
        "web",
        "node-9",
        "retail",
        "retail-dr",
        "retail-vpc",
        "production",
        "dc3",
        "site-b",
    )  # IPv6 address of a dual-stack pod


@pytest.mark.parametrize(
    "addr, subnet, tenant, zone",
    [
        ("172.30.5.9", "mainframe-db", "core-banking", "restricted"),  # longest prefix wins
        ("172.30.6.9", "mainframe", "core-banking", "core"),
        ("10.244.9.9", "pods", "", ""),
        ("fd00:245:1::99", "retail-dr", "retail", "production"),
        ("10.99.0.1", "", "", ""),  # unknown: kept, attributes ''
    ],
)
def test_networks_by_longest_prefix(enricher, addr, subnet, tenant, zone):
    t = enricher.enrich(flows([(addr, "10.244.1.10")]))
    assert ends(t, 0, "src_subnet", "src_tenant", "src_zone", "src_pod") == (subnet, tenant, zone, "")


def test_node_addresses_and_exporter(enricher):
    t = enricher.enrich(flows([("192.0.2.21", "10.244.1.10")], exporter="192.0.2.11"))
    assert ends(t, 0, "src_node", "src_center", "src_site", "path") == (
        "node-3",
        "dc2",
        "site-a",
        "cross_center",
    )
    assert ends(t, 0, "exporter_node", "exporter_center") == ("node-1", "dc1")


def test_interval_index_picks_the_version_valid_at_each_time():
    idx = IntervalIndex(np.array([0, 0, 1]), np.array([100, 200, 50]), np.array([200, 300, OPEN]), nkeys=2)
    keys = np.array([0, 0, 0, 0, 1, 1, -1, 5])
    times = np.array([99, 100, 250, 300, 49, 10**12, 150, 150])
    assert idx.lookup(keys, times).tolist() == [-1, 0, 1, -1, -1, 2, -1, -1]


def test_prefix_index_ipv4_ipv6_and_time():
    idx = PrefixIndex(
        ["10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32", "10.1.2.0/24"], [0, 0, 0, 500], [OPEN] * 4
    )
    addrs = Addresses.from_text(["10.1.2.3", "10.1.2.3", "10.2.0.1", "2001:db8::5", "2001:db9::5"])
    assert idx.lookup(addrs, np.array([400, 600, 0, 0, 0])).tolist() == [1, 3, 0, 2, -1]


def test_ip_reuse_names_each_flow_by_its_own_time():
    meta = MetadataStore()
    meta.apply(
        [Change.upsert(o) for o in (Namespace(name="a", tenant="ta"), Namespace(name="b", tenant="tb"))], 0
    )
    meta.apply([Change.upsert(Pod(name="old", namespace="a", ip="10.0.0.5"))], at=1000)
    meta.apply(
        [Change.delete("pod", "a/old"), Change.upsert(Pod(name="new", namespace="b", ip="10.0.0.5"))], 2000
    )
    t = Enricher(meta).enrich(flows([("10.0.0.5", "10.0.0.6")] * 4, times=[999, 1000, 1999, 2000]))
    assert t.column("src_pod").to_pylist() == ["", "old", "old", "new"]
    assert t.column("src_tenant").to_pylist() == ["", "ta", "ta", "tb"]


def test_namespace_change_during_a_pod_life_is_time_correct():
    meta = MetadataStore()
    meta.apply(
        [
            Change.upsert(Namespace(name="a", tenant="t1")),
            Change.upsert(Pod(name="p", namespace="a", ip="10.0.0.5")),
        ],
        0,
    )
    meta.apply([Change.upsert(Namespace(name="a", tenant="t2"))], at=5000)
    meta.apply([Change.upsert(Node(name="n", ip="10.9.9.9"))], at=0)
    t = Enricher(meta).enrich(flows([("10.0.0.5", "10.9.9.9")] * 2, times=[4999, 5000]))
    assert t.column("src_tenant").to_pylist() == ["t1", "t2"]


def test_other_columns_are_untouched_and_types_match_schema(enricher):
    from netobs import schema

    table = flows([("10.244.1.10", "10.244.1.11")])
    out = enricher.enrich(table)
    assert out.schema.names == table.schema.names
    assert out.schema.equals(schema.arrow_schema(), check_metadata=False)
    assert out.column("flow_start").equals(table.column("flow_start"))


def test_make_enricher_from_settings_with_a_chdb_store(tmp_path):
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "db")))
    store.start()
    try:
        settings = Settings(enrich=EnrichConfig(inventory=INVENTORY))
        e = make_enricher(settings, store)
        assert e.enrich(flows([("10.244.1.10", "10.244.2.10")])).column("path").to_pylist() == [
            "cross_center"
        ]
        n = store.query_arrow("SELECT count() AS n FROM netobs.metadata_versions").column("n").to_pylist()[0]
        assert n == len(e.metadata.versions()) > 20
    finally:
        store.stop()
