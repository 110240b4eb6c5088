"""The same path on the embedded default: ``netobs run`` (collectors + in-process transport +
pipeline + chdb in one process) fed by a live Open vSwitch bridge, queried with ``netobs query``
through the running process, then stopped cleanly with nothing lost."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from netobs.control import remote_health

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def netobs(*args, config, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "netobs", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


#: The lab's pods as a bank would declare them; the lab's exporter (127.0.0.1) is node-1 in dc1.
INVENTORY = """
sites:
  - name: site-a
    centers:
      - {name: dc1, role: production, nodes: [{name: node-1, ip: 127.0.0.1}]}
networks:
  - {name: retail, cidr: 10.244.1.0/24, vpc: retail-vpc, tenant: retail, zone: production, center: dc1}
namespaces: [{name: retail-web, tenant: retail, zone: production}]
pods:
  - {name: pod-1, namespace: retail-web, ip: 10.244.1.11, node: node-1, workload: web}
  - {name: pod-2, namespace: retail-web, ip: 10.244.1.12, node: node-1, workload: api}
  - {name: pod-3, namespace: retail-web, ip: 10.244.1.13, node: node-1, workload: db}
"""


@pytest.fixture
def running(tmp_path):
    control = f"127.0.0.1:{free_port()}"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    config = tmp_path / "netobs.yaml"
    config.write_text(
        f"enrich: {{inventory: '{inventory}'}}\n"
        "collector:\n"
        "  listeners: [{listen: '127.0.0.1:0'}, {listen: '127.0.0.1:0'}]\n"
        "  batch_max_delay_ms: 100\n"
        f"store: {{chdb: {{path: '{tmp_path / 'chdb'}'}}}}\n"
        "pipeline: {max_batch_delay_ms: 200}\n"
        f"control: {{listen: '{control}'}}\n"
    )
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "netobs", "--config", str(config), "run"], stderr=log, stdout=log
    )
    health = None
    for _ in range(150):
        try:
            health = remote_health(control)
            break
        except OSError:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            time.sleep(0.2)
    assert health, "netobs run did not come up"
    yield proc, config, control, health
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()


def test_netobs_run_end_to_end(ovs_lab, running, tmp_path):
    proc, config, control, health = running
    sflow_port, ipfix_port = (int(a.rsplit(":", 1)[1]) for a in health["listeners"])
    ovs_lab.enable_sflow(sflow_port, sampling=1)
    ovs_lab.enable_ipfix(ipfix_port, sampling=1, cache_active_timeout=2)
    time.sleep(0.5)
    tcp = ovs_lab.tcp_transfer("pod2", "pod3", port=8443, nbytes=100_000)
    ovs_lab.flush_exports()
    ovs_lab.disable_exports()

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        h = remote_health(control)
        if h["rows_inserted"] and h["rows_inserted"] == h["published_flows"]:
            break
        time.sleep(0.3)
    assert h["lost_flows"] == 0 and h["bad_messages"] == 0

    sql = (
        "SELECT type, sum(packets) AS packets FROM netobs.flows "
        f"WHERE src_addr = toIPv6('{tcp.src_ip}') AND dst_addr = toIPv6('{tcp.dst_ip}') "
        f"AND src_port = {tcp.src_port} AND dst_port = 8443 AND direction IN ('unknown', 'ingress') "
        "GROUP BY type ORDER BY type FORMAT JSONEachRow"
    )
    # The store is owned by `netobs run`: the query goes through its control endpoint.
    q = netobs("query", "--format", "jsonl", sql.replace(" FORMAT JSONEachRow", ""), config=config)
    assert q.returncode == 0, q.stderr
    rows = [json.loads(line) for line in q.stdout.splitlines()]
    assert rows == [
        {"type": "ipfix", "packets": str(tcp.sent_packets)},
        {"type": "sflow", "packets": str(tcp.sent_packets)},
    ]
    listing = netobs(
        "query",
        "SELECT src_addr, dst_addr, dst_port FROM netobs.flows WHERE dst_port = 8443 LIMIT 1",
        config=config,
    )
    assert f"{tcp.src_ip}  {tcp.dst_ip}" in listing.stdout
    # Enriched on the way in: both ends named from the inventory, the exporter placed in dc1.
    named = netobs(
        "query",
        "--format",
        "jsonl",
        "SELECT DISTINCT src_pod, dst_pod, src_workload, dst_workload, src_tenant, src_center, path, exporter_center "
        "FROM netobs.flows WHERE dst_port = 8443",
        config=config,
    )
    assert [json.loads(x) for x in named.stdout.splitlines()] == [
        {
            "src_pod": "pod-2",
            "dst_pod": "pod-3",
            "src_workload": "api",
            "dst_workload": "db",
            "src_tenant": "retail",
            "src_center": "dc1",
            "path": "intra_node",
            "exporter_center": "dc1",
        }
    ]

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    # Stopped: the directory is free again and `netobs query` opens it directly, same rows.
    after = netobs("query", "--format", "tsv", "SELECT count() FROM netobs.flows", config=config)
    assert after.returncode == 0, after.stderr
    assert int(after.stdout.splitlines()[1]) == h["rows_inserted"]


def test_bad_sql_through_control_endpoint_is_one_clear_line(running):
    _, config, _, _ = running
    q = netobs("query", "SELECT * FROM netobs.nope", config=config)
    assert q.returncode == 1
    assert q.stderr.startswith("netobs: ") and "Traceback" not in q.stderr and "UNKNOWN_TABLE" in q.stderr


def test_run_refuses_a_busy_port(running, tmp_path):
    _, config, control, _ = running
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text().replace(str(tmp_path / "chdb"), str(tmp_path / "chdb2")))
    r = netobs("run", config=other, timeout=60)  # same control address: refused with one line
    assert r.returncode == 1
    assert "cannot listen" in r.stderr and "Traceback" not in r.stderr
    assert os.path.exists(tmp_path / "chdb2")
