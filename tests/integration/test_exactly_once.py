"""Exactly once in effect, with real components: Kafka (3 partitions), two ``netobs pipeline``
processes in one consumer group, and a ClickHouse 18.16 server whose flows table is a
ReplicatedMergeTree (ZooKeeper), so a replayed batch is dropped as a duplicate block.

One pipeline is SIGKILLed while its INSERT is in flight; the other takes its partitions over,
replays the recorded batch, and the table ends with exactly the flows sent. Then the server
goes away for a while: everything produced meanwhile arrives after it is back, once.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pytest

from netobs.batch import FlowBatch
from netobs.config import KafkaTransportConfig
from netobs.transport.kafka import PLAN_PREFIX, KafkaTransport
from tests.integration.test_distributed_cli import wait_health
from tests.integration.test_embedded_run import free_port
from tests.services.zookeeper import clickhouse_replicated, zookeeper  # noqa: F401

pytestmark = pytest.mark.integration

ROWS_PER_MESSAGE = 500


def message(seq: int) -> pa.RecordBatch:
    """Flows whose ``packets`` column holds unique sequence numbers (no two rows alike)."""
    now = int(time.time() * 1000)
    n = ROWS_PER_MESSAGE
    return FlowBatch(
        {
            "time_received": np.full(n, now, dtype="int64"),
            "type": np.array(["ipfix"] * n, dtype=object),
            "packets": np.arange(seq * n, (seq + 1) * n, dtype="uint64"),
            "bytes": np.full(n, 100, dtype="uint64"),
        }
    ).to_arrow()


def produce(kafka: KafkaTransportConfig, first: int, count: int) -> None:
    producer = KafkaTransport(kafka).producer()
    for seq in range(first, first + count):
        producer.send(message(seq), key=f"exporter-{seq % 7}".encode())
    producer.flush()
    producer.close()


def config_text(kafka: KafkaTransportConfig, server, database: str, control: str) -> str:
    return (
        "transport:\n  type: kafka\n"
        f"  kafka: {{bootstrap_servers: ['{kafka.bootstrap_servers[0]}'], topic: {kafka.topic}, "
        f"group_id: {kafka.group_id}, dead_letter_topic: '{kafka.topic}-dlq', max_poll_interval_ms: 15000}}\n"
        f"store: {{type: clickhouse, database: {database}, replicated: true, insert_retries: 2, "
        f"retry_backoff_s: 0.2, clickhouse: {{host: 127.0.0.1, port: {server.port}, connect_timeout_s: 2}}}}\n"
        "pipeline: {max_batch_rows: 5000, max_batch_delay_ms: 300}\n"
        f"control: {{listen: '{control}'}}\n"
    )


class Pipelines:
    """``netobs pipeline`` subprocesses, each with its own config, log and control endpoint."""

    def __init__(self, tmp_path, kafka, server, database):
        self.tmp_path, self.kafka, self.server, self.database = tmp_path, kafka, server, database
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []

    def start(self, name: str) -> subprocess.Popen:
        control = f"127.0.0.1:{free_port()}"
        cfg = self.tmp_path / f"{name}.yaml"
        cfg.write_text(config_text(self.kafka, self.server, self.database, control))
        log = open(self.tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed in stop_all
        proc = subprocess.Popen(
            [sys.executable, "-m", "netobs", "--config", str(cfg), "pipeline"], stdout=log, stderr=log
        )
        self.procs.append(proc)
        self.logs.append(log)
        wait_health(control, proc, self.tmp_path / f"{name}.log")
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for log in self.logs:
            log.close()


def count(server, database) -> tuple[int, int]:
    client = server.client()
    try:
        n, distinct = client.execute(f"SELECT count(), uniqExact(packets) FROM {database}.flows")[0]
        return int(n), int(distinct)
    finally:
        client.disconnect()


def wait_count(server, database, expected: int, timeout_s: float = 120) -> tuple[int, int]:
    deadline = time.monotonic() + timeout_s
    got = (0, 0)
    while time.monotonic() < deadline:
        try:
            got = count(server, database)
        except Exception:  # table not created yet, server restarting
            pass
        if got[0] >= expected:
            time.sleep(2.0)  # anything extra (a duplicate) would show up now
            return count(server, database)
        time.sleep(0.3)
    return got


def local_port_of(pid: int, server_port: int) -> set[int]:
    """Local ports of ``pid``'s TCP connections to ``server_port`` (from ``ss``)."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"dst 127.0.0.1:{server_port}"],
        capture_output=True,
        text=True,
    ).stdout
    return {int(m.group(1)) for line in out.splitlines() if f"pid={pid}," in line
            for m in [re.search(r"127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:" + str(server_port), line)] if m}  # fmt: skip


