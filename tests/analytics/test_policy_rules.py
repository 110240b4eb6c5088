"""Every rule type on real chdb: crafted enriched flows that must and must not violate.

Endpoints mimic the bank's two sites / three centers; the policy is tests/testdata/policy_bank.yaml.
The endpoints and the module-scoped ``store`` fixture are shared with the other policy tests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from analytics.policy.evaluate import (
    NO_MERGE_ON_INSERT,
    _check_live_table,
    chunks,
    create_violations,
    ensure_violations,
    evaluate,
    insert_settings,
    next_version,
    tombstones,
    violations_select,
)
from analytics.policy.fixtures import flows_table
from analytics.policy.loader import load_policy
from analytics.policy.results import stored
from analytics.policy.testing import evaluate_flows

TESTDATA = Path(__file__).resolve().parent.parent / "testdata"
BANK_POLICY = TESTDATA / "policy_bank.yaml"
T = "2026-06-01T10:15:00Z"


def ep(addr, **attrs):
    return {"addr": addr, **attrs}


_DC1 = {"center": "dc1", "site": "site-a"}
WEB = ep("10.244.1.10", namespace="retail-web", workload="web", tenant="retail", zone="production", **_DC1)
WEB_DC2 = {**WEB, "addr": "10.244.11.10", "center": "dc2"}
DB = ep("10.244.2.10", namespace="retail-db", workload="pg", tenant="retail", zone="production", **_DC1)
DB_DC2 = {**DB, "addr": "10.244.12.10", "center": "dc2"}
STAGING = ep("10.244.9.10", namespace="retail-staging", workload="web", tenant="retail", zone="test", **_DC1)
STAGING_LABEL_ONLY = {**STAGING, "zone": ""}
DEVPOD = ep("10.244.8.1", namespace="dev", workload="x", tenant="retail", zone="dev-3", **_DC1)
PAY = ep("10.244.5.10", namespace="pay-api", workload="api", tenant="payments", zone="production", **_DC1)
PAY_DC3 = {**PAY, "addr": "10.246.5.10", "center": "dc3", "site": "site-b"}
EGW = ep(
    "10.244.5.2", namespace="pay-egress", workload="egress-gateway", tenant="payments", zone="production"
)
CORP = ep("10.244.6.10", namespace="corp-hr", workload="hr", tenant="corporate", zone="production", **_DC1)
PLATFORM = ep("10.244.7.10", namespace="monitoring", workload="prom", tenant="platform", zone="production")
MGMT = ep("10.250.1.5", namespace="ops", workload="ansible", tenant="platform", zone="management", **_DC1)
BASTION = ep("10.250.0.5", namespace="bastion", workload="jump", tenant="platform", zone="management")
BASTION_VM = ep("10.250.0.9")  # a legacy jump host known only by its address
STORAGE = ep("10.245.0.5", subnet="storage-net", tenant="platform")
BACKUP = ep("10.247.0.5", vpc="backup-vpc", tenant="platform")
CORE = ep("172.30.1.1", subnet="mainframe", tenant="core-banking", zone="core", **_DC1)
INTERNET = ep("203.0.113.7")


def flow(src, dst, dport=443, proto="tcp", time=T, sport=40000, **kw):
    return {"time": time, "src": src, "dst": dst, "src_port": sport, "dst_port": dport, "proto": proto, **kw}


def run(store, policy, flows, **kw):
    return evaluate_flows(store, policy, flows, **kw)


@pytest.fixture(scope="module")
def store(module_store_factory):
    """One embedded store per module (chdb opens one data path per process at a time)."""
    return module_store_factory(retention_days=0)


@pytest.fixture(scope="module")
def bank():
    return load_policy(BANK_POLICY)


EXPIRED_AT = "2026-06-01T10:00:00Z"  # the tenant-isolation exemption expired on 2026-03-01
IN_FORCE_AT = "2026-02-01T10:00:00Z"

CASES = [
    # rule, flow, violates
    ("prod-nonprod-separation", flow(WEB, STAGING), True),
    ("prod-nonprod-separation", flow(STAGING, WEB), True),
    ("prod-nonprod-separation", flow(DEVPOD, WEB), True),  # zone glob dev*
    ("prod-nonprod-separation", flow(WEB, STAGING_LABEL_ONLY), True),  # namespace label env=test
    ("prod-nonprod-separation", flow(WEB, DB, 5433), False),
    ("web-no-direct-db-admin", flow(WEB, DB, 5432), True),
    ("web-no-direct-db-admin", flow(WEB, CORE, 3306), True),  # db zone by CIDR
    ("web-no-direct-db-admin", flow(WEB, DB, 5433), False),
    ("web-no-direct-db-admin", flow(WEB, DB, 5432, "udp"), False),
    ("web-to-db-only-tls", flow(WEB, DB, 8080), True),
    ("web-to-db-only-tls", flow(WEB, DB, 5433), False),
    ("web-to-db-only-tls", flow(DB, WEB, 8080), False),  # other direction is not governed
    ("tenant-isolation", flow(WEB, CORP), True),
    ("tenant-isolation", flow(WEB, PLATFORM), False),  # shared tenant
    ("tenant-isolation", flow(WEB, PAY), False),  # allowed pair
    ("tenant-isolation", flow(PAY, WEB), False),  # allowed pair, either order
    ("tenant-isolation", flow(WEB, INTERNET), False),  # unknown tenant
    ("tenant-isolation", flow(WEB, CORP, 8443, time=IN_FORCE_AT), False),  # exemption in force
    ("tenant-isolation", flow(WEB, CORP, 8443, time=EXPIRED_AT), True),  # exemption expired
    ("plane-separation", flow(WEB, MGMT), True),
    ("plane-separation", flow(BACKUP, STORAGE), True),
    ("plane-separation", flow(WEB, STORAGE, 3260), False),  # allowed crossing
    ("plane-separation", flow(WEB, STORAGE, 22), True),
    ("plane-separation", flow(WEB, DB), False),
    ("plane-separation", flow(INTERNET, WEB), False),
    ("unified-egress", flow(PAY, INTERNET), True),
    ("unified-egress", flow(PAY, WEB), True),  # leaving the payments zone, not via the gateway
    ("unified-egress", flow(EGW, INTERNET), False),
    ("unified-egress", flow(PAY, EGW, 3128), False),
    ("unified-egress", flow(INTERNET, PAY), False),  # ingress is not governed by this rule
    ("mgmt-from-bastion", flow(MGMT, WEB, 22), True),
    ("mgmt-from-bastion", flow(INTERNET, WEB, 3389), True),
    ("mgmt-from-bastion", flow(MGMT, WEB, 10250), True),
    ("mgmt-from-bastion", flow(BASTION, WEB, 22), False),
    ("mgmt-from-bastion", flow(BASTION_VM, WEB, 6443), False),  # bastion by CIDR
    ("mgmt-from-bastion", flow(MGMT, WEB, 443), False),
    ("mgmt-from-bastion", flow(MGMT, WEB, 22, "udp"), False),
    ("no-plaintext-to-sensitive", flow(WEB, CORE, 5432), True),
    ("no-plaintext-to-sensitive", flow(WEB, CORE, 23), True),
    ("no-plaintext-to-sensitive", flow(WEB, CORE, 443), False),
    ("no-plaintext-to-sensitive", flow(WEB, DB, 5432), False),  # db is not a sensitive zone
    ("payments-residency", flow(PAY, PAY_DC3), True),
    ("payments-residency", flow(PAY_DC3, WEB), True),
    ("payments-residency", flow(PAY, WEB_DC2), False),  # dc2 is in site-a
    ("payments-residency", flow(PAY, INTERNET), False),  # include_external: false
    ("payments-residency", flow(WEB, CORP), False),  # not a payments flow
    ("cross-center-services", flow(WEB, WEB_DC2, 8080), True),
    ("cross-center-services", flow(WEB, DB_DC2, 5432), False),  # db-replication
    ("cross-center-services", flow(DB_DC2, WEB, 40000, sport=5432), False),  # its answers
    ("cross-center-services", flow(WEB, WEB_DC2, 9093), False),  # kafka-mirror
    ("cross-center-services", flow(WEB, INTERNET, 8080), False),  # no center on one end
    ("cross-center-services", flow(WEB, DB, 8080), False),  # same center
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "rule,flow_,violates", CASES, ids=[f"{c[0]}-{i}-{'bad' if c[2] else 'ok'}" for i, c in enumerate(CASES)]
)
def test_rule_types(store, bank, rule, flow_, violates):
    found = [v for v in run(store, bank, [flow_]) if v["rule"] == rule]
    assert bool(found) == violates, found
    if violates:
        (v,) = found
        assert v["flows"] == 1 and v["bytes"] == 1000 and v["packets"] == 10


def test_every_rule_type_is_covered(bank):
    covered = {r.type for r in bank.rules if r.id in {c[0] for c in CASES}}
    from analytics.policy.rules import RULE_SQL

    # NetworkPolicy conformance needs a pod inventory: its cases are in test_networkpolicy.py
    from tests.analytics.test_networkpolicy import CASES as NETPOL_CASES

    assert NETPOL_CASES
    # The rule types judged on L7 summaries have their cases in test_policy_l7_rules.py.
    from analytics.policy.model import RULE_KINDS
    from tests.analytics.test_policy_l7_rules import POLICY as L7_POLICY

    l7_types = {r["type"] for r in L7_POLICY["rules"]}
    examples = {"only_from", "same"}  # the worked examples of docs/policy.md (test_policy_examples.py)
    # QoS marking is tested on its own policy (tests/testdata/policy_qos_test.yaml, test_policy_qos.py)
    tested_apart = {"networkpolicy_conformance", "qos_marking"}
    assert covered | examples | tested_apart | l7_types == set(RULE_SQL) == set(RULE_KINDS)


def test_sampling_scales_bytes_and_packets(store, bank):
    flows = [
        flow(WEB, CORP, sampling_rate=1000, bytes=1500, packets=1),
        flow(WEB, CORP, sampling_rate=0, bytes=100, packets=2),  # unknown rate counts as 1
    ]
    (v,) = [v for v in run(store, bank, flows) if v["rule"] == "tenant-isolation"]
    assert (v["bytes"], v["packets"], v["flows"]) == (1_500_100, 1002, 2)


def test_bridge_ipfix_counts_one_direction(store, bank):
    both = [
        flow(WEB, CORP, type="ipfix", direction="ingress", bytes=500),
        flow(WEB, CORP, type="ipfix", direction="egress", bytes=500),  # the same packets seen again
        flow(WEB, CORP, type="sflow", direction="unknown", bytes=7),
    ]
    (v,) = [v for v in run(store, bank, both) if v["rule"] == "tenant-isolation"]
    assert (v["bytes"], v["flows"]) == (507, 2)


def test_windows_split_violations_and_ids_are_stable(store, bank):
    flows = [flow(WEB, CORP, time="2026-06-01T10:15:00Z"), flow(WEB, CORP, time="2026-06-01T11:15:00Z")]
    first = [v for v in run(store, bank, flows) if v["rule"] == "tenant-isolation"]
    assert [v["windows"] for v in first] == [2]  # one conversation over two windows
    again = [v for v in run(store, bank, flows) if v["rule"] == "tenant-isolation"]
    assert [v["id"] for v in again] == [v["id"] for v in first]
    assert (
        first[0]["first_seen"] == "2026-06-01T10:15:00.000Z"
        and first[0]["last_seen"] == "2026-06-01T11:15:00.000Z"
    )


def test_evidence_lists_top_flows_by_scaled_bytes(store, bank):
    flows = [flow(WEB, CORP, dport=8443, sport=p, bytes=p) for p in (41000, 43000, 42000)]
    (v,) = [v for v in run(store, bank, flows, evidence=2) if v["rule"] == "tenant-isolation"]
    assert [e["src_port"] for e in v["evidence"]] == [43000, 42000]  # one conversation, its largest flows
    assert v["evidence"][0]["src_addr"] == "10.244.1.10" and v["evidence"][0]["bytes"] == 43000
    names = ("tenant", "namespace", "workload", "zone", "center", "site")
    assert v["client"] == {**{k: WEB[k] for k in names}, "ip": "10.244.1.10"}
    assert v["server"]["tenant"] == "corporate" and (v["port"], v["proto"], v["client_ports"]) == (
        8443,
        "tcp",
        3,
    )


# ---- the violations table: idempotent re-evaluation without DELETE, one server or a cluster ----
T2 = "2026-07-01T10:15:00Z"
W2 = (datetime(2026, 7, 1, 10, tzinfo=UTC), datetime(2026, 7, 1, 11, tzinfo=UTC))


def _stored(store, policy):
    return stored(store.query_arrow, store.database, policy.name, *W2)


def _raw(store):
    sql = f"SELECT rule, deleted, version FROM `{store.database}`.violations ORDER BY rule, version"
    return store.query_arrow(sql).to_pylist()


def test_reevaluation_is_idempotent_and_converges_without_delete(store, bank):
    store.insert(flows_table([flow(WEB, CORP, time=T2), flow(WEB, STAGING, time=T2)]))
    evaluate(store, bank, *W2)
    first = _stored(store, bank)
    assert {v["rule"] for v in first} == {"tenant-isolation", "prod-nonprod-separation"}
    evaluate(store, bank, *W2)
    assert _stored(store, bank) == first  # same ids, same rows, nothing doubled

    # the separation rule dropped: its violation disappears (a tombstone), the other stays
    without = bank.model_copy(update={"rules": tuple(r for r in bank.rules if r.type != "separation")})
    evaluate(store, without, *W2)
    assert [v["rule"] for v in _stored(store, without)] == ["tenant-isolation"]
    assert ("prod-nonprod-separation", 1) in {(r["rule"], r["deleted"]) for r in _raw(store)}
    evaluate(store, bank, *W2)  # and it comes back: the newer version beats the tombstone
    assert _stored(store, bank) == first


def test_evaluation_inserts_skip_the_replacing_merge(store):
    """Ids are unique within one evaluation: its INSERTs skip the engine's merge on insert (a third
    of bench_policy's CPU); the idempotence test above runs with it."""
    assert insert_settings(store) == NO_MERGE_ON_INSERT
    store.execute(
        f"INSERT INTO `{store.database}`.violations {NO_MERGE_ON_INSERT}SELECT * FROM "
        f"`{store.database}`.violations WHERE 0"
    )  # the clause parses where the setting is known


