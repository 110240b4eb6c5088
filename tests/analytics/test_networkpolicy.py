"""Kubernetes NetworkPolicy conformance on real chdb: flows the declared policies deny are violations.

Pod and namespace labels come from the pipeline's metadata store (``metadata_versions``),
written here by the real ``MetadataStore``; the NetworkPolicies come from YAML files (the
``kubectl get networkpolicy -A -o yaml`` form) or from the fake Kubernetes API server through
the official client. Each case lists flows that must and must not violate.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import textwrap
from datetime import UTC, datetime

import pytest
import yaml

from analytics.policy.conformance import SourceError, resolve
from analytics.policy.evaluate import evaluate
from analytics.policy.loader import PolicyError, load_policy, parse_policy
from analytics.policy.model import NetworkPolicyRule, Policy
from analytics.policy.netpol import NetworkPolicyError, from_files, parse
from analytics.policy.netpol import selector as netpol_selector
from analytics.policy.netpol_sql import (
    NAME_LABEL,
    Compiler,
    Inventory,
    PodVersion,
    _key,
    _name_only,
    _transform,
    load_inventory,
)
from analytics.policy.results import stored
from analytics.policy.testing import evaluate_flows
from pipeline.metadata.model import Namespace, Pod
from pipeline.metadata.versions import Change, MetadataStore

T = "2026-06-01T10:15:00Z"
SINCE = datetime(2026, 1, 1, tzinfo=UTC)

NAMESPACES = {
    "shop": {"team": "shop", "env": "prod"},
    "pay": {"team": "pay", "env": "prod"},
    "dev": {"env": "dev"},
    "monitoring": {"team": "platform"},
}
# name: (namespace, address, node, labels)
PODS = {
    "web": ("shop", "10.0.1.1", "n1", {"app": "web", "tier": "front"}),
    "api": ("shop", "10.0.1.2", "n1", {"app": "api", "tier": "back"}),
    "db": ("shop", "10.0.1.3", "n2", {"app": "db"}),
    "payapi": ("pay", "10.0.2.1", "n2", {"app": "api"}),
    "batch": ("pay", "10.0.2.2", "n2", {"app": "batch"}),
    "tool": ("dev", "10.0.3.1", "n1", {"app": "tool"}),
    "prom": ("monitoring", "10.0.4.1", "n2", {"app": "prometheus"}),
}


def pod(name):
    ns, addr, node, _ = PODS[name]
    return {"addr": addr, "namespace": ns, "pod": f"{name}-1", "workload": name, "node": node}


WEB, API, DB, PAYAPI, BATCH, TOOL, PROM = map(pod, ("web", "api", "db", "payapi", "batch", "tool", "prom"))
GHOST = {"addr": "10.0.1.99", "namespace": "shop", "pod": "ghost-1", "node": "n1"}  # not in the inventory
NODE1 = {"addr": "192.168.0.1", "node": "n1"}
NODE2 = {"addr": "192.168.0.2", "node": "n2"}
NET = {"addr": "203.0.113.7"}
NET_EXCEPT = {"addr": "203.0.113.200"}
OTHER = {"addr": "198.51.100.10"}


def flow(src, dst, dport=80, proto="tcp", sport=40000):
    # Connections as written (the source opened them): these tests are about NetworkPolicy semantics,
    # not about the counting model's initiator, which would turn a 5432 -> 40000 record around.
    return {"time": T, "src": src, "dst": dst, "src_port": sport, "dst_port": dport, "proto": proto,
            "initiator": "src"}  # fmt: skip


def np_(name, ns, spec):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}  # fmt: skip


DENY_SHOP = np_("default-deny", "shop", {"podSelector": {}, "policyTypes": ["Ingress"]})
DB_SEL = {"matchLabels": {"app": "db"}}
WEB_SEL = {"matchLabels": {"app": "web"}}

# name, NetworkPolicies, flows that must violate, flows that must not
CASES = [
    (
        "default-deny ingress",
        [DENY_SHOP],
        [flow(TOOL, WEB), flow(PAYAPI, DB, 5432), flow(NODE2, WEB), flow(TOOL, GHOST)],
        [flow(WEB, PAYAPI), flow(NET, TOOL), flow(NODE1, WEB), flow(WEB, NODE1)],
    ),
    (
        "allow same namespace",
        [DENY_SHOP, np_("same-ns", "shop", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})],
        [flow(PAYAPI, DB, 5432), flow(NET, WEB)],
        [flow(API, DB, 5432), flow(WEB, API, 8080), flow(GHOST, WEB)],
    ),
    (
        "namespaceSelector AND podSelector in one peer",
        [np_("db-in", "shop", {"podSelector": DB_SEL, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"team": "pay"}}, "podSelector": {"matchLabels": {"app": "api"}}}
        ]}]})],
        [flow(API, DB, 5432), flow(BATCH, DB, 5432), flow(TOOL, DB)],
        [flow(PAYAPI, DB, 5432), flow(TOOL, WEB)],
    ),
    (
        "namespaceSelector OR podSelector as two peers",
        [np_("db-in", "shop", {"podSelector": DB_SEL, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"team": "pay"}}}, {"podSelector": {"matchLabels": {"app": "api"}}}
        ]}]})],
        [flow(TOOL, DB), flow(WEB, DB), flow(PROM, DB)],
        [flow(PAYAPI, DB, 5432), flow(BATCH, DB, 5432), flow(API, DB, 5432)],
    ),
    (
        "ipBlock with except",
        [np_("web-in", "shop", {"podSelector": WEB_SEL, "ingress": [{"from": [
            {"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}}
        ]}]})],
        [flow(NET_EXCEPT, WEB), flow(OTHER, WEB), flow(API, WEB)],
        [flow(NET, WEB), flow(NET, API)],
    ),
    (
        "ipBlock IPv6",
        [np_("web-in6", "shop", {"podSelector": WEB_SEL, "ingress": [{"from": [
            {"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:ff::/48"]}}]}]})],
        [flow({"addr": "2001:db9::1"}, WEB), flow({"addr": "2001:db8:ff::1"}, WEB), flow(NET, WEB)],
        [flow({"addr": "2001:db8:1::1"}, WEB)],
    ),
    (
        "ports with endPort and protocols",
        [np_("db-in", "shop", {"podSelector": DB_SEL, "ingress": [{
            "from": [{"podSelector": {"matchLabels": {"app": "api"}}}],
            "ports": [{"port": 5432}, {"protocol": "UDP", "port": 8000, "endPort": 8100}],
        }]})],
        [flow(API, DB, 5433), flow(API, DB, 8101, "udp"), flow(API, DB, 8050), flow(API, DB, 0, "icmp", 0)],
        [flow(API, DB, 5432), flow(API, DB, 8050, "udp"), flow(API, DB, 8000, "udp"), flow(API, DB, 8100, "udp")],
    ),
    (
        "egress only; outside the cluster only by ipBlock",
        [np_("web-out", "shop", {"podSelector": WEB_SEL, "policyTypes": ["Egress"], "egress": [
            {"to": [{"podSelector": {"matchLabels": {"app": "api"}}}], "ports": [{"port": 8080}]},
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}], "ports": [{"port": 443}]},
            {"to": [{"namespaceSelector": {}}], "ports": [{"port": 53, "protocol": "UDP"}]},
        ]})],
        [flow(WEB, DB, 5432), flow(WEB, NET, 80), flow(WEB, PAYAPI, 443), flow(WEB, NET, 53, "udp")],
        [flow(WEB, API, 8080), flow(WEB, NET, 443), flow(TOOL, WEB, 80), flow(WEB, PAYAPI, 53, "udp")],
    ),
    (
        "policyTypes without rules deny both ways",
        [np_("isolate-tool", "dev", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})],
        [flow(TOOL, NET, 443), flow(WEB, TOOL), flow(TOOL, WEB)],
        [flow(WEB, PAYAPI), flow(NODE1, TOOL), flow(NET, WEB)],
    ),
    (
        "egress rules without policyTypes also isolate ingress",
        [np_("pay-out", "pay", {"podSelector": {"matchLabels": {"app": "api"}}, "egress": [{}]})],
        [flow(WEB, PAYAPI, 8080)],
        [flow(PAYAPI, NET, 443), flow(PAYAPI, DB, 5432), flow(WEB, BATCH, 8080)],
    ),
    (
        "multiple policies are a union",
        [
            np_("db-api", "shop", {"podSelector": DB_SEL, "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "api"}}}], "ports": [{"port": 5432}]}]}),
            np_("db-metrics", "shop", {"podSelector": DB_SEL, "ingress": [
                {"from": [{"namespaceSelector": {"matchLabels": {"team": "platform"}}}], "ports": [{"port": 9187}]}]}),
        ],
        [flow(PROM, DB, 5432), flow(API, DB, 9187), flow(WEB, DB, 5432)],
        [flow(API, DB, 5432), flow(PROM, DB, 9187)],
    ),
    (
        "matchExpressions In, NotIn, Exists, DoesNotExist",
        [np_("front", "shop", {"podSelector": {"matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front"]}]}, "ingress": [{"from": [
                {"podSelector": {"matchExpressions": [
                    {"key": "app", "operator": "NotIn", "values": ["db"]},
                    {"key": "tier", "operator": "Exists"}]}},
                {"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}},
            ]}]})],
        [flow(DB, WEB), flow(TOOL, WEB), flow(PAYAPI, WEB), flow(GHOST, WEB)],
        [flow(API, WEB), flow(PROM, WEB), flow(TOOL, API)],
    ),
    (
        "replies of allowed connections",
        [DENY_SHOP, np_("db-from-web", "shop", {"podSelector": DB_SEL, "ingress": [
            {"from": [{"podSelector": WEB_SEL}], "ports": [{"port": 5432}]}]})],
        [flow(DB, WEB, 40000, sport=6000), flow(DB, WEB, 80, sport=40000)],
        [flow(WEB, DB, 5432), flow(DB, WEB, 40000, sport=5432)],
    ),
]  # fmt: skip


@pytest.fixture(scope="module")
def store(module_store_factory):
    """One embedded store with the pod inventory in its metadata store."""
    s = module_store_factory(retention_days=0)
    meta = MetadataStore(s, s.database)
    meta.ensure()
    objs = [Namespace(name=n, labels=lab) for n, lab in NAMESPACES.items()]
    for name, (ns, addr, node, labels) in PODS.items():
        objs.append(Pod(name=f"{name}-1", namespace=ns, ip=addr, node=node, workload=name, labels=labels))
    meta.apply([Change.upsert(o, "test") for o in objs], at=SINCE, new_from=SINCE)
    return s


def policy_for(tmp_path, objects, **rule) -> Policy:
    path = tmp_path / "netpol.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    text = yaml.safe_dump(
        {
            "name": "k8s",
            "rules": [
                {
                    "id": "netpol",
                    "type": "networkpolicy_conformance",
                    "severity": "high",
                    "owner": "platform",
                    "regulations": ["PCI DSS 1.3"],
                    "files": ["netpol.yaml"],
                    **rule,
                }
            ],
        }
    )
    (tmp_path / "policy.yaml").write_text(text)
    return load_policy(tmp_path / "policy.yaml")


def violating(store, policy, flows):
    return [v for v in evaluate_flows(store, policy, flows, evidence=1) if v["rule"] == "netpol"]


def _pair(f):
    return (f["src"]["addr"], f["dst"]["addr"], f["src_port"], f["dst_port"])


@pytest.mark.slow
@pytest.mark.parametrize("name,objects,bad,good", CASES, ids=[c[0] for c in CASES])
def test_cases(store, tmp_path, name, objects, bad, good):
    policy = policy_for(tmp_path, objects)
    for f in bad:
        assert len(violating(store, policy, [f])) == 1, f"must violate: {f}"
    for f in good:
        assert violating(store, policy, [f]) == [], f"must not violate: {f}"


def test_violation_names_the_isolating_policies_and_carries_the_rule(store, tmp_path):
    policy = policy_for(tmp_path, CASES[10][1])  # two policies select the db pod
    (v,) = violating(store, policy, [flow(WEB, DB, 5432)])
    assert (v["rule_type"], v["severity"], v["owner"], v["regulations"]) == (
        "networkpolicy_conformance",
        "high",
        "platform",
        ["PCI DSS 1.3"],
    )
    assert v["server"]["namespace"] == "shop" and v["server"]["workload"] == "db"
    assert v["evidence"][0]["detail"] == "ingress of dst isolated by shop/db-api, shop/db-metrics"


def test_replies_none_judges_every_flow_as_a_connection(store, tmp_path):
    policy = policy_for(tmp_path, CASES[12][1], replies="none")
    assert len(violating(store, policy, [flow(DB, WEB, 40000, sport=5432)])) == 1


def test_exemption_suspends_the_rule(store, tmp_path):
    policy = policy_for(tmp_path, [DENY_SHOP])
    exempt = Policy.model_validate(
        {
            **policy.model_dump(by_alias=True, exclude={"rules"}),
            "rules": [r.model_dump(by_alias=True) for r in policy.rules],
            "zones": {"dev": {"match": [{"namespace": ["dev"]}]}},
            "exemptions": [
                {"id": "x", "rule": "netpol", "from": "dev", "approver": "ciso", "reason": "pentest",
                 "expires": "2027-01-01", "review": "2026-12-01"}
            ],
        }
    )  # fmt: skip
    assert violating(store, exempt, [flow(TOOL, WEB)]) == []
    assert len(violating(store, exempt, [flow(PAYAPI, WEB)])) == 1


def test_named_port_is_flagged_and_matches_nothing(store, tmp_path):
    objects = [np_("named", "shop", {"podSelector": WEB_SEL, "ingress": [{"ports": [{"port": "http"}]}]})]
    policy = policy_for(tmp_path, objects)
    _, warnings = resolve(policy, store.query_arrow, store.database, *_window())
    assert any("shop/named" in w and "'http'" in w for w in warnings)
    assert len(violating(store, policy, [flow(TOOL, WEB, 80)])) == 1


def _window():
    return datetime(2026, 6, 1, 10, tzinfo=UTC), datetime(2026, 6, 1, 11, tzinfo=UTC)


BROKEN = [
    np_("bad-op", "shop", {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Like"}]}}),
    np_("no-selector", "shop", {"ingress": []}),
    np_("bad-except", "shop", {"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]}}]}]}),
    np_("bad-port", "shop", {"podSelector": {}, "ingress": [{"ports": [{"port": 80, "endPort": 70}]}]}),
    np_("bad-proto", "shop", {"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]}),
    np_("mixed-peer", "shop", {"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}),
    {"kind": "NetworkPolicy", "metadata": {"name": "nameless"}, "spec": {"podSelector": {}}},
]  # fmt: skip


def test_malformed_objects_are_named_and_the_rest_keep_working(store, tmp_path):
    policy = policy_for(tmp_path, [*BROKEN, DENY_SHOP])
    _, warnings = resolve(policy, store.query_arrow, store.database, *_window())
    for name in ("shop/bad-op", "shop/no-selector", "shop/bad-except", "shop/bad-port", "shop/bad-proto",
                 "shop/mixed-peer", "without metadata.name/namespace"):  # fmt: skip
        assert any(name in w for w in warnings), (name, warnings)
    assert any("Like" in w for w in warnings) and any("192.168.0.0/16" in w for w in warnings)
    assert len(violating(store, policy, [flow(TOOL, WEB)])) == 1  # default-deny still enforced


@pytest.mark.parametrize(
    "spec,types",
    [
        ({"podSelector": {}}, {"Ingress"}),
        ({"podSelector": {}, "egress": [{}]}, {"Ingress", "Egress"}),
        ({"podSelector": {}, "egress": []}, {"Ingress"}),
        ({"podSelector": {}, "policyTypes": ["Egress"]}, {"Egress"}),
    ],
)
def test_policy_types_default(spec, types):
    assert parse(np_("p", "ns", spec)).types == types


def test_a_list_in_one_file_and_a_directory(tmp_path):
    (tmp_path / "a.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [DENY_SHOP]})
    )
    (tmp_path / "b.yml").write_text(yaml.safe_dump_all([np_("x", "pay", {"podSelector": {}}), None]))
    (tmp_path / "notes.txt").write_text("ignored")
    policies, problems = from_files([tmp_path])
    assert [p.ref for p in policies] == ["pay/x", "shop/default-deny"] and problems == []


def test_parse_errors_name_the_object():
    with pytest.raises(NetworkPolicyError, match=r"NetworkPolicy shop/p: spec.ingress\[0\].from\[0\]"):
        parse(np_("p", "shop", {"podSelector": {}, "ingress": [{"from": [{}]}]}))


def test_rule_needs_a_source_and_missing_files_are_an_error(store, tmp_path):
    with pytest.raises(PolicyError, match="files and/or kubernetes"):
        parse_policy("rules: [{id: n, type: networkpolicy_conformance}]")
    rule = NetworkPolicyRule.model_validate(
        {"id": "n", "type": "networkpolicy_conformance", "files": ["/nope"]}
    )
    with pytest.raises(SourceError, match="/nope"):
        resolve(Policy(rules=(rule,)), store.query_arrow, store.database, *_window())


def test_pod_relabelled_within_the_window(store, tmp_path):
    """Flows are judged by the labels the pod had at the flow's start."""
    meta = MetadataStore(store, store.database)
    meta.reload()
    shift = datetime(2026, 6, 1, 10, 30, tzinfo=UTC)
    labels = {"app": "web", "tier": "front", "quarantine": "yes"}
    web = Pod(name="web-1", namespace="shop", ip="10.0.1.1", node="n1", workload="web", labels=labels)
    meta.apply([Change.upsert(web, "test")], at=shift)
    try:
        objects = [
            np_(
                "q",
                "shop",
                {"podSelector": {"matchLabels": {"quarantine": "yes"}}, "policyTypes": ["Ingress"]},
            )
        ]
        policy = policy_for(tmp_path, objects)
        before, after = flow(TOOL, WEB), {**flow(TOOL, WEB), "time": "2026-06-01T10:45:00Z"}
        assert violating(store, policy, [before]) == []
        assert len(violating(store, policy, [after])) == 1
    finally:
        meta.apply([Change.upsert(Pod(**{**web.model_dump(), "labels": PODS["web"][3]}), "test")], at=shift)