def kill_mid_insert(victim: subprocess.Popen, server, database, timeout_s: float = 60) -> bool:
    """SIGKILL ``victim`` while the server is executing an INSERT sent by it."""
    client = server.client()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ports = local_port_of(victim.pid, server.port)
            rows = client.execute("SELECT port, query FROM system.processes WHERE query LIKE 'INSERT INTO%'")
            if any(port in ports and database in query for port, query in rows):
                victim.kill()
                victim.wait(10)
                return True
            time.sleep(0.005)
    finally:
        client.disconnect()
    victim.kill()
    victim.wait(10)
    return False


@pytest.fixture
def setup(tmp_path, kafka_broker, topic_factory, clickhouse_replicated):  # noqa: F811
    topic = topic_factory(partitions=3)
    kafka = KafkaTransportConfig(
        bootstrap_servers=(kafka_broker.bootstrap,), topic=topic, group_id=f"g-{topic}"
    )
    database = "eo_" + re.sub(r"[^a-z0-9]", "_", topic.lower())[-20:]
    pipelines = Pipelines(tmp_path, kafka, clickhouse_replicated, database)
    yield kafka, clickhouse_replicated, database, pipelines
    pipelines.stop_all()


def recorded_batches(kafka: KafkaTransportConfig, partitions: set[int]) -> dict[int, str]:
    """Of ``partitions``, those whose batch was recorded but not committed (committed offset
    metadata ``netobs-batch:first-last``), with that record."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=list(kafka.bootstrap_servers), client_id="netobs-test-eo")
    try:
        offsets = admin.list_consumer_group_offsets(kafka.group_id)
    finally:
        admin.close()
    return {
        tp.partition: om.metadata
        for tp, om in offsets.items()
        if tp.topic == kafka.topic
        and tp.partition in partitions
        and (om.metadata or "").startswith(PLAN_PREFIX)
    }


def assigned_partitions(log_path, topic: str) -> set[int]:
    """The partitions a pipeline owned last, from its log ("partitions assigned: [...]")."""
    found = re.findall(r"partitions assigned: (\[[^\]]*\])", log_path.read_text())
    return {p for t, p in ast.literal_eval(found[-1]) if t == topic} if found else set()


def wait_split(tmp_path, names: list[str], topic: str, partitions: int = 3, timeout_s: float = 60) -> None:
    """Wait until the pipelines' latest assignments share the partitions out between them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owned = [assigned_partitions(tmp_path / f"{n}.log", topic) for n in names]
        if all(owned) and sum(map(len, owned)) == partitions and len(set().union(*owned)) == partitions:
            return
        time.sleep(0.2)
    raise AssertionError(f"the group never split {partitions} partitions between {names}")


def test_sigkill_one_of_two_pipelines_mid_insert_loses_and_doubles_nothing(setup, tmp_path):
    kafka, server, database, pipelines = setup
    victim = pipelines.start("p1")
    pipelines.start("p2")
    wait_split(tmp_path, ["p1", "p2"], kafka.topic)
    produce(kafka, 0, 200)
    sent = 200
    # The server may still list an INSERT whose answer the victim already has (and whose
    # offsets it committed a millisecond later): then nothing is left to replay, and the
    # kill is tried again on a fresh victim until it lands between record and commit.
    name = "p1"
    for attempt in range(1, 4):
        assert kill_mid_insert(victim, server, database), "never saw the victim's INSERT in flight"
        # read before the group notices the death (session timeout) and the partitions move
        in_flight = recorded_batches(kafka, assigned_partitions(tmp_path / f"{name}.log", kafka.topic))
        if in_flight:
            break
        name = f"p1-{attempt}"
        victim = pipelines.start(name)
        wait_split(tmp_path, ["p2", name], kafka.topic)
        produce(kafka, sent, 100)
        sent += 100
    assert in_flight, "no kill landed while a batch was in flight"
    produce(kafka, sent, 100)
    expected = (sent + 100) * ROWS_PER_MESSAGE
    assert wait_count(server, database, expected) == (expected, expected)
    survivors = ["p2", *(f"p1-{k}" for k in range(1, attempt))]  # whoever took the partitions over
    replays = "".join((tmp_path / f"{name}.log").read_text() for name in survivors)
    assert "replaying batch" in replays, replays[-3000:]


def test_store_outage_everything_arrives_once_after_recovery(setup, tmp_path):
    kafka, server, database, pipelines = setup
    pipelines.start("p1")
    produce(kafka, 0, 50)
    assert wait_count(server, database, 50 * ROWS_PER_MESSAGE)[0] == 50 * ROWS_PER_MESSAGE
    server.stop()
    try:
        produce(kafka, 50, 100)
        time.sleep(20)  # longer than max_poll_interval_ms: the paused consumer must stay in its group
    finally:
        server.start()
    expected = 150 * ROWS_PER_MESSAGE
    assert wait_count(server, database, expected) == (expected, expected)
    log = (tmp_path / "p1.log").read_text()
    assert "unreachable" in log and log.count("partitions revoked") == 0, log[-3000:]
