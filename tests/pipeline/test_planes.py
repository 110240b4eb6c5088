"""Issue 20: planes, NAT/EIP attribution, legacy hosts, several clusters, from Kube-OVN wire objects.

The objects are written in Kube-OVN's wire format (``tests/pipeline/_kube_ovn.py``) and converted
by the real converters; flows go through the real enricher.
"""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from netobs.batch import FlowBatch, ip_bytes
from pipeline.enrich import Enricher
from pipeline.metadata import k8s_convert
from pipeline.metadata.model import Center, Cluster, Host, Node, Site
from pipeline.metadata.versions import Change, MetadataStore
from tests.pipeline import _kube_ovn as ko

T = 1_700_000_000_000


def flows(rows, exporter="127.0.0.1", times=T) -> pa.Table:
    """rows: (src, dst, sport, dport, proto[, tos]); ``exporter`` one address or one per row."""
    n = len(rows)
    exporters = [exporter] * n if isinstance(exporter, str) else list(exporter)
    cols = {
        "src_addr": np.array([ip_bytes(r[0]) for r in rows], dtype="V16"),
        "dst_addr": np.array([ip_bytes(r[1]) for r in rows], dtype="V16"),
        "src_port": np.array([r[2] for r in rows], dtype="uint16"),
        "dst_port": np.array([r[3] for r in rows], dtype="uint16"),
        "proto": np.array([r[4] for r in rows], dtype="uint8"),
        "exporter": np.array([ip_bytes(e) for e in exporters], dtype="V16"),
        "flow_start": np.broadcast_to(np.asarray(times, dtype="int64"), (n,)).copy(),
    }
    return pa.Table.from_batches([FlowBatch(cols).to_arrow()])


def convert(res: str, obj: dict, cluster: str = ""):
    o = k8s_convert.CONVERTERS[res][1](obj)
    return o.model_copy(update={"cluster": cluster}) if cluster else o


def apply(meta: MetadataStore, objs, at=0) -> None:
    meta.apply([Change.upsert(o) for o in objs if o is not None], at)


