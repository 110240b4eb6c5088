"""A message sent twice with one message id (a producer's re-send of a delivery that timed out
in flight but was stored) is inserted once, through a real Kafka broker and the store."""

from __future__ import annotations

import pyarrow as pa

from netobs import wire
from netobs.config import KafkaTransportConfig
from netobs.transport import Message
from netobs.transport.kafka import KafkaTransport
from pipeline import Pipeline
from pipeline.config import PipelineConfig
from tests.pipeline.test_deadletter import run_until
from tests.pipeline.test_pipeline import ListConsumer, count, flows


def test_a_copy_with_the_same_id_is_inserted_once_through_kafka(store, kafka_broker, topic_factory):
    topic = topic_factory(partitions=1)
    cfg = KafkaTransportConfig(
        bootstrap_servers=(kafka_broker.bootstrap,), topic=topic, group_id=f"g-{topic}"
    )
    transport = KafkaTransport(cfg)
    prod = transport.producer()
    ids = wire.MessageIds()
    first = wire.encode(flows(3, start=0), ids.next(b"e"))
    second = wire.encode(flows(4, start=3), ids.next(b"e"))
    for value in (first, second, first):  # the first again, after the second: the spool's replay order
        prod._p.send(topic, key=b"e", value=value)
    prod.send(flows(2, start=7), b"e")  # the producer's own message ids
    prod.flush()
    p = Pipeline(PipelineConfig(max_batch_delay_ms=50), transport.consumer(), store)
    run_until(p, lambda: p.rows_inserted >= 9, timeout_s=60)
    assert count(store) == {"n": 9, "p": sum(range(9))}
    assert p.duplicate_rows == 3
    transport.close()


def test_ids_of_dropped_messages_are_forgotten_on_rebalance(store):
    """Buffered messages dropped at a revocation are polled again: not copies of themselves."""
    ids = wire.MessageIds()
    tables = [wire.decode(wire.encode(flows(2, start=2 * i), ids.next(b"e"))) for i in range(3)]
    consumer = ListConsumer([Message(t, ("t", 0, i)) for i, t in enumerate(tables)])
    p = Pipeline(PipelineConfig(max_batch_rows=1000, max_batch_delay_ms=60_000), consumer, store)
    p._poll()
    assert p._batcher.rows == 6
    p._revoked([("t", 0)])
    consumer.messages = [Message(t, ("t", 0, i)) for i, t in enumerate(tables)]  # polled again
    p._poll()
    p.flush()
    assert count(store)["n"] == 6 and p.duplicate_rows == 0
    p._inserter.shutdown()


def test_messages_without_ids_are_never_copies(store):
    t = pa.Table.from_batches([flows(2)])
    consumer = ListConsumer([Message(t, ("t", 0, 0)), Message(t, ("t", 0, 1))])
    p = Pipeline(PipelineConfig(max_batch_rows=1000, max_batch_delay_ms=60_000), consumer, store)
    p._poll()
    p.flush()
    assert count(store)["n"] == 4 and p.duplicate_rows == 0
    p._inserter.shutdown()