def test_kubernetes_api_source(store, tmp_path):
    pytest.importorskip("kubernetes")
    from tests.pipeline._fake_apiserver import FakeApiServer

    api = FakeApiServer().start()
    try:
        stored_form = {**DENY_SHOP, "metadata": {**DENY_SHOP["metadata"], "uid": "u1", "generation": 1}}
        api.put("networkpolicies", stored_form)
        api.put("networkpolicies", BROKEN[0])
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            textwrap.dedent(f"""\
                apiVersion: v1
                kind: Config
                clusters: [{{name: fake, cluster: {{server: "{api.url}"}}}}]
                users: [{{name: u, user: {{token: not-a-secret}}}}]
                contexts: [{{name: fake, context: {{cluster: fake, user: u}}}}]
                current-context: fake
            """)
        )
        policy = policy_for(tmp_path, [], kubernetes={"kubeconfig": str(kubeconfig)}, files=[])
        _, warnings = resolve(policy, store.query_arrow, store.database, *_window())
        assert any("kubernetes shop/bad-op" in w for w in warnings)
        assert "/apis/networking.k8s.io/v1/networkpolicies" in api.requests
        assert len(violating(store, policy, [flow(TOOL, WEB)])) == 1
        assert violating(store, policy, [flow(WEB, TOOL)]) == []
    finally:
        api.stop()
    with pytest.raises(SourceError, match="cannot list NetworkPolicies"):
        resolve(policy, store.query_arrow, store.database, *_window())


