"""``policy check | test | whatif`` through their argparse parsers, on a real embedded store."""

import argparse
import json
import socket

import pytest

from analytics.policy.cli import add_parsers
from analytics.policy.fixtures import flows_table
from netobs.config import ChdbStoreConfig, ControlConfig, StoreConfig
from netobs.store import make_store
from netobs_app.settings import Settings
from tests.analytics.test_policy_rules import (
    BANK_POLICY,
    CORP,
    DB,
    INTERNET,
    MGMT,
    STAGING,
    TESTDATA,
    WEB,
    flow,
)

FLOWS = [
    flow(WEB, STAGING, time="2026-06-01T10:05:00Z", sampling_rate=100),
    flow(WEB, CORP, time="2026-06-01T10:10:00Z"),
    flow(MGMT, WEB, 22, time="2026-06-01T11:10:00Z"),
    flow(WEB, DB, 5433, time="2026-06-01T11:20:00Z"),
    flow(WEB, INTERNET, 80, time="2026-06-01T11:30:00Z"),  # only the candidate policy forbids it
]
RANGE = ["--from", "2026-06-01T10:00:00Z", "--to", "2026-06-01T12:00:00Z"]


def parse(argv):
    p = argparse.ArgumentParser(prog="netobs")
    add_parsers(p.add_subparsers(dest="command", required=True))
    return p.parse_args(argv)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def settings(tmp_path):
    """Settings of an embedded store holding FLOWS (no running process: the store is opened directly)."""
    cfg = Settings(
        store=StoreConfig(retention_days=0, chdb=ChdbStoreConfig(path=tmp_path / "chdb")),
        control=ControlConfig(listen=f"127.0.0.1:{_free_port()}"),
    )
    s = make_store(cfg.store)
    s.start()
    s.insert(flows_table(FLOWS))
    s.stop()
    return cfg


def run(argv, settings, capsys):
    args = parse(argv)
    code = args.func(args, settings)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_parsers():
    a = parse(["policy", "check", "--policy", "p.yaml", *RANGE, "--output", "jsonl"])
    assert (a.policy, a.output, a.window) == ("p.yaml", "jsonl", 3600)
    assert [t.isoformat() for t in (a.from_, a.to)] == [t.replace("Z", "+00:00") for t in RANGE[1::2]]
    a = parse(["policy", "test", "t1.yaml", "t2.yaml"])
    assert a.tests == ["t1.yaml", "t2.yaml"]
    a = parse(["policy", "whatif", "--policy", "a.yaml", "--candidate", "b.yaml"])
    assert (a.policy, a.candidate, a.from_) == ("a.yaml", "b.yaml", None)


@pytest.mark.slow
def test_check_jsonl_stores_and_reevaluation_updates(settings, capsys, tmp_path):
    argv = ["policy", "check", "--policy", str(BANK_POLICY), *RANGE, "--output", "jsonl"]
    code, out, err = run(argv, settings, capsys)
    assert code == 0 and "4 violating conversations" in err
    lines = [json.loads(line) for line in out.splitlines()]
    by_rule = {v["rule"]: v for v in lines}
    assert sorted(by_rule) == [
        "mgmt-from-bastion",
        "plane-separation",  # management → business plane, too
        "prod-nonprod-separation",
        "tenant-isolation",
    ]
    sep = by_rule["prod-nonprod-separation"]
    assert sep["severity"] == "critical" and sep["regulations"][0] == "PCI DSS 4.0 1.3.1"
    assert sep["client"]["namespace"] == "retail-web" and sep["server"]["namespace"] == "retail-staging"
    assert (
        sep["why"].startswith("Violation: any conversation between zone production") and sep["windows"] == 1
    )
    assert (sep["bytes"], sep["packets"], sep["flows"]) == (100_000, 1000, 1)
    assert sep["first_seen"] == sep["last_seen"] == "2026-06-01T10:05:00.000Z"
    assert sep["evidence"][0]["dst_port"] == 443

    code, again, _ = run(argv, settings, capsys)  # same window again: same ids, no duplicates
    assert [json.loads(x)["id"] for x in again.splitlines()] == [v["id"] for v in lines]

    # an exemption approved afterwards: re-evaluating the window removes the violation
    exempted = tmp_path / "exempted.yaml"
    exempted.write_text(
        BANK_POLICY.read_text()
        + "  - {id: EX-9, rule: mgmt-from-bastion, from: '*', to: '*', approver: ciso, reason: audit,"
        " expires: 2027-01-01}\n"
    )
    code, out, _ = run(
        ["policy", "check", "--policy", str(exempted), *RANGE, "--output", "jsonl"], settings, capsys
    )
    assert sorted(json.loads(x)["rule"] for x in out.splitlines()) == [
        "plane-separation",
        "prod-nonprod-separation",
        "tenant-isolation",
    ]
    s = make_store(settings.store)
    s.start()
    try:
        # no DELETE: the vanished violation is a tombstone, the newest row per id wins (FINAL)
        t = s.query_arrow("SELECT rule, deleted FROM netobs.violations FINAL ORDER BY rule").to_pylist()
        assert [(r["rule"], r["deleted"]) for r in t] == [
            ("mgmt-from-bastion", 1),
            ("plane-separation", 0),
            ("prod-nonprod-separation", 0),
            ("tenant-isolation", 0),
        ]
    finally:
        s.stop()


