"""The pipeline over the in-process transport into real chdb: delivery, drain, outages, bad messages."""

import threading
import time

import numpy as np
import pyarrow as pa
import pytest

from netobs.batch import FlowBatch
from netobs.config import InprocessTransportConfig
from netobs.store import StoreUnavailable
from netobs.transport import Message, TransportError
from netobs.transport.capabilities import (
    Capabilities,
    DeadLetteringConsumer,
    PartitionedConsumer,
    PausableConsumer,
)
from netobs.transport.inprocess import InprocessTransport
from pipeline import Pipeline
from pipeline.config import PipelineConfig


def flows(n, start=0):
    now = int(time.time() * 1000)
    return FlowBatch(
        {
            "time_received": np.full(n, now, dtype="int64"),
            "packets": np.arange(start, start + n, dtype="uint64"),
        }
    ).to_arrow()


def count(store):
    return store.query_arrow("SELECT count() AS n, sum(packets) AS p FROM netobs.flows").to_pylist()[0]


def test_everything_sent_is_inserted_and_drained_on_stop(store):
    t = InprocessTransport(InprocessTransportConfig(max_batches=4))
    p = Pipeline(PipelineConfig(max_batch_rows=500, max_batch_delay_ms=50), t.consumer(), store, drain=True)
    p.start()
    prod = t.producer()
    for i in range(40):
        prod.send(flows(100, i * 100), b"exp")
    p.stop()
    assert count(store) == {"n": 4000, "p": sum(range(4000))}
    assert p.rows_inserted == 4000


def test_backpressure_blocks_producer_when_queue_full():
    t = InprocessTransport(InprocessTransportConfig(max_batches=2), block_s=0.2)
    prod = t.producer()
    prod.send(flows(1), b"e")
    prod.send(flows(1), b"e")
    started = time.monotonic()
    with pytest.raises(TransportError, match="queue full"):
        prod.send(flows(1), b"e")
    assert time.monotonic() - started >= 0.2


class FlakyStore:
    """Wraps the real store; refuses inserts while ``down`` is set."""

    def __init__(self, inner):
        self.inner = inner
        self.down = threading.Event()
        self.refused = 0

    def insert(self, table, token=None, target="flows"):
        if self.down.is_set():
            self.refused += 1
            raise StoreUnavailable("simulated outage")
        self.inner.insert(table, token, target)


class ListConsumer:
    """A consumer over a fixed list of messages that records commits."""

    def __init__(self, messages):
        self.messages = list(messages)
        self.commits = 0
        self.uncommitted = 0

    def poll(self, timeout_s, max_messages=100):
        out, self.messages = self.messages[:max_messages], self.messages[max_messages:]
        self.uncommitted += len(out)
        if not out:
            time.sleep(timeout_s)
        return out

    def commit(self):
        self.commits += 1
        self.uncommitted = 0

    def close(self):
        pass


def test_store_outage_keeps_rows_and_does_not_commit(store):
    flaky = FlakyStore(store)
    flaky.down.set()
    consumer = ListConsumer(
        [Message(pa.Table.from_batches([flows(10, i * 10)]), ("t", 0, i)) for i in range(5)]
    )
    p = Pipeline(PipelineConfig(max_batch_rows=1000, max_batch_delay_ms=20), consumer, flaky)
    p.start()
    deadline = time.monotonic() + 10
    while flaky.refused < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flaky.refused >= 2 and consumer.commits == 0 and consumer.uncommitted == 5
    flaky.down.clear()  # the store comes back: everything arrives, then the commit
    deadline = time.monotonic() + 10
    while consumer.commits == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    p.stop()
    assert count(store) == {"n": 50, "p": sum(range(50))}
    assert consumer.commits >= 1


def test_unreadable_messages_are_counted_not_fatal(store):
    good = Message(pa.Table.from_batches([flows(3)]), ("t", 0, 1))
    bad = Message(None, ("t", 0, 2), error="bad magic", raw=b"junk")
    consumer = ListConsumer([bad, good])
    p = Pipeline(PipelineConfig(max_batch_rows=10, max_batch_delay_ms=20), consumer, store)
    p.start()
    time.sleep(0.5)
    p.stop()
    assert p.bad_messages == 1 and count(store)["n"] == 3


class PartitionConsumer(ListConsumer):
    """A partitioned consumer (positions, recorded ranges, explicit offsets) that logs, in
    order, what the pipeline records and commits; it can revoke a partition during a poll."""

    def __init__(self, messages, log, revoke_on_poll=None):
        super().__init__(messages)
        self.log = log
        self.revoke_on_poll = revoke_on_poll
        self.polls = 0
        self.revoked = None

    def set_rebalance_handler(self, revoked, assigned):
        self.revoked = revoked

    def poll(self, timeout_s, max_messages=100):
        self.polls += 1
        if self.revoke_on_poll is not None and self.polls == self.revoke_on_poll:
            self.log.append(("revoke",))
            self.revoked([("t", 0)])
            self.log.append(("revoked",))
            self.messages = []  # no longer ours
        return super().poll(timeout_s, max_messages=2)

    def commit_plan(self, topic, partition, first, last):
        self.log.append(("plan", partition, first, last))

    def commit_offsets(self, offsets):
        for (_, partition), (offset, _) in offsets.items():
            self.log.append(("commit", partition, offset))


class LoggingStore:
    """The real store; logs each insert's start and end, and can hold an insert back."""

    dialect = "modern"

    def __init__(self, inner, log, hold_s=0.0):
        self.inner, self.log, self.hold_s = inner, log, hold_s

    def insert(self, table, token=None, target="flows"):
        self.log.append(("insert", token))
        time.sleep(self.hold_s)
        self.inner.insert(table, token, target)
        self.log.append(("inserted", token))


