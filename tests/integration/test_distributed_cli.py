"""Distributed mode through the CLI: ``netobs collect`` and ``netobs pipeline`` as separate
processes joined by a real Kafka broker, fed by replaying the project's OVS captures."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from netobs.control import remote_health, remote_query
from tests.integration.test_embedded_run import free_port

pytestmark = pytest.mark.integration


def start(args, config, log):
    return subprocess.Popen(
        [sys.executable, "-m", "netobs", "--config", str(config), *args], stdout=log, stderr=log
    )


def wait_health(control, proc, log_path, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return remote_health(control)
        except OSError:
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.2)
    raise AssertionError(f"no health from {control}: {log_path.read_text()}")


def decoded_flow_count(capture):
    out = subprocess.run(
        [sys.executable, "-m", "netobs", "decode", str(capture)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return sum(1 for line in out.stdout.splitlines() if json.loads(line)["kind"] == "flow")


def test_collect_and_pipeline_processes_via_kafka(tmp_path, kafka_broker, topic_factory):
    topic = topic_factory(partitions=3)
    control_c, control_p = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    base = (
        "transport:\n  type: kafka\n"
        f"  kafka: {{bootstrap_servers: ['{kafka_broker.bootstrap}'], topic: {topic}, group_id: g-{topic}}}\n"
        f"  spool: {{dir: '{tmp_path / 'spool'}'}}\n"
        "collector:\n  listeners: [{listen: '127.0.0.1:0'}]\n  batch_max_delay_ms: 100\n"
        f"store: {{chdb: {{path: '{tmp_path / 'chdb'}'}}}}\n"
        "pipeline: {max_batch_delay_ms: 200}\n"
    )
    (tmp_path / "c.yaml").write_text(base + f"control: {{listen: '{control_c}'}}\n")
    (tmp_path / "p.yaml").write_text(base + f"control: {{listen: '{control_p}'}}\n")
    logs = [open(tmp_path / n, "w") for n in ("collect.log", "pipeline.log")]
    collect = start(["collect"], tmp_path / "c.yaml", logs[0])
    pipeline = start(["pipeline"], tmp_path / "p.yaml", logs[1])
    try:
        health = wait_health(control_c, collect, tmp_path / "collect.log")
        wait_health(control_p, pipeline, tmp_path / "pipeline.log")
        (listener,) = health["listeners"]
        expected = 0
        for capture in ("tests/testdata/ovs-sflow.pcap", "tests/testdata/ovs-ipfix.pcap"):
            r = subprocess.run(
                [sys.executable, "-m", "netobs", "replay", capture, "--to", listener, "--rate", "2000"]
            )
            assert r.returncode == 0
            expected += decoded_flow_count(capture)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if remote_health(control_p)["rows_inserted"] >= expected:
                break
            time.sleep(0.3)
        assert remote_health(control_c)["published_flows"] == expected
        assert (
            remote_query(control_p, "SELECT count() AS n FROM netobs.flows").column("n")[0].as_py()
            == expected
        )
        for proc in (collect, pipeline):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    finally:
        for proc in (collect, pipeline):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


def test_collect_with_broker_down_says_so(tmp_path):
    """With the spool off, a collector that cannot reach Kafka refuses to start, in one line."""
    config = tmp_path / "c.yaml"
    config.write_text(
        f"transport: {{type: kafka, kafka: {{bootstrap_servers: ['127.0.0.1:{free_port()}'], request_timeout_ms: 3000}}, "
        "spool: {enabled: false}}\n"
        "collector: {listeners: [{listen: '127.0.0.1:0'}]}\n"
        f"control: {{listen: '127.0.0.1:{free_port()}', startup_wait_s: 2}}\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "netobs", "--config", str(config), "collect"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert "Kafka" in r.stderr and "unreachable" in r.stderr and "Traceback" not in r.stderr


def test_collect_with_broker_down_spools_and_says_degraded(tmp_path):
    """With the spool (the default), it starts, spools what it collects and says why in /health."""
    control = f"127.0.0.1:{free_port()}"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"transport: {{type: kafka, kafka: {{bootstrap_servers: ['127.0.0.1:{free_port()}'], request_timeout_ms: 3000, "
        f"max_block_ms: 1000}}, spool: {{dir: '{tmp_path / 'spool'}'}}}}\n"
        "collector: {listeners: [{listen: '127.0.0.1:0'}], batch_max_delay_ms: 100}\n"
        f"control: {{listen: '{control}'}}\n"
    )
    with open(tmp_path / "collect.log", "w") as log:
        proc = start(["collect"], config, log)
        try:
            health = wait_health(control, proc, tmp_path / "collect.log")
            (listener,) = health["listeners"]
            capture = "tests/testdata/ovs-sflow.pcap"
            r = subprocess.run(
                [sys.executable, "-m", "netobs", "replay", capture, "--to", listener, "--rate", "2000"]
            )
            assert r.returncode == 0
            expected = decoded_flow_count(capture)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                health = remote_health(control)
                if health["published_flows"] >= expected and health["spool"]["records"]:
                    break
                time.sleep(0.3)
            assert health["status"] == "degraded" and "transport" in health["reasons"]
            assert health["published_flows"] == expected and health["lost_flows"] == 0
            assert health["spool"]["records"] > 0 and not health["spool"]["transport_up"]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
