"""The rule → SQL builders are pure: expected SQL for each piece (executed in test_policy_rules)."""

from datetime import UTC, datetime

import pytest

from analytics.policy.evaluate import align, chunks, create_violations, violations_select
from analytics.policy.loader import parse_policy
from analytics.policy.model import Policy
from analytics.policy.rules import rule_condition
from analytics.policy.sql import cidr_range, matcher_sql, ports_sql, quote, ts, values_in, zone_sql

P = parse_policy(
    """
name: small
namespace_labels: {shop: {env: prod}, lab: {env: test}}
zones:
  a: {match: [{zone: [prod]}]}
  b: {match: [{zone: [test]}]}
  gw: {match: [{workload: [egress]}]}
  bastion: {match: [{namespace: [bastion]}]}
rules:
  - {id: deny, type: deny, from: a, to: b, ports: [22], protocols: [tcp]}
  - {id: allow, type: allow, from: a, to: b, ports: [443]}
  - {id: ti, type: tenant_isolation, shared: [platform]}
  - {id: sep, type: separation, between: [a, b]}
  - {id: planes, type: plane_separation, planes: [a, b]}
  - {id: gw, type: gateway, inside: a, gateways: gw, direction: egress}
  - {id: mgmt, type: management_access, bastions: [bastion], ports: [22]}
  - {id: clear, type: plaintext, to: [b], ports: [80]}
  - {id: res, type: residency, tenants: [t1], within: center}
  - {id: xc, type: cross_center, services: [{name: repl, ports: [5432]}]}
exemptions:
  - {id: e, rule: deny, from: a, to: b, approver: x, reason: y, expires: 2027-01-01}
"""
)

EXPECTED = {
    "deny": "(((src_zone IN ('prod') AND dst_zone IN ('test')) AND (dst_port IN (22) AND proto IN (6))) AND "
    "NOT (((src_zone IN ('prod') AND dst_zone IN ('test')) AND "
    "event_end < toDateTime64('2027-01-01 00:00:00.000', 3, 'UTC'))))",
    "allow": "((src_zone IN ('prod') AND dst_zone IN ('test')) AND NOT (dst_port IN (443)))",
    "ti": "(src_tenant != '' AND dst_tenant != '' AND src_tenant != dst_tenant AND "
    "NOT (src_tenant IN ('platform')) AND NOT (dst_tenant IN ('platform')))",
    "sep": "((src_zone IN ('prod') AND dst_zone IN ('test')) OR (src_zone IN ('test') AND dst_zone IN ('prod')))",
    "planes": "(multiIf(src_zone IN ('prod'), 1, src_zone IN ('test'), 2, 0) != 0 AND "
    "multiIf(dst_zone IN ('prod'), 1, dst_zone IN ('test'), 2, 0) != 0 AND "
    "multiIf(src_zone IN ('prod'), 1, src_zone IN ('test'), 2, 0) != "
    "multiIf(dst_zone IN ('prod'), 1, dst_zone IN ('test'), 2, 0))",
    "gw": "((src_zone IN ('prod') AND NOT (dst_zone IN ('prod'))) AND "
    "NOT ((src_workload IN ('egress') OR dst_workload IN ('egress'))))",
    "mgmt": "((dst_port IN (22) AND proto IN (6)) AND NOT (src_namespace IN ('bastion')))",
    "clear": "(dst_zone IN ('test') AND (dst_port IN (80) AND proto IN (6)))",
    "res": "((src_tenant IN ('t1') OR dst_tenant IN ('t1')) AND src_center != dst_center)",
    # flows are oriented client → server: a service's answers are judged as the service itself
    "xc": "((src_center != '' AND dst_center != '' AND src_center != dst_center) AND NOT (dst_port IN (5432)))",
}


@pytest.mark.parametrize("rule", P.rules, ids=lambda r: r.id)
def test_rule_condition(rule):
    assert rule_condition(P, rule) == EXPECTED[rule.id]


@pytest.mark.parametrize(
    "column,values,expected",
    [
        ("src_zone", ["a"], "src_zone IN ('a')"),
        ("src_zone", ["a", "b"], "src_zone IN ('a', 'b')"),
        ("src_pod", ["web-*"], "(src_pod != '' AND src_pod LIKE 'web-%')"),  # globs never match "no pod"
        ("src_pod", ["x", "a_*"], "(src_pod IN ('x') OR (src_pod != '' AND src_pod LIKE 'a\\\\_%'))"),
        ("src_zone", ["it's"], "src_zone IN ('it\\'s')"),
    ],
)
def test_values_in(column, values, expected):
    assert values_in(column, values) == expected