def test_check_stores_violations_with_evidence(store, tmp_path):
    """The scheduled path: evaluate() into the violations table, read back by stored()."""
    from analytics.policy.fixtures import flows_table

    policy = policy_for(tmp_path, [DENY_SHOP])
    store.insert(flows_table([flow(TOOL, WEB), flow(WEB, PAYAPI)]))
    start, end = evaluate(store, policy, *_window())
    (v,) = stored(store.query_arrow, store.database, "k8s", start, end)
    assert v["client"]["namespace"] == "dev" and v["evidence"][0]["detail"].endswith("shop/default-deny")


@pytest.mark.parametrize(
    "selector,expected",
    [
        ({"matchLabels": {NAME_LABEL: "shop"}}, "src_namespace = 'shop'"),
        ({"matchLabels": {"team": "pay"}}, "0"),
        ({"matchExpressions": [{"key": NAME_LABEL, "operator": "NotIn", "values": ["a", "b"]}]},
         "NOT (src_namespace IN ('a', 'b'))"),
        ({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}, "1"),
        ({"matchExpressions": [{"key": "env", "operator": "Exists"}]}, "0"),
    ],
)  # fmt: skip
def test_unknown_namespaces_are_matched_by_their_name_label_only(selector, expected):
    assert _name_only(netpol_selector(selector, "s"), "src") == expected