@pytest.mark.slow
def test_check_table_output_dry_run_and_fail_on(settings, capsys):
    argv = ["policy", "check", "--policy", str(BANK_POLICY), *RANGE, "--dry-run"]
    code, out, _ = run(argv, settings, capsys)
    assert code == 0 and out.count("\n") == 4 and "mgmt-from-bastion" in out
    assert run([*argv, "--fail-on", "critical"], settings, capsys)[0] == 1
    quiet = [
        "policy",
        "check",
        "--policy",
        str(BANK_POLICY),
        "--from",
        "2026-06-01T12:00:00Z",
        "--to",
        "2026-06-01T13:00:00Z",
        "--dry-run",
        "--fail-on",
        "info",
    ]
    assert run(quiet, settings, capsys)[0] == 0  # nothing in that hour


def test_invalid_policy_exits_2(settings, capsys):
    code, _, err = run(
        ["policy", "check", "--policy", str(TESTDATA / "policy_invalid.yaml")], settings, capsys
    )
    assert code == 2 and "policy_invalid.yaml:12:15: rules[1].severity" in err


@pytest.mark.slow
def test_policy_test_passes_and_fails(settings, capsys, tmp_path):
    code, out, _ = run(["policy", "test", str(TESTDATA / "policy_bank_test.yaml")], settings, capsys)
    assert code == 0, out
    assert out.count("PASS: ") == 4 and out.rstrip().endswith("SUCCESS")

    bad = tmp_path / "bad_test.yaml"
    bad.write_text(
        f"policy: {BANK_POLICY}\ntests:\n"
        "  - name: wrong expectation\n"
        "    flows: [{time: 2026-06-01T10:05:00Z, src: {tenant: a, namespace: x}, dst: {tenant: b}}]\n"
        "    expect: [{rule: mgmt-from-bastion}]\n"
    )
    code, out, _ = run(["policy", "test", str(bad)], settings, capsys)
    assert code == 1
    assert "FAIL: " in out and "expected violation #1 not found" in out
    assert "unexpected violation: rule=tenant-isolation" in out


@pytest.mark.slow
def test_whatif_shows_added_and_removed(settings, capsys):
    argv = [
        "policy",
        "whatif",
        "--policy",
        str(BANK_POLICY),
        "--candidate",
        str(TESTDATA / "policy_bank_candidate.yaml"),
        *RANGE,
        "--output",
        "jsonl",
    ]
    code, out, _ = run(argv, settings, capsys)
    diff = json.loads(out)
    assert code == 0
    assert diff["per_rule"]["mgmt-from-bastion"] == {"current": 1, "candidate": 0}  # ops became a bastion
    assert diff["per_rule"]["tenant-isolation"] == {"current": 1, "candidate": 0}
    assert diff["per_rule"]["prod-nonprod-separation"] == {"current": 1, "candidate": 1}
    assert diff["per_rule"]["plane-separation"] == {"current": 1, "candidate": 0}  # not in the candidate
    assert diff["unchanged"] == 1 and len(diff["removed"]) == 3
    assert [(v["rule"], v["server"]["ip"]) for v in diff["added"]] == [("no-http-out", "203.0.113.7")]
    code, text, _ = run(argv[:-2], settings, capsys)
    assert "removed 3" in text and "- 2026-06-01T11:00:00.000Z mgmt-from-bastion" in text


@pytest.mark.slow
def test_check_through_a_running_process(settings, capsys):
    """While a process owns the embedded store, the command goes through its control endpoint."""
    from netobs.control import ControlServer
    from netobs.queryservice import QueryService

    owner = make_store(settings.store)
    owner.start()
    service = QueryService(owner, settings.store.database, settings.control.auth)
    server = ControlServer("127.0.0.1:0", [service.route()])  # anonymous loopback: operator
    server.start()
    try:
        remote = settings.model_copy(update={"control": ControlConfig(listen=server.address)})
        argv = ["policy", "check", "--policy", str(BANK_POLICY), *RANGE, "--output", "jsonl"]
        code, out, _ = run(argv, remote, capsys)
        assert code == 0 and len(out.splitlines()) == 4
        n = owner.query_arrow("SELECT count() AS n FROM netobs.violations FINAL").column("n").to_pylist()
        assert n == [4]
    finally:
        server.stop()
        owner.stop()


@pytest.mark.slow
def test_check_networkpolicy_conformance(settings, capsys, tmp_path):
    s = make_store(settings.store)
    s.start()
    web, db = {**WEB, "pod": "web-7f9c-x2"}, {**DB, "pod": "pg-0"}
    s.insert(
        flows_table(
            [
                flow(web, db, 5433, time="2026-06-01T10:20:00Z"),  # denied: only 5432 is allowed
                flow(web, db, 5432, time="2026-06-01T10:21:00Z"),
                flow(db, web, 40000, sport=5432, time="2026-06-01T10:21:00Z"),  # the reply
            ]
        )
    )
    s.stop()
    argv = ["policy", "check", "--policy", str(TESTDATA / "policy_k8s.yaml"), *RANGE, "--output", "jsonl"]
    code, out, err = run(argv, settings, capsys)
    (v,) = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and v["rule"] == "netpol-enforcement" and v["severity"] == "critical"
    assert v["server"]["namespace"] == "retail-db" and v["evidence"][0]["dst_port"] == 5433
    assert (
        v["evidence"][0]["detail"] == "ingress of dst isolated by retail-db/allow-web, retail-db/default-deny"
    )
    # no metadata store in this database: pods are known by name only, matched as unlabeled pods
    assert "metadata_versions does not exist" in err

    missing = tmp_path / "k8s.yaml"
    missing.write_text("rules: [{id: n, type: networkpolicy_conformance, files: [nowhere]}]\n")
    code, _, err = run(["policy", "check", "--policy", str(missing), *RANGE], settings, capsys)
    assert code == 2 and "NetworkPolicy files not found" in err and "nowhere" in err
