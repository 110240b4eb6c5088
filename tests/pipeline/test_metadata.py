"""Metadata model, inventory loading (with located errors) and the time-versioned store on real chdb."""

import json
from pathlib import Path

import pytest

from pipeline.metadata.inventory import InventoryError, apply_inventory, load_inventory
from pipeline.metadata.model import Center, Namespace, Network, Node, Pod
from pipeline.metadata.versions import OPEN, Change, MetadataStore, create_table

DATA = Path(__file__).resolve().parent.parent / "testdata"


def test_inventory_of_the_issue_shape_loads():
    inv = load_inventory(DATA / "inventory.yaml", strict=True)
    centers = {c.name: (c.site, c.role) for c in inv.of(Center)}
    assert centers == {
        "dc1": ("site-a", "production"),
        "dc2": ("site-a", "production"),
        "dc3": ("site-b", "disaster-recovery"),
    }
    assert {n.name: n.center for n in inv.of(Node)}["node-9"] == "dc3"
    nets = {n.name: n for n in inv.of(Network)}
    assert nets["mainframe"].kind_ == "legacy" and nets["retail"].kind_ == "subnet"
    assert nets["retail-dr"].cidr == ("10.245.1.0/24", "fd00:245:1::/64")
    pod = next(p for p in inv.of(Pod) if p.name == "pod-dr")
    assert pod.addresses() == ("10.245.1.10", "fd00:245:1::10")


def test_malformed_objects_are_named_located_and_skipped():
    inv = load_inventory(DATA / "inventory-bad.yaml")
    text = [str(p) for p in inv.problems]
    assert any(":5:" in t and "node 'node-x'" in t and "ip" in t for t in text), text
    assert any(":6:" in t and "center 'dc9'" in t and "role" in t for t in text), text
    assert any(":9:" in t and "network 'broken'" in t and "cidr" in t for t in text), text
    assert any(":10:" in t and "network 'oddkind'" in t and "kind" in t for t in text), text
    assert any(":11:" in t and "namespaces[1].name" in t for t in text), text
    assert any(":14:" in t and "pod 'pod-bad'" in t and "colour" in t for t in text), text
    # the good objects still load
    names = {o.key for o in inv.objects}
    assert {"site-a", "dc1", "node-1", "retail", "retail-web", "retail-web/pod-a"} <= names
    assert not names & {"node-x", "dc9", "broken", "oddkind", "retail-web/pod-bad"}
    with pytest.raises(InventoryError, match="pod-bad"):
        load_inventory(DATA / "inventory-bad.yaml", strict=True)


DUAL_STACK = """\
pods:
  - {name: web-1, namespace: retail, node: node-1, workload: web, ip: 10.0.0.5}
  - {name: web-1, namespace: retail, node: node-1, workload: web, ip: "fd00::5"}
  - {name: web-1, namespace: retail, node: node-1, workload: web, ips: [10.0.0.5, "fd00::6"]}
"""


def test_a_pod_written_once_per_address_family_keeps_every_address(tmp_path):
    inv_file = tmp_path / "inv.yaml"
    inv_file.write_text(DUAL_STACK)
    inv = load_inventory(inv_file, strict=True)
    (pod,) = inv.of(Pod)
    assert pod.ip == "10.0.0.5"
    assert pod.addresses() == ("10.0.0.5", "fd00::5", "fd00::6")


@pytest.mark.parametrize(
    "second",
    [
        "{name: web-1, namespace: retail, node: node-2, ip: 10.0.0.6}",  # another node
        "{name: web-1, namespace: retail, node: node-1, workload: api, ip: 10.0.0.6}",
    ],
)
def test_two_different_entries_for_one_pod_are_refused_with_the_first_line(tmp_path, second):
    inv_file = tmp_path / "inv.yaml"
    first = "{name: web-1, namespace: retail, node: node-1, ip: 10.0.0.5}"
    inv_file.write_text(f"pods:\n  - {first}\n  - {second}\n")
    inv = load_inventory(inv_file)
    (problem,) = inv.problems
    assert problem.line == 3 and f"{inv_file}:2" in problem.message and "retail/web-1" in problem.message
    (pod,) = inv.of(Pod)
    assert pod.node == "node-1" and pod.addresses() == ("10.0.0.5",)
    with pytest.raises(InventoryError, match=r"inv.yaml:3: pods\[1\]"):
        load_inventory(inv_file, strict=True)