def test_lookup_sql_pieces():
    assert _transform("x", {}, "toUInt32(0)") == "toUInt32(0)"
    assert _transform("ns", {"a": 3}, "0") == "transform(ns, ['a'], CAST([3] AS Array(UInt32)), 0)"
    assert (
        _transform("k", {7: 1}, "0")
        == "transform(k, CAST([7] AS Array(UInt64)), CAST([1] AS Array(UInt32)), 0)"
    )
    assert _key(2, 5, 1) == (2 << 40) + (5 << 16) + 1  # the SQL side builds the same number


def test_classes_group_pods_by_namespace_and_labels():
    inv = Inventory(
        pods=[PodVersion(ns, f"{name}-1", tuple(sorted(lab.items())), 0, 1 << 42, name) for name, (ns, _, _, lab) in PODS.items()],
        namespaces=NAMESPACES,
    )  # fmt: skip
    c = Compiler([parse(o) for o in CASES[10][1]], inv, *_window())
    classes = c.classes("Ingress")
    assert list(classes) == [("shop/db-api", "shop/db-metrics")]
    assert classes[("shop/db-api", "shop/db-metrics")] == [("shop", (("app", "db"),))]
    assert c.classes("Egress") == {}


# ---- bank scale: 3,000 pods, ~1,000 NetworkPolicies, lookup maps in a table -------------------------
BANK_T = "2026-07-01T10:15:00Z"
BANK_SINCE = datetime(2026, 7, 1, tzinfo=UTC)  # after the other tests' windows: they never see these pods
PROTO = {"tcp": 6, "udp": 17}


