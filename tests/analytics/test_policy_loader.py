"""Policy files: the models, and errors that point at file, line and key."""

from datetime import UTC, datetime

import pytest

from analytics.policy.loader import PolicyError, load_policy, parse_policy
from analytics.policy.model import DEFAULT_PLAINTEXT_PORTS
from tests.analytics.test_policy_rules import BANK_POLICY, TESTDATA


def test_bank_policy_loads_every_rule_type():
    p = load_policy(BANK_POLICY)
    assert p.name == "bank-baseline"
    assert len({r.type for r in p.rules}) == 10
    mgmt = next(r for r in p.rules if r.id == "mgmt-from-bastion")
    assert mgmt.severity == "critical" and mgmt.owner == "infrastructure"
    assert mgmt.regulations == ("PCI DSS 4.0 8.2", "MLPS 2.0 8.1.4")
    (ex,) = p.exemptions
    assert ex.approver == "ciso@bank.example" and ex.expires == datetime(2026, 3, 1, tzinfo=UTC)


def test_defaults_are_configurable():
    p = parse_policy("rules: []")
    assert p.plaintext_ports == DEFAULT_PLAINTEXT_PORTS and 1433 not in p.plaintext_ports
    assert 22 in p.management_ports and 6443 in p.management_ports
    assert parse_policy("plaintext_ports: [1433, 80]").plaintext_ports == (1433, 80)


def test_schema_errors_name_file_line_and_key():
    path = TESTDATA / "policy_invalid.yaml"
    with pytest.raises(PolicyError) as e:
        load_policy(path)
    assert e.value.problems == [
        f"{path}:4:24: zones.lab.match[0].cidr: '10.0.0.300/24' does not appear to be an "
        "IPv4 or IPv6 network",
        f"{path}:12:15: rules[1].severity: Input should be 'info', 'low', 'medium', 'high' or 'critical'",
        f"{path}:15:5: exemptions[1].approver: Field required",
    ]


def test_reference_errors_name_the_key():
    text = (
        "zones:\n  prod: {match: [{zone: [production]}]}\n"
        "rules:\n"
        "  - {id: r1, type: separation, between: [prod, staging]}\n"
        "  - {id: r1, type: plaintext, to: [prod], protocols: [tcp]}\n"
        "exemptions:\n"
        "  - {id: e1, rule: r9, approver: ciso, reason: x, expires: 2026-01-01}\n"
    )
    with pytest.raises(PolicyError) as e:
        parse_policy(text, "p.yaml")
    assert e.value.problems == [
        "p.yaml:4:48: rules[0].between[1]: unknown zone 'staging' (zones: prod)",
        "p.yaml:5:10: rules[1].id: duplicate rule id 'r1'",
        "p.yaml:7:20: exemptions[0].rule: unknown rule 'r9'",
    ]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("rules: [{id: x, type: nope}]", "p.yaml:1:9: rules[0]: Input tag 'nope'"),
        ("zones: {a: {match: []}}", "p.yaml:1:20: zones.a.match: Tuple should have at least 1 item"),
        ("rules: [1", "p.yaml:1:10: invalid YAML"),
        ("- a list", "p.yaml:1:1: a policy is a mapping"),
        ("bogus: 1", "p.yaml:1:8: bogus: unknown key (allowed here: description, exemptions, "),
        (
            "rules: [{id: x, type: deny, protocols: [tcpp]}]",
            "p.yaml:1:40: rules[0].protocols: unknown protocol 'tcpp'",
        ),
        (
            "rules: [{id: x, type: deny, ports: [htps]}]",
            "p.yaml:1:36: rules[0].ports: not a port, range or service name: 'htps'",
        ),
    ],
)
def test_other_errors(text, expected):
    with pytest.raises(PolicyError) as e:
        parse_policy(text, "p.yaml")
    assert e.value.problems[0].startswith(expected), e.value.problems
