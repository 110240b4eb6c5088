"""A declared traffic class starved on a link that a Kube-OVN QoSPolicy limits (``link_qos``).

The detector's rule on hand-made series; the limits of links resolved from metadata versions
(EIP and NAT gateway bindings, policy changes, matchValue rules); then end to end: the QoSPolicy,
IptablesEIP and VpcNatGateway objects served by the fake API server in Kube-OVN's wire format and
watched by the real Kubernetes client into the metadata history in the embedded store, and
conversations of known rate and DSCP exported under a counting convention and sampling drawn at
test time, decoded, enriched and stored. Seeds are drawn at test time and printed.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import jsonschema
import numpy as np
import pandas as pd
import pytest

from analytics import model
from analytics.config import LinkQosConfig
from analytics.detectors.link_qos import detect_starved_classes
from analytics.findings import schema

BUCKET = timedelta(minutes=5)
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
MS0 = int(T0.timestamp() * 1000)
END = 1 << 62
CFG = LinkQosConfig.model_validate(
    {"classes": [{"name": "payments", "dscp": ["EF", "AF41"], "min_share": 0.2}]}
)


@pytest.fixture()
def rnd() -> random.Random:
    seed = random.SystemRandom().randrange(1 << 30)
    print("seed", seed)
    return random.Random(seed)


def usage(total_mbps: list[float], pay_mbps: list[float], limit=10.0, sampled=5000, link="eip/eip-pay"):
    """Rows of one rule: per bucket the payments (klass 1) and the rest (klass 0)."""
    secs = BUCKET.total_seconds()
    rows = []
    for i, (t, p) in enumerate(zip(total_mbps, pay_mbps, strict=True)):
        for klass, mbps in ((1, p), (0, t - p)):
            n = sampled * mbps / t if t else 0
            rows.append((pd.Timestamp(T0 + i * BUCKET), "", link, "qos", "limit", "egress", limit, "", klass,
                         "10.0.0.1", mbps * 1e6 * secs / 8, n))  # fmt: skip
    return pd.DataFrame(rows, columns=["time", *model.RULE_COLS, "klass", "exporter", "bytes", "raw_packets"])


def kinds(found) -> list[tuple]:
    return [(f.type, f.window_start, f.window_end) for f in found]


def test_a_full_link_that_squeezes_payments_below_their_floor_and_their_demand():
    # 10 Mbit/s link: payments at 3 while it has room, then bulk fills it and payments get 0.5
    found = detect_starved_classes(usage([6, 6, 9.8, 9.9, 9.7], [3, 3, 0.5, 0.4, 3]), CFG, BUCKET)
    assert kinds(found) == [("qos_class_starved", T0 + 2 * BUCKET, T0 + 4 * BUCKET)]
    f = found[0]
    assert f.entities == {"cluster": "", "link": "eip/eip-pay", "policy": "qos", "rule": "limit",
                          "direction": "egress", "class": "payments"}  # fmt: skip
    assert f.evidence["floor_bits_per_s"] == 2_000_000 and f.evidence["demand_bits_per_s"] == 3_000_000
    assert f.evidence["other_share"][0] == pytest.approx(1 - 0.5 / 9.8, abs=1e-3)
    assert "below its floor of 2 Mbit/s" in f.summary
    jsonschema.validate(f.to_json(), schema())  # what analyze writes, the table stores and alerts read


def test_near_misses_do_not_fire():
    # below the limit (8.5 < 9): payments low but the link has room
    assert detect_starved_classes(usage([6, 6, 8.5], [3, 3, 0.5]), CFG, BUCKET) == []
    # at the limit with payments at their share (2.5 >= 2)
    assert detect_starved_classes(usage([6, 6, 9.9], [3, 3, 2.5]), CFG, BUCKET) == []
    # at the limit, below the floor, but they never wanted more (1 while the link had room)
    assert detect_starved_classes(usage([6, 6, 9.9], [1, 1, 1]), CFG, BUCKET) == []
    # no payments while the link had room: demand unknown, not judged (noted)
    notes: dict = {}
    assert detect_starved_classes(usage([6, 9.9], [0, 0.1]), CFG, BUCKET, notes) == []
    assert notes["not_judged"] and "demand unknown" in notes["not_judged"][0]
    # no class declared: nothing to judge
    assert detect_starved_classes(usage([6, 9.9], [3, 0.1]), LinkQosConfig(), BUCKET) == []


def test_too_few_samples_cannot_prove_a_starved_class():
    """Payments at 1.5 of a 2 Mbit/s floor from 4 sampled packets: the upper bound
    1.5 * (4 + 2*2 + 4) / 4 = 4.5 is not below the floor: not judged starved; from 4000: it is."""
    assert detect_starved_classes(usage([6, 9.9], [3, 1.5], sampled=30), CFG, BUCKET) == []
    assert [
        f.type for f in detect_starved_classes(usage([6, 9.9], [3, 1.5], sampled=30000), CFG, BUCKET)
    ] == ["qos_class_starved"]


def version(kind, key, attrs, f=0, t=END):
    return {"kind": kind, "key": key, "f": f, "t": t, "attrs": json.dumps(attrs)}


def policy(name, *rules):
    return {"name": name, "binding_type": "EIP", "rules": [
        {"name": n, "direction": d, "rate_max_mbps": r, **({"match_value": m} if m else {})} for n, d, r, m in rules
    ]}  # fmt: skip


def test_link_rules_follow_the_versions_of_bindings_policies_and_gateway_eips():
    h = MS0 + 3_600_000
    rows = [
        version("eip", "eip-pay", {"name": "eip-pay", "ips": ["198.18.0.10"], "qos_policy": "p1"}),
        # the policy's limit changes at h
        version("qos_policy", "p1", policy("p1", ("out", "egress", 10, "")), t=h),
        version("qos_policy", "p1", policy("p1", ("out", "egress", 50, ""), ("in", "ingress", 5, "")), f=h),
        # a gateway whose NIC policy has a match rule; its EIPs: eip-a always, eip-b from h
        version("nat_gateway", "gw1", {"name": "gw1", "qos_policy": "gwq"}),
        version(
            "qos_policy",
            "gwq",
            policy("gwq", ("ext", "egress", 100, "dst 203.0.113.0/24"), ("bad", "egress", 1, "any 1.2.3.4")),
        ),  # fmt: skip
        version("eip", "eip-a", {"name": "eip-a", "ips": ["198.18.0.20"], "nat_gw": "gw1"}),
        version("eip", "eip-b", {"name": "eip-b", "ips": ["198.18.0.21"], "nat_gw": "gw1"}, f=h),
        version("eip", "eip-c", {"name": "eip-c", "ips": ["198.18.0.22"], "nat_gw": "gw2"}),
        version("eip", "eip-free", {"name": "eip-free", "ips": ["198.18.0.30"]}),
    ]
    rules, problems = model.link_rules(rows)
    got = sorted(
        (
            r.link,
            r.rule,
            r.direction,
            r.limit_mbps,
            r.match_side,
            r.match_net,
            r.address,
            r.valid_from,
            r.valid_to,
        )
        for r in rules.itertuples()
    )
    assert got == sorted([
        ("eip/eip-pay", "out", "egress", 10.0, "", "", "198.18.0.10", 0, h),
        ("eip/eip-pay", "out", "egress", 50.0, "", "", "198.18.0.10", h, END),
        ("eip/eip-pay", "in", "ingress", 5.0, "", "", "198.18.0.10", h, END),
        ("natgw/gw1", "ext", "egress", 100.0, "dst", "203.0.113.0/24", "198.18.0.20", 0, END),
        ("natgw/gw1", "ext", "egress", 100.0, "dst", "203.0.113.0/24", "198.18.0.21", h, END),
    ])  # fmt: skip
    assert len(problems) == 1 and "gwq rule bad" in problems[0]


def test_link_usage_takes_the_rule_in_force_the_match_and_the_best_observer():
    h = MS0 + 600_000  # the limit changes at 10:10
    rules, _ = model.link_rules([
        version("eip", "e", {"name": "e", "ips": ["198.18.0.10"], "qos_policy": "p", "nat_gw": "gw1"}),
        version("qos_policy", "p", policy("p", ("out", "egress", 10, "")), t=h),
        version("qos_policy", "p", policy("p", ("out", "egress", 20, "")), f=h),
        version("nat_gateway", "gw1", {"name": "gw1", "qos_policy": "g"}),
        version("qos_policy", "g", policy("g", ("ext", "egress", 100, "dst 203.0.113.0/24"))),
    ])  # fmt: skip
    t = [pd.Timestamp(T0 + i * BUCKET) for i in range(3)]
    rows = pd.DataFrame(
        [(t[0], "198.18.0.10", "egress", "r1", 1, "203.0.113.5", 100.0, 10.0),
         (t[0], "198.18.0.10", "egress", "r1", 0, "198.51.100.7", 300.0, 30.0),
         (t[0], "198.18.0.10", "egress", "r2", 0, "198.51.100.7", 450.0, 45.0),  # sees more: the observer
         (t[2], "198.18.0.10", "egress", "r1", 1, "203.0.113.5", 50.0, 5.0),
         (t[2], "198.18.0.10", "ingress", "r1", 0, "203.0.113.5", 50.0, 5.0)],  # no ingress rule
        columns=["time", *model.LINK_KEYS, "bytes", "raw_packets"],
    )  # fmt: skip
    u = model.link_usage(rows, rules, 300)
    got = sorted(
        (r.time, r.link, r.limit_mbps, r.match, r.exporter, r.klass, r.bytes) for r in u.itertuples()
    )
    assert got == sorted([
        (t[0], "eip/e", 10.0, "", "r2", 0, 450.0),
        (t[0], "natgw/gw1", 100.0, "dst 203.0.113.0/24", "r1", 1, 100.0),
        (t[2], "eip/e", 20.0, "", "r1", 1, 50.0),
        (t[2], "natgw/gw1", 100.0, "dst 203.0.113.0/24", "r1", 1, 50.0),
    ])  # fmt: skip


# ---- end to end -----------------------------------------------------------------------------------
EIPS = {"eip-pay": "192.0.2.10", "eip-fair": "192.0.2.11", "eip-calm": "192.0.2.12"}
EF, AF41, CS1 = 46 << 2, 34 << 2, 8 << 2
#: Per EIP: (start min, end min, share of the limit, TOS) of each conversation leaving through it.
#: eip-pay: payments at 0.3 of the limit while it has room, then bulk fills it and payments get 0.05;
#: eip-fair: full too, but payments keep 0.3 (above their 0.2 floor); eip-calm: payments squeezed
#: to 0.05 as well, but the link never fills (0.45).
SHAPES = {
    "eip-pay": [(0, 10, 0.3, EF), (10, 30, 0.05, AF41), (0, 10, 0.3, 0), (10, 30, 0.93, CS1)],
    "eip-fair": [(0, 30, 0.3, EF), (0, 10, 0.3, 0), (10, 30, 0.67, 0)],
    "eip-calm": [(0, 10, 0.3, EF), (10, 30, 0.05, EF), (0, 10, 0.2, 0), (10, 30, 0.4, 0)],
}
SIZE = 1400


@pytest.mark.slow
def test_a_starved_payment_class_end_to_end(tmp_path, rnd):
    import yaml

    from analytics.config import AnalyticsConfig
    from analytics.runner import Analysis
    from analytics.scenario.bank import Bank
    from analytics.scenario.conventions import Conversation, End, counting_config, export, inventory, write
    from netobs.counting import CountingConfig
    from netobs.store import make_store
    from netobs_app import components
    from netobs_app.capture import decoded
    from netobs_app.scenario import _scenario_settings
    from netobs_app.settings import Settings
    from pipeline.config import KubernetesEnrichConfig
    from pipeline.enrich import make_enricher
    from pipeline.enrich_ingest import Ingest
    from tests.pipeline import _kube_ovn as ko
    from tests.pipeline._fake_apiserver import FakeApiServer
    from tests.pipeline.test_kubernetes_clusters import kubeconfig

    convention = rnd.choice(("ovs_bridge_ipfix", "ovs_sflow", "probe_egress", "biflow", "router_ingress",
                             "netflow5", "mixed"))  # fmt: skip
    # Sampling as deployments vary it, bounded so that a full 5-minute bucket holds hundreds of
    # sampled packets (the rule's figures need them; 1:512 routers leave too few at these rates).
    sampling = {"ipfix": rnd.choice((1, 16, 64)), "sflow": rnd.choice((16, 32, 64)),
                "probe": rnd.choice((1, 10)), "router": rnd.choice((1, 100))}  # fmt: skip
    limit = rnd.choice((2.0, 3.0, 4.0))
    bank = Bank(tenants=2)
    gw = rnd.choice([p for p in bank.pods if p.center == 1])  # the NAT gateway pod's node
    ms0 = MS0
    convs = []
    for name, shape in SHAPES.items():
        eip = End(EIPS[name], gw.node, gw.node_ip, gw.center)
        for s, e, share, tos in shape:
            span = (e - s) * 60_000
            packets = int(limit * share * 1e6 * span / 1000 / 8 / SIZE)
            remote = End(f"198.51.100.{len(convs) + 1}")
            convs.append(Conversation(len(convs), eip, remote, 40000 + len(convs), 443, 6, ms0 + s * 60_000, span,
                                      fwd_packets=packets, rev_packets=max(1, packets // 20), fwd_size=SIZE,
                                      rev_size=80, tos=tos))  # fmt: skip
    exp = export(convs, convention, np.random.default_rng(rnd.randrange(1 << 30)), sampling)
    print("convention", convention, "sampling", exp.sampling, "limit", limit, "gateway node", gw.node)
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory(bank), sort_keys=False))
    pcap = write(exp, tmp_path / convention)

    api = FakeApiServer().start()
    try:
        for name, address in EIPS.items():
            api.put("iptables-eips", ko.iptables_eip(name, address, nat_gw="gw1", qos=f"{name}-qos"))
            api.put("qos-policies", ko.qos_policy_rules(f"{name}-qos", [
                ko.qos_rule("eip-egress", f"{limit:g}", "egress"), ko.qos_rule("eip-ingress", f"{limit:g}", "ingress"),
            ]))  # fmt: skip
        # the gateway's NIC: traffic to 198.51.100.0/24 limited far above what it carries (not full)
        api.put("qos-policies", ko.qos_policy_rules("gw1-net1", [
            ko.qos_rule("net1-ext-egress", f"{10 * limit:g}", "egress", priority=2, interface="net1",
                        match="dst 198.51.100.0/24"),
        ], binding="NATGW", shared=True))  # fmt: skip
        api.put(
            "vpc-nat-gateways", ko.vpc_nat_gateway("gw1", "vpc-pay", "net-pay", "10.0.1.254", qos="gw1-net1")
        )
        settings = _scenario_settings(Settings(), tmp_path)
        enrich = settings.enrich.model_copy(update={"kubernetes": KubernetesEnrichConfig(
            enabled=True, kube_ovn=True, kubeconfig=kubeconfig(tmp_path / "kubeconfig", api, "tok"))})  # fmt: skip
        cfg = settings.model_copy(
            update={"enrich": enrich, "counting": CountingConfig.model_validate(counting_config())}
        )
        store = make_store(cfg.store, components.schema(cfg))
        store.start()
        try:
            enricher = make_enricher(cfg, store)
            enricher.start()
            try:
                assert all(s.wait_synced(30) for s in enricher.sources)
            finally:
                enricher.stop()
            ingest = Ingest(enricher, store, progress=None)
            for flows, _, rejects in decoded(str(pcap), cfg):
                ingest.add(flows, rejects)
            ingest.flush()
            assert ingest.rejects == 0
            acfg = AnalyticsConfig.model_validate(
                {
                    "link_qos": {
                        "classes": [
                            {"name": "payments", "dscp": ["EF", "AF41"], "min_share": 0.2},
                            {"name": "backup", "dscp": ["CS1"]},
                        ]
                    }
                }  # fmt: skip
            )
            analysis = Analysis(store.query_arrow, cfg.store.database, acfg, T0, T0 + timedelta(minutes=30))
            found = analysis.link_qos()
        finally:
            store.stop()
    finally:
        api.stop()
    context = f"convention {convention} sampling {exp.sampling} limit {limit}: {[f.summary for f in found]}"
    print(context)
    notes = analysis.notes["link_qos"]
    assert notes["limited_links"] == 4, (notes, context)  # three EIPs and the gateway's NIC
    # The bucket where the traffic changes (10:10-10:15) holds the end of the first phase too: sFlow
    # samples and records are stamped when their export slice ends (up to a minute later), so it may be
    # judged either way. From 10:15 on every bucket is steady: starved, at the figures of the truth.
    steady = T0 + timedelta(minutes=15)
    flagged = set()
    for f in found:
        assert f.entities["link"] == "eip/eip-pay" and f.entities["direction"] == "egress", context
        assert f.entities["class"] == "payments" and f.entities["rule"] == "eip-egress", context
        assert f.window_start >= T0 + timedelta(minutes=10) and f.window_end <= T0 + timedelta(minutes=30), (
            context
        )
        assert f.evidence["floor_bits_per_s"] == round(0.2 * limit * 1e6), context
        ev = f.evidence
        for i, t in enumerate(ev["buckets"]):
            if datetime.fromisoformat(t) < steady:
                continue
            flagged.add(t)
            # the figures are the truth within their sampling error (counted once: not doubled)
            n_c, n_t = max(ev["class_sampled_packets"][i], 1), max(ev["link_sampled_packets"][i], 1)
            assert abs(ev["class_bits_per_s"][i] / (0.05 * limit * 1e6) - 1) <= 4 / np.sqrt(n_c) + 0.05, (
                context
            )
            assert abs(ev["link_bits_per_s"][i] / (0.98 * limit * 1e6) - 1) <= 4 / np.sqrt(n_t) + 0.03, (
                context
            )
    assert flagged, (
        context
    )  # at least one of the three steady buckets (each fails ~1 % at the worst sampling)