def partition_messages(partition, count, rows=10):
    return [
        Message(pa.Table.from_batches([flows(rows, (partition * 100 + i) * rows)]), ("t", partition, i))
        for i in range(count)
    ]


def test_next_batch_is_prepared_while_the_previous_one_is_inserted(store):
    log: list = []

    def transform(table):
        log.append(("transform", table.num_rows))
        return table

    consumer = PartitionConsumer(partition_messages(0, 6), log)
    p = Pipeline(
        PipelineConfig(max_batch_rows=20, max_batch_delay_ms=10_000),
        consumer,
        LoggingStore(store, log, hold_s=0.3),
        transform=transform,
    )
    p.start()
    deadline = time.monotonic() + 15
    while p.rows_inserted < 60 and time.monotonic() < deadline:
        time.sleep(0.02)
    p.stop()
    assert count(store) == {"n": 60, "p": sum(range(60))}
    first, second = "netobs:t:0:0-1:20", "netobs:t:0:2-3:20"
    # the second batch was transformed while the first was being inserted ...
    assert log.index(("insert", first)) < log.index(("transform", 20), log.index(("insert", first)))
    assert log.index(("transform", 20), log.index(("insert", first))) < log.index(("inserted", first))
    # ... but its range is recorded only once the first is committed (the record moves the
    # partition's committed offset to its start)
    assert log.index(("inserted", first)) < log.index(("commit", 0, 2)) < log.index(("plan", 0, 2, 3))
    assert log.index(("plan", 0, 2, 3)) < log.index(("insert", second))
    plans = [e for e in log if e[0] in ("plan", "commit")]
    assert plans == [
        ("plan", 0, 0, 1), ("commit", 0, 2), ("plan", 0, 2, 3), ("commit", 0, 4), ("plan", 0, 4, 5), ("commit", 0, 6)
    ]  # fmt: skip


def test_partitions_are_prepared_and_committed_each_in_order(store):
    log: list = []
    messages = [
        m for pair in zip(partition_messages(0, 4), partition_messages(1, 4), strict=True) for m in pair
    ]
    consumer = PartitionConsumer(messages, log)
    p = Pipeline(
        PipelineConfig(max_batch_rows=20, max_batch_delay_ms=10_000), consumer, LoggingStore(store, log)
    )
    p.start()
    deadline = time.monotonic() + 15
    while p.rows_inserted < 80 and time.monotonic() < deadline:
        time.sleep(0.02)
    p.stop()
    assert count(store)["n"] == 80
    for partition in (0, 1):
        mine = [e[1:] for e in log if e[0] in ("plan", "commit") and e[1] == partition]
        assert mine == [(partition, 0, 1), (partition, 2), (partition, 2, 3), (partition, 4)]
    inserts = [e for e in log if e[0] in ("insert", "inserted")]
    assert all(
        a[0] == "insert" and b == ("inserted", a[1]) for a, b in zip(inserts[::2], inserts[1::2], strict=True)
    )


def test_a_full_buffer_hands_batches_over_without_waiting_for_them_to_fill(store):
    consumer = PartitionConsumer(partition_messages(0, 10) + partition_messages(1, 10), [])
    p = Pipeline(
        PipelineConfig(max_batch_rows=1_000_000, max_batch_delay_ms=600_000, max_buffered_rows=30),
        consumer,
        store,
    )
    p.start()
    deadline = time.monotonic() + 20  # far less than max_batch_delay_ms
    while p.rows_inserted < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    p.stop()
    assert p.rows_inserted == 200 and count(store)["n"] == 200


def test_insert_in_flight_at_a_revocation_is_finished_and_committed_first(store):
    log: list = []
    consumer = PartitionConsumer(partition_messages(0, 8), log, revoke_on_poll=3)
    p = Pipeline(
        PipelineConfig(max_batch_rows=20, max_batch_delay_ms=10_000),
        consumer,
        LoggingStore(store, log, hold_s=0.5),
    )
    p.start()
    deadline = time.monotonic() + 15
    while ("revoked",) not in log and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    p.stop()
    revoke, revoked = log.index(("revoke",)), log.index(("revoked",))
    _, _, first, last = [e for e in log[:revoke] if e[0] == "plan"][-1]
    token = f"netobs:t:0:{first}-{last}:{10 * (last - first + 1)}"
    assert ("commit", 0, last + 1) not in log[:revoke]  # handed to the inserter, not yet done
    # it finished and its offsets were committed inside the revocation, while still ours
    assert revoke < log.index(("inserted", token)) < log.index(("commit", 0, last + 1)) < revoked
    assert count(store)["n"] == 10 * (last + 1)  # nothing after it: the rest belongs to the next owner
    assert not [e for e in log[revoked:] if e[0] in ("plan", "commit", "insert")]


def test_capabilities_are_read_once_from_the_consumer_type():
    inprocess = InprocessTransport(InprocessTransportConfig()).consumer()
    caps = Capabilities.of(inprocess)
    assert caps.partitioned is None and caps.dead_lettering is None
    assert caps.pausable is inprocess and caps.queued is inprocess
    listed = Capabilities.of(ListConsumer([]))
    assert listed == Capabilities(None, None, None, None)
    partitioned = PartitionConsumer([], [])
    assert Capabilities.of(partitioned).partitioned is partitioned
    assert Capabilities.of(partitioned).pausable is None


def test_a_kafka_consumer_offers_every_capability():
    from netobs.transport.kafka import KafkaBatchConsumer

    for protocol in (PartitionedConsumer, PausableConsumer, DeadLetteringConsumer):
        methods = [m for m in vars(protocol) if not m.startswith("_")]
        assert methods and all(callable(getattr(KafkaBatchConsumer, m, None)) for m in methods), protocol
