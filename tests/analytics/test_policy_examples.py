"""The worked examples of docs/policy.md (one per rule kind of the rulebook) pass their own tests on
chdb; test-file typos, lint and version 1 migration give clear messages, never a traceback."""

from __future__ import annotations

from datetime import date

import pytest

from analytics.policy.lint import lint
from analytics.policy.loader import PolicyError, parse_policy
from analytics.policy.reference import EXAMPLES, RULEBOOK
from analytics.policy.testing import load_tests, run_tests
from netobs_app.cli import main

TESTS = sorted(EXAMPLES.glob("*.test.yaml"))


@pytest.fixture(scope="module")
def store(module_store_factory):
    return module_store_factory(retention_days=0)


def test_nine_rule_kinds_of_the_rulebook_have_an_example():
    assert len(TESTS) == 9 and {t.name.removesuffix(".test.yaml") for t in TESTS} == set(RULEBOOK)
    for t in TESTS:  # "a few lines": each example policy is short
        assert len((EXAMPLES / t.name.replace(".test.", ".policy.")).read_text().splitlines()) <= 25


@pytest.mark.parametrize("path", TESTS, ids=lambda p: p.name.split(".")[0])
def test_example(store, path):
    results = run_tests(store, path)
    assert results and all(r.ok for r in results), [r.problems for r in results]


def test_a_wrong_expectation_fails_the_case(store, tmp_path):
    src = (
        (EXAMPLES / "2-zone-separation.test.yaml")
        .read_text()
        .replace("pod: loadgen-0}, server", "pod: other}, server")
    )
    (tmp_path / "t.yaml").write_text(src)
    (tmp_path / "2-zone-separation.policy.yaml").write_text(
        (EXAMPLES / "2-zone-separation.policy.yaml").read_text()
    )
    (result,) = run_tests(store, tmp_path / "t.yaml")
    assert not result.ok and any("not found" in p for p in result.problems)
    assert any("unexpected violation" in p and "loadgen-0" in p for p in result.problems)


def test_test_file_typos_are_located(tmp_path, capsys):
    bad = tmp_path / "t.yaml"
    bad.write_text("policy: p.yaml\ntests:\n  - name: x\n    flows: [{time: 1}]\n    expct: []\n")
    with pytest.raises(PolicyError) as e:
        load_tests(bad)
    assert e.value.problems == [
        f"{bad}:5:12: tests[0].expct: unknown key (allowed here: expect, flows, name)"
    ]
    assert main(["policy", "test", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "expct" in err and "Traceback" not in err and "pydantic" not in err


def test_lint_explains_and_warns():
    p = parse_policy(
        "version: 2\nzones:\n  all: {match: [{}]}\n  a: {match: [{tenant: [x]}]}\nrules:\n"
        "  - {id: never, type: allow, from: a, to: a}\n"
        "  - {id: every, type: deny}\n"
        "  - {id: ok, type: deny, from: a, to: '!a', ports: ['10000-10100', https]}\n"
        "exemptions:\n  - {id: e, rule: ok, approver: me, reason: r, review: 2026-01-01}\n"
    )
    out = lint(p, today=date(2026, 6, 1))
    words = dict(out.explanations)
    assert words["ok"] == (
        "Violation: a client in zone a opens a conversation to an end outside zone a on port 443, 10000-10100."
    )
    assert "permanent, review by 2026-01-01" in words["e"]
    assert out.warnings == [
        "zone all: a selector with no fields matches every end (use '*' if meant)",
        "rule never: can never match (its conditions contradict or select nothing)",
        "rule every: matches every conversation (every flow would be a violation)",
        "exemption e: review date 2026-01-01 has passed",
        "exemption e: covers every conversation of rule ok for ever",
    ]


def test_lint_judges_label_selectors_only_against_an_inventory():
    p = parse_policy(
        "version: 2\nzones:\n  db: {match: [{podSelector: {matchLabels: {tier: db}}}]}\n"
        "  ghosts: {match: [{podSelector: {matchExpressions: [{key: tier, operator: In, values: [ghost]}]}}]}\n"
        "rules:\n  - {id: to-db, type: deny, from: '*', to: db}\n  - {id: from-ghosts, type: deny, from: ghosts}\n"
        "exemptions:\n  - {id: e, rule: to-db, from: {namespaceSelector: {matchLabels: {env: nope}}},"
        " approver: me, reason: r, review: 2030-01-01}\n"
    )
    offline = lint(p, today=date(2026, 6, 1))
    assert (
        len(offline.warnings) == 1 and "not judged here" in offline.warnings[0]
    )  # no false "selects no end"
    pods = [("shop", "pg-0", {"tier": "db"}), ("shop", "web-0", {"tier": "web"})]
    judged = lint(
        p.with_labels(pods, {"shop": {"env": "prod"}}), today=date(2026, 6, 1), inventory="inv.yaml"
    )
    assert judged.warnings == [
        "zone ghosts: podSelector {tier In ['ghost']} matches no pod of the inventory (inv.yaml); used by rule "
        "from-ghosts",
        "exemption e: its from end (namespaceSelector {env=nope}) matches no pod of the inventory (inv.yaml): "
        "it exempts nothing",
        "rule from-ghosts: can never match (its conditions contradict or select nothing)",
        "rule from-ghosts: zone ghosts selects no end",
    ]


def test_version_1_is_migrated_with_a_message(tmp_path, capsys):
    v1 = tmp_path / "v1.yaml"
    v1.write_text(
        "rules:\n  - {id: r, type: residency, tenants: [t]}\n"
        "exemptions:\n  - {id: e, rule: r, approver: a, reason: b, expires: 2027-01-01}\n"
    )
    assert main(["policy", "lint", str(v1)]) == 0
    err = capsys.readouterr().err
    assert "version 1 policy" in err and "review date set to its expiry 2027-01-01" in err
    assert "unnamed_ends: violation" in err and f"netobs policy migrate {v1}" in err
    assert main(["policy", "migrate", str(v1)]) == 0
    v2 = parse_policy(capsys.readouterr().out)
    assert v2.version == 2 and not v2._notes and v2.exemptions[0].review == date(2027, 1, 1)
    assert v2.rules[0].unnamed_ends == "violation"
