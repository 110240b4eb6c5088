"""`netobs collect` and `netobs pipeline` started before Kafka and the ClickHouse server (a compose
stack or a cluster comes up in any order): both wait and retry with backoff, and once the real broker
and the real server arrive 60 s later, flows go all the way through."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from netobs.control import remote_health
from tests.integration.test_distributed_cli import decoded_flow_count, start, wait_health
from tests.integration.test_embedded_run import free_port
from tests.services import _require
from tests.services.clickhouse_server import ClickHouseError, ClickHouseServer, find_server_command
from tests.services.kafka import KafkaBroker, KafkaError, wait_topic

pytestmark = pytest.mark.integration
LATE_S = 60


def test_collect_and_pipeline_survive_dependencies_60s_late(tmp_path):
    broker = KafkaBroker(tmp_path / "kafka")
    if why := broker.check_installed():
        _require.unavailable(why)
    if not find_server_command():
        _require.unavailable("clickhouse-server not installed (run scripts/install-services.sh)")
    server = ClickHouseServer(tmp_path / "ch")
    broker.prepare()  # ports and config only: nothing listens yet
    server.prepare()
    control_c, control_p = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    base = (
        "transport:\n  type: kafka\n"
        f"  kafka: {{bootstrap_servers: ['{broker.bootstrap}'], topic: late, group_id: g-late}}\n"
        "  spool: {enabled: false}\n"  # no spool: the collector really needs the broker to start
        "collector:\n  listeners: [{listen: '127.0.0.1:0'}]\n  batch_max_delay_ms: 100\n"
        f"store: {{type: clickhouse, database: late, clickhouse: {{host: 127.0.0.1, port: {server.port}, "
        "connect_timeout_s: 2}, insert_retries: 1, retry_backoff_s: 0.2}\n"
        "pipeline: {max_batch_delay_ms: 200}\n"
    )
    wait = "startup_wait_s: 240, startup_max_backoff_s: 5"
    (tmp_path / "c.yaml").write_text(base + f"control: {{listen: '{control_c}', {wait}}}\n")
    (tmp_path / "p.yaml").write_text(base + f"control: {{listen: '{control_p}', {wait}}}\n")
    logs = [open(tmp_path / n, "w") for n in ("collect.log", "pipeline.log")]
    procs = [
        start(["collect"], tmp_path / "c.yaml", logs[0]),
        start(["pipeline", "--no-schedule"], tmp_path / "p.yaml", logs[1]),
    ]
    try:
        time.sleep(LATE_S)
        for proc, name in zip(procs, ("collect.log", "pipeline.log"), strict=True):
            text = (tmp_path / name).read_text()
            assert proc.poll() is None, text  # still waiting, not exited
            assert "not ready" in text and "retrying in" in text, text
        try:
            # Kafka first, then its topic (as operators create it), then ClickHouse: the pipeline
            # subscribes once the store is up too, so it finds the topic (a consumer that joined
            # before its topic existed would only see it at its next metadata refresh, 5 min later).
            broker.start()
            admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="late-topic")
            try:
                admin.create_topics([NewTopic("late", num_partitions=2, replication_factor=1)])
            finally:
                admin.close()
            wait_topic(broker.bootstrap, "late", 2)
            server.start()
        except (KafkaError, ClickHouseError) as e:
            _require.unavailable(f"late services failed to start: {e}")
        health = wait_health(control_c, procs[0], tmp_path / "collect.log", timeout_s=90)
        wait_health(control_p, procs[1], tmp_path / "pipeline.log", timeout_s=90)
        (listener,) = health["listeners"]
        capture = "tests/testdata/ovs-sflow.pcap"
        expected = decoded_flow_count(capture)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # The pipeline's group may join after the first batches: replay until they all arrive.
            r = subprocess.run([sys.executable, "-m", "netobs", "replay", capture, "--to", listener])
            assert r.returncode == 0
            time.sleep(3)
            if remote_health(control_p)["rows_inserted"] >= expected:
                break
        assert remote_health(control_p)["rows_inserted"] >= expected
        rows = server.client().execute("SELECT count() FROM late.flows")[0][0]
        assert rows >= expected
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        pipeline_log = (tmp_path / "pipeline.log").read_text()
        assert "store ready after" in pipeline_log, pipeline_log[-2000:]
        collect_log = (tmp_path / "collect.log").read_text()
        assert "transport ready after" in collect_log, collect_log[-2000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
        broker.stop()
        server.stop()


def test_a_setting_kafka_refuses_is_not_retried(tmp_path, kafka_broker):
    """Waiting is for a dependency that is away, not for a wrong setting: that exits 2 at once."""
    config = tmp_path / "p.yaml"
    config.write_text(
        f"transport: {{type: kafka, kafka: {{bootstrap_servers: ['{kafka_broker.bootstrap}'], "
        "request_timeout_ms: 5000}}\n"  # below the consumer's session timeout (10 s)
        f"store: {{chdb: {{path: '{tmp_path / 'chdb'}'}}}}\n"
        f"control: {{listen: '127.0.0.1:{free_port()}', startup_wait_s: 120}}\n"
    )
    started = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "netobs", "--config", str(config), "pipeline"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert "configuration error: transport.kafka" in r.stderr and "session timeout" in r.stderr
    assert time.monotonic() - started < 60  # not the 120 s of waiting
