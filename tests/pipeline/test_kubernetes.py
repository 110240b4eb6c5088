"""The Kubernetes source with the official ``kubernetes`` client, against a local fake API server.

No kube-apiserver installs on the project's machines (not in Debian, not on PyPI), so ``_fake_apiserver``
serves list and chunked watch streams for pods, namespaces, nodes and the Kube-OVN CRDs in
the real wire format (the client deserializes and validates them), including the ERROR
event with a 410 Gone that forces a relist.
"""

import time

import pytest

pytest.importorskip("kubernetes")
from kubernetes import client  # noqa: E402

from netobs.config import ChdbStoreConfig, StoreConfig  # noqa: E402
from netobs.store import make_store  # noqa: E402
from pipeline.enrich import Enricher  # noqa: E402
from pipeline.metadata.kubernetes import KubernetesSource  # noqa: E402
from pipeline.metadata.versions import MetadataStore  # noqa: E402
from tests.pipeline._fake_apiserver import FakeApiServer  # noqa: E402
from tests.pipeline.test_enrich import flows  # noqa: E402

T0 = 1_800_000_000_000


def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def ns(name, tenant):
    return {"metadata": {"name": name, "labels": {"netobs.io/tenant": tenant, "netobs.io/zone": "prod"}}}


def node(name, ip, center):
    return {
        "metadata": {"name": name, "labels": {"netobs.io/center": center}},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }


def pod(name, namespace, ip, node_name, created_ms):
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": iso(created_ms),
            "labels": {"app": name, "pod-template-hash": "5d8f"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{name}-5d8f",
                    "uid": "u1",
                    "controller": True,
                }
            ],
        },
        "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def subnet(name, cidr, vpc, tenant):
    return {
        "metadata": {"name": name, "labels": {"netobs.io/tenant": tenant}},
        "spec": {"cidrBlock": cidr, "vpc": vpc},
    }


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def apiserver():
    server = FakeApiServer().start()
    server.put("namespaces", ns("retail", "retail"))
    server.put("namespaces", ns("payments", "payments"))
    server.put("nodes", node("node-1", "192.0.2.11", "dc1"))
    server.put("subnets", subnet("ovn-default", "10.16.0.0/16", "ovn-cluster", "shared"))
    server.put("vpcs", {"metadata": {"name": "ovn-cluster"}, "spec": {"namespaces": ["retail"]}})
    server.put(
        "ips",
        {
            "metadata": {"name": "vm-1.retail"},
            "spec": {
                "podName": "vm-1",
                "namespace": "retail",
                "ipAddress": "10.16.0.50",
                "nodeName": "node-1",
                "subnet": "ovn-default",
            },
        },
    )
    yield server
    server.stop()


def source(meta, server, clock):
    api = client.ApiClient(client.Configuration(host=server.url))
    return KubernetesSource(meta, api, watch_timeout_s=2, max_backoff_s=0.5, clock=clock)


def test_ip_reuse_by_another_tenant_is_attributed_by_time_also_after_reload(apiserver, tmp_path):
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "db")))
    store.start()
    clock = Clock(T0)
    meta = MetadataStore(store, "netobs")
    meta.ensure()
    src = source(meta, apiserver, clock)
    apiserver.put("pods", pod("web", "retail", "10.16.0.7", "node-1", T0 - 60_000))
    src.start()
    try:
        assert src.wait_synced()
        clock.t = T0 + 10_000
        apiserver.delete("pods", "retail", "web")
        assert wait_for(lambda: not meta.snapshot(T0 + 10_000).get("pod"))
        clock.t = T0 + 20_000
        apiserver.put("pods", pod("pay", "payments", "10.16.0.7", "node-1", T0 + 20_000))
        assert wait_for(lambda: "payments/pay" in meta.snapshot(T0 + 20_000).get("pod", {}))
    finally:
        src.stop()
    table = flows([("10.16.0.7", "192.0.2.11")] * 4, times=[T0 - 1, T0 + 5_000, T0 + 15_000, T0 + 25_000])
    expected_pod = ["web", "web", "", "pay"]
    expected_tenant = ["retail", "retail", "shared", "payments"]
    live = Enricher(meta).enrich(table)
    assert live.column("src_pod").to_pylist() == expected_pod
    assert live.column("src_tenant").to_pylist() == expected_tenant
    assert live.column("src_workload").to_pylist()[0] == "web"  # ReplicaSet hash stripped
    # re-enrichment later, from the history stored in ClickHouse only
    replay = MetadataStore(store, "netobs")
    replay.reload()
    again = Enricher(replay).enrich(table)
    assert again.column("src_pod").to_pylist() == expected_pod
    assert again.column("src_tenant").to_pylist() == expected_tenant
    store.stop()


@pytest.mark.slow
def test_crds_nodes_and_ip_allocations_feed_enrichment(apiserver):
    meta = MetadataStore()
    src = source(meta, apiserver, Clock(T0))
    src.start()
    try:
        assert src.wait_synced()
    finally:
        src.stop()
    t = Enricher(meta).enrich(flows([("10.16.0.50", "192.0.2.11")], times=T0 + 1))
    row = t.to_pylist()[0]
    assert (row["src_pod"], row["src_namespace"], row["src_subnet"], row["src_vpc"], row["src_center"]) == (
        "vm-1",
        "retail",
        "ovn-default",
        "ovn-cluster",
        "dc1",
    )
    assert (row["dst_node"], row["dst_center"]) == ("node-1", "dc1")
    assert "vpc" in meta.snapshot(T0 + 1)


def test_410_gone_forces_a_relist_that_closes_what_vanished(apiserver):
    clock = Clock(T0)
    meta = MetadataStore()
    apiserver.put("pods", pod("web", "retail", "10.16.0.7", "node-1", T0 - 60_000))
    src = source(meta, apiserver, clock)
    src.start()
    try:
        assert src.wait_synced()
        clock.t = T0 + 1000
        apiserver.compact()  # history gone: the next watch gets ERROR 410
        apiserver.objects["pods"].clear()  # and a deletion the client never saw as an event
        assert wait_for(lambda: src.relists >= 1)
        assert wait_for(lambda: not meta.snapshot(T0 + 1000).get("pod"))
    finally:
        src.stop()
    (v,) = meta.versions("pod")
    assert v.valid_to == T0 + 1000
    assert any("watch=true" in r for r in apiserver.requests)


def test_malformed_crd_is_named_and_the_rest_keeps_working(apiserver):
    apiserver.put("subnets", subnet("broken", "10.999.0.0/16", "x", "t"))
    meta = MetadataStore()
    src = source(meta, apiserver, Clock(T0))
    src.start()
    try:
        assert src.wait_synced()
        apiserver.put("pods", pod("web", "retail", "10.16.0.7", "node-1", T0))
        assert wait_for(lambda: meta.snapshot(T0 + 1).get("pod"))
    finally:
        src.stop()
    assert any("subnets broken" in p and "cidr" in p for p in src.problems), src.problems
    assert set(meta.snapshot(T0 + 1)["network"]) == {"ovn-default"}
