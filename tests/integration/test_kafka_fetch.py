"""Catching up on a backlog of large messages: the consumer's fetch sizes stay within what
kafka-python accepts as one response frame (an oversized fetch once failed every poll with
"Invalid frame length")."""

from __future__ import annotations

import numpy as np
import pytest

from netobs.batch import FlowBatch
from netobs.config import KafkaTransportConfig
from netobs.transport.kafka import (
    FETCH_MAX_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_PARTITION_FETCH_BYTES,
    RECEIVE_MESSAGE_MAX_BYTES,
    KafkaTransport,
)

pytestmark = pytest.mark.integration


def test_fetch_sizes_fit_the_client_frame_limit():
    assert MAX_MESSAGE_BYTES < MAX_PARTITION_FETCH_BYTES <= FETCH_MAX_BYTES < RECEIVE_MESSAGE_MAX_BYTES


def test_catch_up_on_large_messages_in_every_partition(kafka_broker, topic_factory):
    topic = topic_factory(partitions=3)
    cfg = KafkaTransportConfig(
        bootstrap_servers=(kafka_broker.bootstrap,), topic=topic, group_id=f"{topic}-g"
    )
    rng = np.random.default_rng(7)
    producer = KafkaTransport(cfg).producer()
    rows = 0
    for i in range(12):  # ~12 MB of incompressible flows: several near-limit messages per partition
        n = 110_000
        rb = FlowBatch(
            {
                "time_received": np.full(n, 1_700_000_000_000, dtype="int64"),
                "packets": rng.integers(0, 2**63, n, dtype="uint64"),
            }
        ).to_arrow()
        producer.send(rb, key=f"exporter-{i}".encode())
        rows += n
    producer.flush()
    producer.close()
    consumer = KafkaTransport(cfg).consumer()
    got = 0
    try:
        for _ in range(200):  # bounded: each poll waits at most 0.5 s
            msgs = consumer.poll(0.5, 100)
            assert all(m.table is not None for m in msgs)
            got += sum(m.table.num_rows for m in msgs)
            if got >= rows:
                break
    finally:
        consumer.close()
    assert got == rows