def _bank_cluster(rng, n_namespaces=60):
    """Namespaces of 50 pods, and 17-18 NetworkPolicies per namespace of the kinds banks write."""
    namespaces = {
        f"bank-{i:02}": {"team": f"t{i % 6}", "env": ("prod", "dev", "uat")[i % 3]}
        for i in range(n_namespaces)
    }
    pods = {}
    for i, ns in enumerate(namespaces):
        for j in range(50):
            labels = {"app": f"app{j % 25}", "tier": ("front", "back", "data")[j % 3]}
            pods[(ns, f"w{j}-0")] = (f"10.200.{i}.{j + 1}", f"bn{(i + j) % 20}", f"w{j}", labels)
    objects = []
    for ns in namespaces:
        for k in range(rng.choice((17, 18))):
            app = {"matchLabels": {"app": f"app{rng.randrange(25)}"}}
            port = [{"protocol": "TCP", "port": rng.choice((80, 443, 5432, 8000))}]
            kind = k % 7
            if kind == 0:
                spec = {
                    "podSelector": app,
                    "ingress": [
                        {
                            "from": [{"podSelector": {"matchLabels": {"app": f"app{rng.randrange(25)}"}}}],
                            "ports": port,
                        }
                    ],
                }
            elif kind == 1:
                spec = {
                    "podSelector": app,
                    "ingress": [
                        {"from": [{"namespaceSelector": {"matchLabels": {"team": f"t{rng.randrange(6)}"}}}]}
                    ],
                }
            elif kind == 2:
                spec = {
                    "podSelector": app,
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [
                                {
                                    "ipBlock": {
                                        "cidr": "10.200.0.0/16",
                                        "except": [f"10.200.{rng.randrange(60)}.0/24"],
                                    }
                                }
                            ],
                            "ports": [{"protocol": "TCP", "port": 5432}, {"protocol": "UDP", "port": 53}],
                        }
                    ],
                }
            elif kind == 3:
                spec = {
                    "podSelector": {
                        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["back", "data"]}]
                    },
                    "ingress": [
                        {
                            "from": [
                                {
                                    "namespaceSelector": {"matchLabels": {"env": "prod"}},
                                    "podSelector": {"matchLabels": {"tier": "front"}},
                                }
                            ],
                            "ports": [{"protocol": "TCP", "port": 8000, "endPort": 8100}],
                        }
                    ],
                }
            elif kind == 4:
                spec = {
                    "podSelector": app,
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}],
                    "egress": [
                        {
                            "to": [
                                {
                                    "namespaceSelector": {
                                        "matchLabels": {NAME_LABEL: rng.choice(list(namespaces))}
                                    }
                                }
                            ]
                        }
                    ],
                }
            elif kind == 5:
                spec = {"podSelector": app, "ingress": [{"from": [{"podSelector": {}}], "ports": port}]}
            else:  # deny all ingress to one tier
                spec = {
                    "podSelector": {
                        "matchLabels": {
                            "tier": ("front", "back", "data")[rng.randrange(3)],
                            "app": f"app{rng.randrange(25)}",
                        }
                    }
                }
            objects.append(np_(f"np{k}", ns, spec))
    return namespaces, pods, objects