def test_a_namespace_written_twice_is_refused(tmp_path):
    inv_file = tmp_path / "inv.yaml"
    inv_file.write_text("namespaces:\n  - {name: retail, tenant: a}\n  - {name: retail, tenant: b}\n")
    inv = load_inventory(inv_file)
    assert [p.line for p in inv.problems] == [3]
    assert [n.tenant for n in inv.of(Namespace)] == ["a"]


def test_not_yaml_is_one_clear_error(tmp_path):
    bad = tmp_path / "inv.yaml"
    bad.write_text("sites: [\n  - {name: a\n")
    with pytest.raises(InventoryError, match=r"inv.yaml:\d+: \(file\): not valid YAML"):
        load_inventory(bad)


def test_versions_close_and_open_with_intervals():
    meta = MetadataStore()
    meta.apply([Change.upsert(Namespace(name="ns", tenant="a"))], at=1000)
    meta.apply([Change.upsert(Namespace(name="ns", tenant="a"))], at=1500)  # same state: no version
    meta.apply([Change.upsert(Namespace(name="ns", tenant="b"))], at=2000)
    meta.apply([Change.delete("namespace", "ns")], at=3000)
    got = [(v.valid_from, v.valid_to, v.attrs.get("tenant")) for v in meta.versions("namespace")]
    assert got == [(1000, 2000, "a"), (2000, 3000, "b")]
    assert meta.snapshot(1999)["namespace"]["ns"].tenant == "a"
    assert meta.snapshot(2000)["namespace"]["ns"].tenant == "b"
    assert "namespace" not in meta.snapshot(3000)


def test_static_pod_lifetime_and_inventory_is_true_since_ever(tmp_path):
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "namespaces: [{name: ns, tenant: t}]\n"
        "pods: [{name: p, namespace: ns, ip: 10.0.0.1, start: 2026-01-01T00:00:00Z, end: 2026-01-02T00:00:00Z}]\n"
    )
    meta = MetadataStore()
    apply_inventory(meta, inv, at=5_000_000_000_000)
    apply_inventory(meta, inv, at=5_000_000_000_001)  # loading again changes nothing
    (ns,) = meta.versions("namespace")
    assert (ns.valid_from, ns.valid_to) == (0, OPEN)
    (pod,) = meta.versions("pod")
    assert (pod.valid_from, pod.valid_to) == (1767225600000, 1767312000000)
    inv.write_text("namespaces: []\n")
    apply_inventory(meta, inv, at=5_000_000_000_002)  # removed from the file: closed
    assert meta.versions("namespace")[0].valid_to == 5_000_000_000_002


def test_history_persists_in_chdb_and_reloads_identically(store_factory):
    store = store_factory()
    meta = MetadataStore(store, "netobs")
    meta.ensure()
    meta.apply([Change.upsert(Pod(name="a", namespace="n", ip="10.0.0.1"))], at=1000)
    meta.apply([Change.delete("pod", "n/a")], at=2000)
    meta.apply([Change.upsert(Pod(name="b", namespace="m", ip="10.0.0.1"))], at=2000)
    before = sorted(
        (v.kind, v.key, v.valid_from, v.valid_to, json.dumps(v.attrs, sort_keys=True))
        for v in meta.versions()
    )
    again = MetadataStore(store, "netobs")
    assert again.reload() == 2
    after = sorted(
        (v.kind, v.key, v.valid_from, v.valid_to, json.dumps(v.attrs, sort_keys=True))
        for v in again.versions()
    )
    assert after == before
    # the open version stays open after reload: a later change closes it
    again.apply([Change.delete("pod", "m/b")], at=3000)
    assert sorted(v.valid_to for v in again.versions("pod")) == [2000, 3000]


def test_versions_ddl_is_idempotent_and_runs(store_factory):
    store = store_factory()
    store.execute(create_table("netobs"))
    store.execute(create_table("netobs"))
    engine = store.query_arrow(
        "SELECT engine FROM system.tables WHERE database='netobs' AND name='metadata_versions'"
    )
    assert engine.column(0).to_pylist() == ["ReplacingMergeTree"]
