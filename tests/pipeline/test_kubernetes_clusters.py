"""Several clusters through the real Kubernetes client: two API servers, each with its own token.

Each fake API server serves its cluster's objects in the real wire format (Kube-OVN CRDs included)
and refuses a request without its own bearer token. The enricher is built from the configuration
(``enrich.kubernetes`` + ``enrich.clusters``, one kubeconfig each), as ``netobs run`` builds it.
"""

from __future__ import annotations

import time

import yaml

from netobs_app.settings import Settings
from pipeline.config import EnrichConfig, KubernetesEnrichConfig
from pipeline.enrich import make_enricher
from tests.pipeline import _kube_ovn as ko
from tests.pipeline._fake_apiserver import FakeApiServer
from tests.pipeline.test_planes import col, flows

CORE = ("pods", "namespaces", "nodes", "services", "subnets", "vpcs", "ips")


def kubeconfig(path, server: FakeApiServer, token: str) -> str:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server.url}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))  # fmt: skip
    return str(path)


def wait_for(cond, timeout=20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_two_clusters_each_with_its_credentials_overlapping_cidrs_and_nat(tmp_path):
    east = FakeApiServer(token="tok-east").start()
    west = FakeApiServer(token="tok-west", serve=CORE).start()  # west runs no NAT gateway CRDs
    try:
        for server, name, node_ip, tenant in (
            (east, "east", "127.0.1.1", "retail"),
            (west, "west", "127.0.2.1", "corporate"),
        ):
            server.put("nodes", ko.node("node-1", node_ip))
            server.put("namespaces", ko.namespace("app", tenant=tenant))
            server.put("subnets", ko.subnet("ovn-default", "10.16.0.0/16"))
            server.put("pods", ko.pod("app", f"web-{name}", "10.16.0.5", node="node-1"))
        east.put("subnets", ko.subnet("storage", "10.20.0.0/24", provider="storage-net.storage.ovn"))
        east.put(
            "pods",
            ko.pod(
                "app",
                "api-east",
                "10.16.0.7",
                node="node-1",
                attachments=[("storage/storage-net", "net1", "10.20.0.7")],
            ),
        )
        east.put("iptables-eips", ko.iptables_eip("eip1", "198.18.0.100"))
        east.put("iptables-snat-rules", ko.iptables_snat("snat1", "eip1", "10.20.0.7/32"))
        east.put("vlans", ko.vlan("vlan100", 100, "underlay"))
        east.put("provider-networks", ko.provider_network("underlay", "eth1"))
        east.put("qos-policies", ko.qos_policy("eip-limit", "100"))
        cfg = EnrichConfig(
            kubernetes=KubernetesEnrichConfig(enabled=True, cluster="east", cloud="private",
                                              kubeconfig=kubeconfig(tmp_path / "east", east, "tok-east")),
            clusters=(KubernetesEnrichConfig(enabled=True, cluster="west", cloud="public",
                                             kubeconfig=kubeconfig(tmp_path / "west", west, "tok-west")),),
        )  # fmt: skip
        enricher = make_enricher(Settings(enrich=cfg))
        enricher.start()
        try:
            assert all(s.wait_synced(30) for s in enricher.sources)
            meta = enricher.metadata
            assert wait_for(lambda: meta.current("nat", "east::snat1") is not None)
            assert meta.current("vlan", "east::vlan100") == {
                "cluster": "east",
                "name": "vlan100",
                "id": 100,
                "provider": "underlay",
            }
            assert meta.current("qos_policy", "east::eip-limit")["rules"][0]["rate_max_mbps"] == 100
            out = enricher.enrich(
                flows([("10.16.0.5", "8.8.8.8", 1, 53, 17), ("10.16.0.5", "8.8.8.8", 1, 53, 17),
                       ("198.18.0.100", "203.0.113.9", 40000, 443, 6), ("10.20.0.7", "10.16.0.5", 40001, 80, 6)],
                      exporter=["127.0.1.1", "127.0.2.1", "127.0.1.1", "127.0.1.1"])
            )  # fmt: skip
        finally:
            enricher.stop()
        assert col(out, "src_pod") == ["web-east", "web-west", "api-east", "api-east"]
        assert col(out, "src_cluster") == ["east", "west", "east", "east"]
        assert col(out, "src_tenant")[:2] == ["retail", "corporate"]
        assert col(out, "src_nat")[2] == "snat" and col(out, "nat_confidence")[2] == 95
        assert col(out, "src_plane")[3] == "storage/storage-net"
        assert east.unauthorized == 0 and west.unauthorized == 0
        assert any("/apis/kubeovn.io/v1/ovn-fips" in r for r in west.requests)  # asked, 404, not watched
    finally:
        east.stop()
        west.stop()


def test_a_source_with_the_wrong_token_is_refused_and_names_nothing(tmp_path):
    server = FakeApiServer(token="right").start()
    try:
        server.put("pods", ko.pod("app", "web", "10.16.0.5"))
        cfg = EnrichConfig(
            kubernetes=KubernetesEnrichConfig(
                enabled=True,
                cluster="east",
                kubeconfig=kubeconfig(tmp_path / "k", server, "wrong"),
                max_backoff_s=0.2,
            )
        )
        enricher = make_enricher(Settings(enrich=cfg))
        enricher.start()
        try:
            assert not enricher.sources[0].wait_synced(1.0)
        finally:
            enricher.stop()
        assert server.unauthorized > 0
        assert col(enricher.enrich(flows([("10.16.0.5", "8.8.8.8", 1, 53, 17)])), "src_pod") == [""]
    finally:
        server.stop()