def _oracle(policies, inv: Inventory, flows):
    """Flows the policies deny, judged one by one in Python over the parsed NetworkPolicies."""
    ns_labels = {ns: {**lab, NAME_LABEL: ns} for ns, lab in inv.namespaces.items()}
    labels = {(p.namespace, p.name): dict(p.labels) for p in inv.pods}

    def end_of(e):
        if not e.get("pod"):
            return None
        return e["namespace"], labels.get((e["namespace"], e["pod"]), {})

    def in_block(addr, block):
        a = ipaddress.ip_address(addr)
        return a in ipaddress.ip_network(block.cidr) and not any(
            a in ipaddress.ip_network(x) for x in block.excepts
        )

    def peer_ok(np, peer, e):
        if peer.ip_block is not None:
            return in_block(e["addr"], peer.ip_block)
        other = end_of(e)
        if other is None:
            return False
        ns, lab = other
        pods = peer.pods or netpol_selector({}, "x")
        if peer.namespaces is None:
            return ns == np.namespace and pods.matches(lab)
        return peer.namespaces.matches(ns_labels.get(ns, {NAME_LABEL: ns})) and pods.matches(lab)

    def port_ok(rule, proto, port):
        if not rule.ports:
            return True
        for p in rule.ports:
            if isinstance(p.port, str) or p.protocol != proto:
                continue
            if p.port is None or p.port <= port <= (p.end_port or p.port):
                return True
        return False

    def side_ok(direction, isolated, peer, proto, port):
        me = end_of(isolated)
        if me is None:
            return True
        ns, lab = me
        selecting = [
            p for p in policies if p.namespace == ns and direction in p.types and p.pod_selector.matches(lab)
        ]
        if not selecting:
            return True
        rules = [(p, r) for p in selecting for r in (p.ingress if direction == "Ingress" else p.egress)]
        return any(
            (not r.peers or any(peer_ok(np, pe, peer) for pe in r.peers)) and port_ok(r, proto, port)
            for np, r in rules
        )

    def denied(client, server, proto, port):
        return not (
            side_ok("Ingress", server, client, proto, port) and side_ok("Egress", client, server, proto, port)
        )

    out = []
    for f in flows:
        proto = PROTO[f["proto"]]
        bad = denied(f["src"], f["dst"], proto, f["dst_port"])
        if bad and f["src_port"] < f["dst_port"] and not denied(f["dst"], f["src"], proto, f["src_port"]):
            bad = False  # a reply to an allowed connection
        if bad:
            out.append(f)
    return out