def col(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist()


@pytest.fixture()
def bank() -> MetadataStore:
    """One cluster: a pod with two NICs (business on eth0, storage on net1), a storage subnet by
    provider, an SNAT gateway for the storage subnet and a FIP for one pod."""
    meta = MetadataStore()
    apply(
        meta, [Site(name="sh"), Center(name="dc1", site="sh"), Node(name="n1", ip="127.0.0.1", center="dc1")]
    )
    apply(meta, [
        convert("namespaces", ko.namespace("pay", tenant="payments")),
        convert("subnets", ko.subnet("ovn-default", "10.16.0.0/16", plane="business")),
        convert("subnets", ko.subnet("storage", "10.20.0.0/24", provider="storage-net.storage.ovn")),
        convert("pods", ko.pod("pay", "api-0", "10.16.0.5", node="n1", attachments=[("storage/storage-net", "net1", "10.20.0.5")])),
        convert("pods", ko.pod("pay", "api-1", "10.16.0.6", node="n1", attachments=[("storage/storage-net", "net1", "10.20.0.6")])),
        convert("pods", ko.pod("pay", "db-0", "10.16.0.9", node="n1")),
        convert("iptables-eips", ko.iptables_eip("eip-snat", "198.18.0.100")),
        convert("iptables-snat-rules", ko.iptables_snat("snat-storage", "eip-snat", "10.20.0.0/24")),
        convert("ovn-eips", ko.ovn_eip("eip-fip", "198.18.0.200")),
        convert("ips", ko.ip("db-0.pay", "10.16.0.9", pod="db-0", namespace="pay", subnet="ovn-default")),
        convert("ovn-fips", ko.ovn_fip("fip-db", "eip-fip", ip_name="db-0.pay")),
    ])  # fmt: skip
    return meta


def test_a_multi_nic_pod_is_named_on_each_plane(bank):
    out = Enricher(bank).enrich(
        flows([("10.16.0.5", "10.16.0.9", 40000, 5432, 6), ("10.20.0.5", "10.20.0.6", 40001, 3260, 6)])
    )
    assert col(out, "src_pod") == ["api-0", "api-0"]
    assert col(out, "src_plane") == ["business", "storage/storage-net"]
    assert col(out, "dst_plane") == ["business", "storage/storage-net"]
    assert col(out, "src_subnet") == ["ovn-default", "storage"]


def test_the_attachment_names_the_plane_when_no_subnet_does():
    meta = MetadataStore()
    pod = ko.pod("pay", "api-0", "10.16.0.5", attachments=[("backup/backup-net", "net2", "192.168.77.5")])
    apply(meta, [convert("pods", pod)])
    out = Enricher(meta).enrich(flows([("192.168.77.5", "192.168.77.9", 1, 2, 6)]))
    assert (col(out, "src_pod"), col(out, "src_plane")) == (["api-0"], ["backup/backup-net"])


def test_a_malformed_network_status_is_refused_not_guessed():
    pod = ko.pod("pay", "api-0", "10.16.0.5")
    pod["metadata"]["annotations"] = {k8s_convert.NETWORK_STATUS: "{not json"}
    with pytest.raises(ValueError):
        k8s_convert.pod(pod)


def test_snat_flows_name_the_pod_behind_the_gateway_by_joining_pre_and_post_nat(bank):
    seed = random.SystemRandom().randrange(1 << 30)
    print("seed", seed)
    rnd = random.Random(seed)
    enricher = Enricher(bank)
    remote, rport = "203.0.113.7", 443
    sport0, sport1 = rnd.randrange(20000, 60000), rnd.randrange(20000, 60000)
    pre = flows([("10.20.0.5", remote, sport0, rport, 6), ("10.20.0.6", remote, sport1, rport, 6)])
    enricher.enrich(pre)
    post = enricher.enrich(
        flows([
            ("198.18.0.100", remote, sport0, rport, 6),  # port kept by the SNAT
            (remote, "198.18.0.100", rport, sport1, 6),  # a reply to the other pod
            ("198.18.0.100", "203.0.113.99", 5555, 80, 6),  # nothing seen before translation
        ], times=T + 2000)
    )  # fmt: skip
    assert col(post, "src_pod") == ["api-0", "", ""]
    assert col(post, "dst_pod") == ["", "api-1", ""]
    assert col(post, "src_nat") == ["snat_join", "", "snat_subnet"]
    assert col(post, "dst_nat") == ["", "snat_join", ""]
    assert col(post, "nat_confidence") == [80, 80, 30]  # two pods talked to that remote: the port decides
    assert col(post, "src_subnet")[2] == "storage"  # only the subnet behind the rule is known
    assert col(post, "src_tenant")[0] == "payments"


def test_a_fip_names_its_pod_both_ways(bank):
    out = Enricher(bank).enrich(
        flows(
            [("198.18.0.200", "203.0.113.7", 5432, 40000, 6), ("203.0.113.7", "198.18.0.200", 40000, 5432, 6)]
        )
    )
    assert col(out, "src_pod")[0] == "db-0" and col(out, "dst_pod")[1] == "db-0"
    assert col(out, "src_nat")[0] == "fip" and col(out, "dst_nat")[1] == "fip"
    assert col(out, "nat_confidence") == [95, 95]


def test_a_rule_ends_with_its_version(bank):
    bank.apply([Change.delete("nat", "fip-db")], T + 1000)
    out = Enricher(bank).enrich(flows([("198.18.0.200", "203.0.113.7", 1, 2, 6)], times=T + 5000))
    assert col(out, "src_pod") == [""] and col(out, "src_nat") == [""]


def test_a_legacy_host_from_the_cmdb_is_named(bank):
    apply(bank, [Host(name="core-banking-01", addresses=["172.30.5.9"], application="core-banking",
                      tenant="core", zone="legacy", center="dc1", owner="team-core")])  # fmt: skip
    out = Enricher(bank).enrich(flows([("10.16.0.5", "172.30.5.9", 1, 1521, 6)]))
    row = out.to_pylist()[0]
    assert (row["dst_host"], row["dst_workload"], row["dst_tenant"], row["dst_zone"], row["dst_center"]) == (
        "core-banking-01",
        "core-banking",
        "core",
        "legacy",
        "dc1",
    )
    assert row["path"] == "intra_center"


def two_clusters() -> MetadataStore:
    """Two clusters whose pod CIDRs overlap; each has a node exporting from its own address."""
    meta = MetadataStore()
    apply(meta, [Site(name="sh"), Center(name="dc1", site="sh"), Center(name="dc2", site="sh")])
    apply(meta, [Cluster(name="east", cloud="private"), Cluster(name="west", cloud="public")])
    for cluster, node_ip, center, tenant in (
        ("east", "127.0.1.1", "dc1", "retail"),
        ("west", "127.0.2.1", "dc2", "corporate"),
    ):
        node = ko.node("node-1", node_ip, center=center)
        apply(meta, [
            convert("nodes", node, cluster),
            convert("namespaces", ko.namespace("app", tenant=tenant), cluster),
            convert("subnets", ko.subnet("ovn-default", "10.16.0.0/16"), cluster),
            convert("pods", ko.pod("app", f"web-{cluster}", "10.16.0.5", node="node-1"), cluster),
            convert("pods", ko.pod("app", f"db-{cluster}", "10.16.0.6", node="node-1"), cluster),
        ])  # fmt: skip
    return meta


def test_two_clusters_with_overlapping_pod_cidrs_are_kept_apart():
    out = Enricher(two_clusters()).enrich(
        flows([("10.16.0.5", "10.16.0.6", 1, 2, 6)] * 2, exporter=["127.0.1.1", "127.0.2.1"])
    )
    assert col(out, "src_pod") == ["web-east", "web-west"]
    assert col(out, "dst_pod") == ["db-east", "db-west"]
    assert col(out, "src_cluster") == ["east", "west"]
    assert col(out, "src_tenant") == ["retail", "corporate"]
    assert col(out, "src_namespace") == ["app", "app"] and col(out, "src_node") == ["node-1", "node-1"]
    assert col(out, "src_center") == ["dc1", "dc2"]
    assert col(out, "cluster_path") == ["intra_cluster", "intra_cluster"]
    assert col(out, "path") == ["intra_node", "intra_node"]


def test_cross_cluster_and_cross_cloud_paths():
    meta = two_clusters()
    apply(meta, [convert("pods", ko.pod("app", "batch-west", "10.17.0.5", node="node-1"), "west")])
    apply(meta, [Cluster(name="north", cloud="private")])
    apply(meta, [convert("pods", ko.pod("app", "batch-north", "10.18.0.5"), "north")])
    out = Enricher(meta).enrich(
        flows(
            [("10.16.0.5", "10.17.0.5", 1, 2, 6), ("10.16.0.5", "10.18.0.5", 1, 2, 6)], exporter="127.0.1.1"
        )
    )
    assert col(out, "dst_pod") == ["batch-west", "batch-north"]
    assert col(out, "cluster_path") == ["cross_cloud", "cross_cluster"]
    assert col(out, "path")[0] == "cross_center"


def test_one_cluster_only_reads_as_before(bank):
    out = Enricher(bank).enrich(flows([("10.16.0.5", "8.8.8.8", 1, 53, 17)]))
    assert col(out, "cluster_path") == [""] and col(out, "src_cluster") == [""]
