"""A broker outage longer than the producer's delivery timeout, with a real Kafka broker of the
test's own (stopped and started by PID): spooled batches arrive once when it is back, and with a
spool too small the overflow is counted exactly.

"Once" is as the pipeline takes them: a message in flight when the broker stopped may have been
stored before its delivery timed out; the producer spools it and sends it again with its message
id, and the copy is left out by id (:mod:`pipeline.duplicates`), as the pipeline does.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest
from kafka import KafkaConsumer

from netobs import wire
from netobs.batch import FlowBatch
from netobs.config import KafkaTransportConfig, SpoolConfig, TransportConfig
from netobs.transport import make_transport
from netobs.transport.kafka import KafkaTransport
from pipeline import Pipeline
from pipeline.config import PipelineConfig
from pipeline.duplicates import SeenMessages
from tests.services import _require
from tests.services.kafka import KafkaBroker, KafkaError

pytestmark = pytest.mark.integration

ROWS = 200
DELIVERY_TIMEOUT_MS = 3000


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker these tests may stop: the session's broker is shared with others."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-outage"), num_partitions=3)
    why = broker.check_installed()
    if why:
        _require.unavailable(why)
    try:
        broker.start()
    except (KafkaError, OSError) as exc:
        _require.unavailable(f"Kafka broker failed to start: {exc}")
    yield broker
    broker.stop()


def batch(seq: int) -> pa.RecordBatch:
    """ROWS flows whose ``packets`` are unique numbers: seq*ROWS .. (seq+1)*ROWS-1."""
    return FlowBatch(
        {
            "time_received": np.full(ROWS, int(time.time() * 1000), dtype="int64"),
            "type": np.array(["ipfix"] * ROWS, dtype=object),
            "packets": np.arange(seq * ROWS, (seq + 1) * ROWS, dtype="uint64"),
        }
    ).to_arrow()


def transport(broker: KafkaBroker, topic: str, spool_dir, max_bytes: int = 1 << 30):
    cfg = TransportConfig(
        type="kafka",
        kafka=KafkaTransportConfig(
            bootstrap_servers=(broker.bootstrap,),
            topic=topic,
            delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
            request_timeout_ms=1500,
            max_block_ms=1000,
            linger_ms=5,
        ),
        spool=SpoolConfig(max_bytes=max(max_bytes, 1 << 20), segment_bytes=1 << 16),
    )
    t = make_transport(cfg, spool_dir)
    return t, cfg


def create_topic(broker: KafkaBroker, name: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from tests.services.kafka import wait_topic

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
    finally:
        admin.close()
    wait_topic(broker.bootstrap, name, 3)


def read_all(broker: KafkaBroker, topic: str, expected_rows: int, timeout_s: float = 60) -> Counter[int]:
    """Every ``packets`` value in the topic, with how often it arrived as the pipeline takes it:
    a copy of a message it took before (same message id, :mod:`pipeline.duplicates`) is left
    out. The raw copies are counted in ``read_all.copies``."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    seen: Counter[int] = Counter()
    taken = SeenMessages()
    read_all.copies = 0  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=500)
            for records in polled.values():
                for r in records:
                    table = wire.decode(r.value)
                    mid = wire.message_id(table)
                    assert mid is not None, "a message without an id"
                    if taken.seen(*mid):
                        read_all.copies += table.num_rows  # type: ignore[attr-defined]
                        continue
                    seen.update(table.column("packets").to_pylist())
                quiet_since = time.monotonic()
            if sum(seen.values()) >= expected_rows and time.monotonic() - quiet_since > 2:
                break
    finally:
        consumer.close()
    return seen