@pytest.mark.slow
def test_bank_scale_cluster_matches_a_per_flow_reference(store, tmp_path):
    """3,000 pods and ~1,050 policies: small SQL (the lookup maps live in a table), chdb's default
    limits, and the same violations as a per-flow Python evaluation of the same objects."""
    rng = random.Random(6)
    namespaces, pods, objects = _bank_cluster(rng)
    assert len(pods) == 3000 and len(objects) > 1000
    meta = MetadataStore(store, store.database)
    objs = [Namespace(name=n, labels=lab) for n, lab in namespaces.items()]
    objs += [Pod(name=name, namespace=ns, ip=addr, node=node, workload=wl, labels=lab)
             for (ns, name), (addr, node, wl, lab) in pods.items()]  # fmt: skip
    meta.apply([Change.upsert(o, "test") for o in objs], at=BANK_SINCE, new_from=BANK_SINCE)

    def end(key):
        addr, node, wl, _ = pods[key]
        return {"addr": addr, "namespace": key[0], "pod": key[1], "workload": wl, "node": node}

    keys = list(pods)
    outside = [{"addr": "203.0.113.9"}, {"addr": "198.51.100.4"}]
    flows, seen = [], set()
    while len(flows) < 400:
        src = end(rng.choice(keys)) if rng.random() > 0.05 else rng.choice(outside)
        dst = end(rng.choice(keys)) if rng.random() > 0.05 else rng.choice(outside)
        if (src["addr"], dst["addr"]) in seen or src["addr"] == dst["addr"]:
            continue
        seen.add((src["addr"], dst["addr"]))
        proto = "udp" if rng.random() < 0.1 else "tcp"
        dport = rng.choice((53, 80, 443, 5432, 8000, 8050, 8200))
        sport = rng.choice((40000, 51000, 80, 443)) if proto == "tcp" else 40000
        f = {"time": BANK_T, "src": src, "dst": dst, "src_port": sport, "dst_port": dport, "proto": proto,
             "initiator": "src"}  # fmt: skip
        flows.append(f)

    policy = policy_for(tmp_path, [])
    # One List object in JSON (valid YAML, and what `kubectl get -o json` prints): quick to write.
    (tmp_path / "netpol.yaml").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    lo, hi = datetime(2026, 7, 1, 10, tzinfo=UTC), datetime(2026, 7, 1, 11, tzinfo=UTC)
    stale = "netpol_lookup_20000_0123456789abcdef0123"  # a day long past: dropped on the way
    store.execute(f"CREATE TABLE `{store.database}`.`{stale}` (m UInt32) ENGINE = Log")
    resolved, _ = resolve(policy, store.query_arrow, store.database, lo, hi)
    condition, detail = resolved._resolved["netpol"]
    assert len(condition) + len(detail) < 64 * 1024  # inlined, it was ~500 KiB
    tables = (
        store.query_arrow(
            f"SELECT name FROM system.tables WHERE database = '{store.database}' AND name LIKE 'netpol_lookup_%'"
        )
        .column("name")
        .to_pylist()
    )
    assert stale not in tables
    assert len(tables) == 1 and re.fullmatch(r"netpol_lookup_\d+_[0-9a-f]{20}", tables[0])  # no scratch left

    found = [v for v in evaluate_flows(store, resolved, flows, evidence=1) if v["rule"] == "netpol"]
    assert all(v["flows"] == 1 for v in found)  # one flow per pair of ends: evidence names it
    got = sorted((v["evidence"][0]["src_addr"], v["evidence"][0]["dst_addr"]) for v in found)
    inv, _ = load_inventory(store.query_arrow, store.database, lo, hi)
    want = sorted(
        (f["src"]["addr"], f["dst"]["addr"]) for f in _oracle([parse(o) for o in objects], inv, flows)
    )
    assert 50 < len(want) < 350  # both outcomes are well represented
    assert got == want
    # A second evaluation of the same cluster reuses the table instead of writing another.
    resolve(policy, store.query_arrow, store.database, lo, hi)
    assert (
        store.query_arrow(
            f"SELECT name FROM system.tables WHERE database = '{store.database}' AND name LIKE 'netpol_lookup_%'"
        )
        .column("name")
        .to_pylist()
        == tables
    )
