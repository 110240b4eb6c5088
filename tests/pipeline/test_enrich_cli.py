"""``netobs decode --enrich`` and ``netobs ingest`` on the bundled OVS captures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "testdata"
ROOT = DATA.parent.parent


def netobs(*args, env=None, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "netobs", *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd
    )


@pytest.mark.slow
def test_decode_enrich_adds_the_fields_to_the_decode_contract():
    plain = netobs("decode", str(DATA / "ovs-ipfix.pcap"))
    rich = netobs(
        "decode", "--enrich", "--inventory", str(DATA / "inventory.yaml"), str(DATA / "ovs-ipfix.pcap")
    )
    assert rich.returncode == 0, rich.stderr
    a = [json.loads(x) for x in plain.stdout.splitlines()]
    b = [json.loads(x) for x in rich.stdout.splitlines()]
    assert len(a) == len(b) and all(x.items() <= y.items() for x, y in zip(a, b, strict=True))
    pod_flow = next(r for r in b if r["kind"] == "flow" and r["src_addr"] == "10.244.1.11")
    assert (pod_flow["src_pod"], pod_flow["dst_pod"], pod_flow["path"]) == ("pod-b", "pod-c", "intra_center")


@pytest.mark.slow
def test_ingest_stores_enriched_flows_with_a_summary(tmp_path):
    import os

    env = {**os.environ, "NETOBS__STORE__CHDB__PATH": str(tmp_path / "chdb")}
    captures = [str(DATA / "ovs-ipfix.pcap"), str(DATA / "ovs-sflow.pcap")]
    r = netobs("ingest", "--inventory", str(DATA / "inventory.yaml"), *captures, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ingest:" in r.stderr and "rejects, flow_start 2026-" in r.stderr
    assert "\r" not in r.stderr  # not a terminal: plain progress lines
    n = int(r.stderr.split("ingested ")[1].split()[0])
    counters = int(r.stderr.split("ingested ")[1].split(" records, ")[1].split()[0])  # OVS sFlow counters
    c = netobs(
        "query", "SELECT count() FROM netobs.interface_counters", "--format", "tsv", env=env, cwd=tmp_path
    )
    assert c.returncode == 0, c.stderr
    assert int(c.stdout.strip().splitlines()[-1]) == counters > 0
    q = netobs(
        "query",
        "SELECT count() AS n, countIf(src_pod = 'pod-b') AS b FROM netobs.flows",
        "--format",
        "tsv",
        env=env,
        cwd=tmp_path,
    )
    assert q.returncode == 0, q.stderr
    rows = [line.split("\t") for line in q.stdout.strip().splitlines()]
    total, named = (int(x) for x in rows[-1])
    assert total == n > 0 and named > 0


def test_ingest_refuses_records_older_than_the_store_keeps_loudly(tmp_path):
    """The captures are days old; a store keeping one day would delete them at once (TTL): refused,
    said in the summary and the exit code, and nothing half-stored."""
    import os

    env = {
        **os.environ,
        "NETOBS__STORE__CHDB__PATH": str(tmp_path / "chdb"),
        "NETOBS__STORE__RETENTION_DAYS": "1",
    }
    r = netobs("ingest", "--inventory", str(DATA / "inventory.yaml"), str(DATA / "ovs-ipfix.pcap"), env=env,
               cwd=tmp_path)  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert "ingested 0 records" in r.stderr and "REFUSED" in r.stderr and "retention_days=1" in r.stderr
    assert "refused" in r.stderr and "older than the store keeps" in r.stderr  # the log line too
    q = netobs("query", "SELECT count() FROM netobs.flows", "--format", "tsv", env=env, cwd=tmp_path)
    assert q.stdout.strip().splitlines()[-1] == "0"