def wait_until(cond, timeout_s: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def test_outage_of_three_delivery_timeouts_under_load_loses_nothing(own_broker, tmp_path, store):
    topic = "outage-under-load"
    create_topic(own_broker, topic)
    t, _ = transport(own_broker, topic, tmp_path / "spool")
    producer = t.producer()
    sent = 0
    stop = threading.Event()

    def load() -> None:  # ~100 batches/s (20k flows/s) until told to stop, at most 60 s
        nonlocal sent
        end = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < end:
            producer.send(batch(sent), key=f"10.0.0.{sent % 5}".encode())
            sent += 1
            time.sleep(0.01)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        time.sleep(2)
        own_broker.stop()
        outage = 3 * DELIVERY_TIMEOUT_MS / 1000
        time.sleep(outage)
        assert producer.spool.depth() > 0, "nothing was spooled during the outage"
        assert not producer.up
        own_broker.start()
        time.sleep(2)
    finally:
        stop.set()
        loader.join(10)
    producer.flush(10)
    assert wait_until(lambda: producer.spool.depth() == 0, 60), f"spool still holds {producer.spool.depth()}"
    seen = read_all(own_broker, topic, sent * ROWS)
    # The pipeline itself, into the store: every flow once.
    reader = KafkaTransport(KafkaTransportConfig(bootstrap_servers=(own_broker.bootstrap,), topic=topic))
    p = Pipeline(PipelineConfig(max_batch_delay_ms=100), reader.consumer(), store)
    p.start()
    try:
        assert wait_until(lambda: p.rows_inserted >= sent * ROWS, 120), f"{p.rows_inserted} rows inserted"
        time.sleep(1)
    finally:
        p.stop()
        reader.close()
    stored = store.query_arrow("SELECT count() AS n, uniqExact(packets) AS u FROM netobs.flows").to_pylist()[
        0
    ]
    assert stored == {"n": sent * ROWS, "u": sent * ROWS}, f"{p.duplicate_rows} rows of copies left out"
    assert p.duplicate_rows == read_all.copies  # type: ignore[attr-defined]
    t.close()
    assert producer.spool.dropped == {}
    missing = sent * ROWS - len(seen)
    twice = sum(1 for n in seen.values() if n > 1)
    twice_batches = sorted({v // ROWS for v, n in seen.items() if n > 1})
    assert (missing, twice) == (0, 0), (
        f"{sent} batches sent, {producer.spooled // ROWS} spooled: {missing} flows missing, {twice} twice "
        f"(batches {twice_batches[:40]}) after {read_all.copies} rows of copies were left out"  # type: ignore[attr-defined]
    )
    assert set(seen) == set(range(sent * ROWS))
    assert producer.spooled > 0 and producer.delivered == sent * ROWS


def test_spool_too_small_counts_the_exact_overflow(own_broker, tmp_path):
    topic = "outage-small-spool"
    create_topic(own_broker, topic)
    t, _ = transport(own_broker, topic, tmp_path / "spool", max_bytes=1 << 20)
    producer = t.producer()
    producer.send(batch(0), key=b"10.0.0.1")
    producer.flush(10)
    own_broker.stop()
    try:
        sent = 1
        for _ in range(400):  # ~4.5 kB per batch: the 1 MiB spool takes ~230 of them
            producer.send(batch(sent), key=f"10.0.0.{sent % 2 + 1}".encode())
            sent += 1
        assert wait_until(lambda: not producer.up and producer.inflight_bytes == 0, 30)
        dropped = producer.spool.dropped_rows()
        assert dropped > 0, "the spool did not overflow"
        by_exporter = {e: n for (e, _, r), n in producer.spool.dropped.items() if r == "spool_full"}
        assert set(by_exporter) == {"10.0.0.1", "10.0.0.2"}
    finally:
        own_broker.start()
    assert wait_until(lambda: producer.spool.depth() == 0, 60)
    seen = read_all(own_broker, topic, sent * ROWS - dropped)
    t.close()
    assert all(n == 1 for n in seen.values())
    absent = sorted({v // ROWS for v in range(sent * ROWS) if v not in seen})
    assert len(seen) + dropped == sent * ROWS, (
        f"{dropped} dropped; batches absent: {absent[:5]}..{absent[-5:]}"
    )  # every flow either arrived or is counted as dropped
    assert producer.delivered == len(seen)
