"""Dead letters: unreadable messages and batches the store rejects go aside with the reason;
the transform hook; backpressure pauses the consumer instead of not polling."""

import json
import time

import pyarrow as pa
import pytest
from kafka import KafkaConsumer

from netobs import wire
from netobs.config import InprocessTransportConfig, KafkaTransportConfig
from netobs.transport import Message
from netobs.transport.inprocess import InprocessTransport
from netobs.transport.kafka import KafkaTransport
from pipeline import Pipeline
from pipeline.config import PipelineConfig
from tests.pipeline.test_pipeline import FlakyStore, ListConsumer, count, flows


def run_until(pipeline, cond, timeout_s=15.0):
    pipeline.start()
    deadline = time.monotonic() + timeout_s
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    pipeline.stop()


def bogus_column(table: pa.Table) -> pa.Table:
    """A transform whose output the store refuses (no such column)."""
    return table.append_column("no_such_column", pa.array([1] * table.num_rows, pa.uint8()))


def test_unreadable_and_rejected_go_to_the_dead_letter_directory(store, tmp_path):
    dlq = tmp_path / "dead"
    good = Message(pa.Table.from_batches([flows(4)]), ("t", 0, 0))
    bad = Message(None, ("t", 0, 1), error="bad magic b'JUNK'", raw=b"JUNK....")
    consumer = ListConsumer([good, bad])
    cfg = PipelineConfig(max_batch_rows=100, max_batch_delay_ms=20, dead_letter_dir=dlq)
    p = Pipeline(cfg, consumer, store, transform=bogus_column)
    run_until(p, lambda: consumer.commits >= 1)
    metas = sorted((json.loads(f.read_text()) for f in dlq.glob("*.json")), key=lambda m: m["position"])
    assert [(m["reason"], m["position"]) for m in metas] == [
        ("rejected_by_store", ["t", 0, 0]),
        ("unreadable", ["t", 0, 1]),
    ]
    assert "no_such_column" in metas[0]["error"] and "bad magic" in metas[1]["error"]
    payloads = {f.read_bytes() for f in dlq.glob("*.nobs")}
    assert b"JUNK...." in payloads
    (rejected,) = payloads - {b"JUNK...."}
    assert wire.decode(rejected).num_rows == 4  # the original batch, readable again
    assert count(store)["n"] == 0 and p.dead_lettered == 2 and p.bad_messages == 2


def test_transform_is_applied_before_insert(store):
    def name_centers(table):
        i = table.schema.get_field_index("src_center")
        return table.set_column(i, "src_center", pa.array(["dc1"] * table.num_rows))

    t = InprocessTransport(InprocessTransportConfig(max_batches=4))
    p = Pipeline(
        PipelineConfig(max_batch_delay_ms=20), t.consumer(), store, drain=True, transform=name_centers
    )
    p.start()
    t.producer().send(flows(5), b"e")
    p.stop()
    got = store.query_arrow("SELECT src_center, count() AS n FROM netobs.flows GROUP BY src_center")
    assert got.to_pylist() == [{"src_center": "dc1", "n": 5}]


@pytest.mark.slow
def test_full_buffer_pauses_consumption_and_everything_arrives(store):
    """While the store is down the consumer is paused (the in-process queue fills and its
    producer blocks) until the store is back; nothing is lost."""
    t = InprocessTransport(InprocessTransportConfig(max_batches=2), block_s=30)
    consumer = t.consumer()
    flaky = FlakyStore(store)
    flaky.down.set()
    cfg = PipelineConfig(max_batch_rows=50, max_buffered_rows=100, max_batch_delay_ms=10)
    p = Pipeline(cfg, consumer, flaky, drain=True)
    p.start()
    prod = t.producer()
    for i in range(3):
        prod.send(flows(60, i * 60), b"e")
    deadline = time.monotonic() + 10
    while not consumer._paused and time.monotonic() < deadline:
        time.sleep(0.02)
    # Paused with nothing lost: every row is either buffered or still waiting in the queue
    # (how many the pipeline took before pausing depends on timing).
    assert consumer._paused and p._batcher.rows >= 60 and p._batcher.rows + 60 * t.depth() == 180
    flaky.down.clear()
    for i in range(3, 30):
        prod.send(flows(60, i * 60), b"e")
    p.stop()
    assert not consumer._paused and count(store) == {"n": 1800, "p": sum(range(1800))}


@pytest.mark.integration
def test_kafka_dead_letter_topic_with_headers(store, kafka_broker, topic_factory):
    topic = topic_factory(partitions=1)
    cfg = KafkaTransportConfig(
        bootstrap_servers=(kafka_broker.bootstrap,),
        topic=topic,
        group_id=f"g-{topic}",
        dead_letter_topic=f"{topic}-dlq",
    )
    transport = KafkaTransport(cfg)
    prod = transport.producer()
    prod.send(flows(3), b"e")
    prod._p.send(topic, key=b"x", value=b"NOBS\x09garbage")  # a wire format from the future
    prod.send(flows(2), b"e")
    prod.flush()
    p = Pipeline(PipelineConfig(max_batch_delay_ms=50), transport.consumer(), store)
    run_until(p, lambda: p.rows_inserted >= 5 and p.dead_lettered >= 1, timeout_s=60)
    assert count(store)["n"] == 5
    dlq = KafkaConsumer(
        f"{topic}-dlq",
        bootstrap_servers=kafka_broker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10000,
    )
    try:
        record = next(iter(dlq))
    finally:
        dlq.close()
    headers = {k: v.decode() for k, v in record.headers}
    assert record.value == b"NOBS\x09garbage"
    assert headers["netobs.reason"] == "unreadable" and "format version 9" in headers["netobs.error"]
    assert (headers["netobs.source_topic"], headers["netobs.source_partition"]) == (topic, "0")
    assert headers["netobs.source_offset"] == "1"