def test_rows_arriving_after_their_tombstone_still_win(store, bank):
    """On a cluster, inserts through the Distributed table arrive late: order must not matter."""
    store.insert(flows_table([flow(WEB, CORP, time=T2)]))
    evaluate(store, bank, *W2)
    before = _stored(store, bank)
    version = next_version()
    store.execute(tombstones(store.database, bank.name, *W2, version))  # tombstones first ...
    assert _stored(store, bank) == []
    for rules in chunks(bank):  # ... then the evaluation's rows
        select = violations_select(bank, rules, *W2, database=store.database, version=version)
        store.execute(f"INSERT INTO `{store.database}`.violations {select}")
    assert _stored(store, bank) == before


def test_a_table_of_another_shape_is_renamed_aside(store):
    class Other:
        database = "old_netobs"
        execute = staticmethod(store.execute)
        query_arrow = staticmethod(store.query_arrow)

    store.execute("CREATE DATABASE IF NOT EXISTS old_netobs")
    store.execute(
        "CREATE TABLE IF NOT EXISTS old_netobs.violations (id String, version UInt64) "
        "ENGINE = ReplacingMergeTree(version) ORDER BY id"
    )
    ensure_violations(Other())  # derived data: the old table is kept aside, a new one is created
    tables = (
        store.query_arrow("SELECT name FROM system.tables WHERE database = 'old_netobs'")
        .column(0)
        .to_pylist()
    )
    assert "violations" in tables and any(t.startswith("violations_before_") for t in tables)
    _check_live_table(store, "old_netobs")  # the new table has this version's shape


def test_cluster_ddl_parses_on_a_current_clickhouse(store):
    """No ClickHouse cluster runs here (the 18.16 fixture has no remote_servers, DateTime64 or
    LowCardinality): the cluster DDL is checked by chdb's parser (EXPLAIN AST) and by its text."""
    stmts = create_violations("netobs", cluster="bank")
    for stmt in stmts:
        ast = store.query_arrow(f"EXPLAIN AST {stmt}").column(0).to_pylist()
        assert ast and ast[0].startswith(("CreateQuery", "CreateQuery netobs"))
    local, dist, view = stmts
    assert local.startswith("CREATE TABLE IF NOT EXISTS `netobs`.`violations_local` ON CLUSTER 'bank'")
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/netobs/violations_local', "
        "'{replica}', version)" in local
    )
    assert dist == (
        "CREATE TABLE IF NOT EXISTS `netobs`.`violations` ON CLUSTER 'bank' AS `netobs`.`violations_local`\n"
        "ENGINE = Distributed('bank', 'netobs', 'violations_local', cityHash64(policy, id))"
    )
    assert "ON CLUSTER 'bank' AS SELECT" in view and "FROM `netobs`.`violations` FINAL" in view
    assert "DELETE" not in " ".join(stmts)
