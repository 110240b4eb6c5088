"""Label selectors fed by an inventory file, end to end: ``netobs ingest --inventory`` of a real OVS
capture, then ``policy lint`` and ``policy check`` with rules written as label selectors.

The labels (keys, values, the selector's form) are drawn at test time (seed printed). The capture
holds, counted once each and oriented client → server: pod-b → pod-c (ICMP echo and TCP 8080,
each answered by pod-c), an unnamed host → pod-b and pod-c, pod-b → the unnamed host.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DATA = Path(__file__).resolve().parent.parent / "testdata"
ROOT = DATA.parent.parent
RANGE = ["--from", "2026-11-30T05:00Z", "--to", "2026-11-30T06:00Z"]


def netobs(env, *args):
    r = subprocess.run(
        [sys.executable, "-m", "netobs", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    return r


def _word(rng: random.Random, n: int = 6) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))


def _key(rng: random.Random) -> str:
    """Plain keys and prefixed ones (``example.com/role``), as Kubernetes allows."""
    return rng.choice(
        [_word(rng), f"{_word(rng, 4)}.example.com/{_word(rng)}", f"app.kubernetes.io/{_word(rng)}"]
    )


def _selector(rng: random.Random, key: str, value: str) -> dict:
    """A selector of exactly the pods labelled key=value, in a form drawn at random."""
    form = rng.choice(["matchLabels", "In", "In-with-other"])
    if form == "matchLabels":
        return {"matchLabels": {key: value}}
    values = [value] if form == "In" else [_word(rng), value]
    return {"matchExpressions": [{"key": key, "operator": "In", "values": values}]}


def _inventory(base: dict, labels: dict[str, dict[str, str]], ns_labels: dict[str, dict[str, str]]) -> dict:
    inv = json.loads(json.dumps(base))
    for pod in inv["pods"]:
        pod["labels"] = labels.get(pod["name"], {})
    for ns in inv["namespaces"]:
        ns["labels"] = ns_labels.get(ns["name"], {})
    return inv


@pytest.mark.slow
def test_label_selectors_from_an_inventory_file_find_their_violation_and_no_false_one(tmp_path):
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    key, web, pay, ghost = _key(rng), _word(rng), _word(rng), _word(rng)
    ns_key, ns_value = _key(rng), _word(rng)
    decoy = _word(rng)  # pod-a and pod-d: labelled, absent from the capture
    labels = {"pod-a": {key: web}, "pod-b": {key: web}, "pod-c": {key: pay}, "pod-d": {key: decoy}}
    base = yaml.safe_load((DATA / "inventory.yaml").read_text())
    inv = tmp_path / "inventory.yaml"
    inv.write_text(yaml.safe_dump(_inventory(base, labels, {"payments": {ns_key: ns_value}})))
    protocols = rng.choice([None, ["tcp"], ["icmp"], ["tcp", "icmp"]])
    policy = {
        "version": 2,
        "name": "labels",
        "zones": {
            "web": {"match": [{"podSelector": _selector(rng, key, web)}]},
            "pay-pods": {"match": [{"podSelector": _selector(rng, key, pay)}]},
            "pay-ns": {"match": [{"namespaceSelector": {"matchLabels": {ns_key: ns_value}}}]},
            "nobody": {"match": [{"podSelector": {"matchLabels": {key: ghost}}}]},
        },
        "rules": [
            {"id": "web-not-to-payments", "type": "deny", "from": "web", "to": "pay-ns",
             **({"protocols": protocols} if protocols else {})},
            # pod-c only answers pod-b: its replies are never requests
            {"id": "payments-never-call-web", "type": "deny", "from": "pay-pods", "to": "web"},
            {"id": "ghost-rule", "type": "deny", "from": "nobody", "to": "*"},
        ],
    }  # fmt: skip
    pfile = tmp_path / "policy.yaml"
    pfile.write_text(yaml.safe_dump(policy, sort_keys=False))
    env = {
        **os.environ,
        "NETOBS__STORE__CHDB__PATH": str(tmp_path / "chdb"),
        "NETOBS__STORE__RETENTION_DAYS": "0",
    }

    r = netobs(env, "ingest", "--inventory", str(inv), str(DATA / "ovs-ipfix.pcap"))
    assert r.returncode == 0, r.stderr

    # lint without the inventory: explained, not judged (no false "selects no end" warning)
    r = netobs(env, "policy", "lint", str(pfile))
    assert r.returncode == 0, r.stderr
    assert "not judged here" in r.stdout and "selects no end" not in r.stdout, r.stdout
    # lint with it: only the selector no pod carries is reported, naming its rule
    r = netobs(env, "policy", "lint", "--strict", "--inventory", str(inv), str(pfile))
    assert r.returncode == 1, r.stdout + r.stderr
    warnings = [line for line in r.stdout.splitlines() if line.startswith("warning:")]
    assert warnings and all("nobody" in w or "ghost-rule" in w for w in warnings), warnings
    assert any(
        "zone nobody" in w and "matches no pod of the inventory" in w and "ghost-rule" in w for w in warnings
    )

    # check: the labels come from the store's metadata history, which the ingest filled
    r = netobs(env, "policy", "check", "--policy", str(pfile), *RANGE, "--output", "jsonl", "--dry-run")
    assert r.returncode == 0, r.stderr
    found = {
        (v["rule"], v["client"]["pod"], v["server"]["pod"], v["proto"], v["port"])
        for v in map(json.loads, r.stdout.splitlines())
    }
    expected = {
        ("web-not-to-payments", "pod-b", "pod-c", proto, port)
        for proto, port in (("tcp", "8080"), ("icmp", "2048"))
        if protocols is None or proto in protocols
    }
    assert {f[:4] for f in found} == {e[:4] for e in expected}, (found, expected)
    assert {str(f[4]) for f in found} == {e[4] for e in expected}, found

    # check --inventory: the file's labels win (pod-b relabelled: the rule loses its client)
    moved = dict(labels, **{"pod-b": {key: decoy}})
    inv2 = tmp_path / "inventory-relabelled.yaml"
    inv2.write_text(yaml.safe_dump(_inventory(base, moved, {"payments": {ns_key: ns_value}})))
    r = netobs(env, "policy", "check", "--policy", str(pfile), *RANGE, "--output", "jsonl", "--dry-run",
               "--inventory", str(inv2))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", r.stdout