@pytest.mark.parametrize(
    "cidr,expected",
    [
        ("10.0.0.0/8", ("::ffff:10.0.0.0", "::ffff:10.255.255.255")),
        ("192.0.2.7/32", ("::ffff:192.0.2.7", "::ffff:192.0.2.7")),
        ("2001:db8::/32", ("2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")),
    ],
)
def test_cidr_range(cidr, expected):
    assert cidr_range(cidr) == expected


def test_matcher_and_zone():
    (m,) = parse_policy("zones: {z: {match: [{cidr: [10.1.0.0/16], tenant: [t]}]}}").zones["z"].match
    assert matcher_sql(m, "dst") == (
        "(dst_addr BETWEEN toIPv6('::ffff:10.1.0.0') AND toIPv6('::ffff:10.1.255.255') AND dst_tenant IN ('t'))"
    )
    labelled = parse_policy("zones: {z: {match: [{namespace_labels: {env: prod}}]}}").zones["z"].match[0]
    assert matcher_sql(labelled, "src", P) == "src_namespace IN ('shop')"
    assert matcher_sql(labelled, "src", P.with_labels([], {"lab": {}})) == "src_namespace IN ('shop')"
    assert matcher_sql(labelled, "src", P.model_copy(update={"namespace_labels": {}})) == "0"  # none: nothing
    assert zone_sql(P, "*", "src") == "1"


def test_ports_quote_ts():
    assert ports_sql([443, 80], ["udp", 6]) == "(dst_port IN (80, 443) AND proto IN (6, 17))"
    assert ports_sql([], []) == "1"
    assert quote("a\\b'c") == "'a\\\\b\\'c'"
    assert ts(datetime(2026, 6, 1, 10, tzinfo=UTC)) == "toDateTime64('2026-06-01 10:00:00.000', 3, 'UTC')"


def test_violations_select_shape():
    start, end = datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC)
    sql = violations_select(P, list(P.rules[:2]), start, end, window_s=900, database="db", evidence=3)
    assert "FROM `db`.`flows` WHERE" in sql  # inside the oriented view: replies turned client -> server
    assert "SELECT * REPLACE (if(initiator = 'dst', dst_addr, src_addr) AS src_addr" in sql
    assert "time_received >= toDateTime64('2026-06-01 00:00:00.000', 3, 'UTC') - INTERVAL 300 SECOND" in sql
    assert "event_end >= toDateTime64('2026-06-01 00:00:00.000', 3, 'UTC')" in sql
    assert "AND counted = 1)" in sql and "WHERE m0 != 0" in sql
    assert "ARRAY JOIN bitPositionsToArray(m0) AS rule_idx" in sql
    assert f"if({EXPECTED['deny']}, toUInt64(1), toUInt64(0)) + if({EXPECTED['allow']}, toUInt64(2)" in sql
    assert "sum(bytes * greatest(sampling_rate, 1)) AS b" in sql
    assert "arrayElement(['deny', 'allow'], rule_idx + 1) AS rule" in sql
    assert "groupArraySorted(3)" in sql and "INTERVAL 900 SECOND" in sql
    wide = violations_select(P, list(P.rules) * 7, start, end)  # 70 rules: two masks, one scan
    assert "WHERE m0 != 0 OR m1 != 0" in wide
    assert "arrayConcat(bitPositionsToArray(m0), arrayMap(x -> x + 64, bitPositionsToArray(m1)))" in wide
    with pytest.raises(AssertionError):
        violations_select(P, list(P.rules) * 52, start, end)  # more than 512 rules per scan


def test_rules_are_chunked_by_count_and_sql_size():
    many = P.model_copy(
        update={"rules": tuple(r.model_copy(update={"id": f"r{i}"}) for i in range(600) for r in P.rules[:1])}
    )
    assert [len(c) for c in chunks(many)] == [512, 88]
    zones = {f"z{i}": {"match": [{"namespace": [f"ns-{i}-{k}" for k in range(400)]}]} for i in range(20)}
    rules = [{"id": f"d{i}", "type": "deny", "from": f"z{i}", "to": f"z{(i + 1) % 20}"} for i in range(20)]
    big = Policy.model_validate({"zones": zones, "rules": rules})
    sizes = [len(c) for c in chunks(big)]
    assert sum(sizes) == 20 and len(sizes) > 1  # each scan's SQL stays under max_query_size


def test_align_and_ddl():
    s, e = align(datetime(2026, 6, 1, 10, 20, tzinfo=UTC), datetime(2026, 6, 1, 11, 5, tzinfo=UTC), 3600)
    assert (s.hour, e.hour) == (10, 12)
    table, view = create_violations("db")
    assert (
        "ENGINE = ReplacingMergeTree(version)" in table
        and "ORDER BY (window_start, policy, rule, id)" in table
    )
    assert view.startswith("CREATE VIEW IF NOT EXISTS `db`.`violation_evidence`")
