"""The service fixtures themselves work: a real Kafka broker and a real ClickHouse server."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from tests.services.clickhouse_server import NETOBS_PASSWORD, NETOBS_USER, ClickHouseServer
from tests.services.kafka import KafkaBroker

pytestmark = pytest.mark.integration


def test_kafka_produce_consume_in_a_group(kafka_broker: KafkaBroker, topic_factory) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    topic = topic_factory(partitions=3)
    sent = {f"k{i}".encode(): f"v{i}".encode() for i in range(30)}
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", linger_ms=5)
    try:
        for key, value in sent.items():
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker.bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20_000,
    )
    got: dict[bytes, bytes] = {}
    partitions: set[int] = set()
    try:
        for msg in consumer:
            got[msg.key] = msg.value
            partitions.add(msg.partition)
            if len(got) == len(sent):
                break
        consumer.commit()
        assert consumer.assignment() and len(consumer.assignment()) == 3
    finally:
        consumer.close()
    assert got == sent
    assert len(partitions) > 1  # keys were spread over the 3 partitions


def test_topic_factory_gives_distinct_ready_topics(kafka_broker: KafkaBroker, topic_factory) -> None:
    from kafka import KafkaConsumer

    a, b = topic_factory(partitions=1), topic_factory(partitions=2)
    assert a != b
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap)
    try:
        assert consumer.partitions_for_topic(a) == {0}
        assert consumer.partitions_for_topic(b) == {0, 1}
    finally:
        consumer.close()


def test_clickhouse_insert_survives_restart(clickhouse_server: ClickHouseServer) -> None:
    table = f"t_{uuid.uuid4().hex[:8]}"
    client = clickhouse_server.client()
    client.execute(
        f"CREATE TABLE {table} (d Date, x UInt32, s String) "
        "ENGINE = MergeTree() PARTITION BY toYYYYMM(d) ORDER BY (d, x)"
    )
    rows = [(dt.date(2024, 1, 1) + dt.timedelta(days=i % 40), i, f"s{i}") for i in range(100)]
    client.execute(f"INSERT INTO {table} (d, x, s) VALUES", rows)
    assert client.execute(f"SELECT count(), sum(x) FROM {table}") == [(100, sum(range(100)))]
    client.disconnect()

    old_pid, port = clickhouse_server.pid, clickhouse_server.port
    clickhouse_server.restart()
    assert clickhouse_server.pid != old_pid and clickhouse_server.port == port

    client = clickhouse_server.client()  # a fresh connection after the restart
    try:
        assert client.execute(f"SELECT d, x, s FROM {table} ORDER BY x") == rows
        client.execute(f"INSERT INTO {table} (d, x, s) VALUES", [(dt.date(2024, 3, 1), 1000, "new")])
        assert client.execute(f"SELECT count() FROM {table}") == [(101,)]
        client.execute(f"DROP TABLE {table}")
    finally:
        client.disconnect()


def test_clickhouse_password_user(clickhouse_server: ClickHouseServer) -> None:
    from clickhouse_driver.errors import ServerException

    good = clickhouse_server.client(user=NETOBS_USER, password=NETOBS_PASSWORD)
    try:
        assert good.execute("SELECT 1") == [(1,)]
    finally:
        good.disconnect()
    bad = clickhouse_server.client(user=NETOBS_USER, password="wrong")
    try:
        with pytest.raises(ServerException) as err:
            bad.execute("SELECT 1")
        assert err.value.code == 193  # WRONG_PASSWORD
    finally:
        bad.disconnect()
