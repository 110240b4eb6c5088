"""The pipeline over the in-process transport into real chdb: delivery, drain, outages, bad messages."""

import threading
import time

import numpy as np
import pyarrow as pa
import pytest

from netobs.batch import FlowBatch
from netobs.config import ChdbStoreConfig, InprocessTransportConfig, PipelineConfig, StoreConfig
from netobs.store import StoreUnavailable, make_store
from netobs.transport import Message, TransportError
from netobs.transport.inprocess import InprocessTransport
from pipeline import Pipeline


def flows(n, start=0):
    now = int(time.time() * 1000)
    return FlowBatch(
        {
            "time_received": np.full(n, now, dtype="int64"),
            "packets": np.arange(start, start + n, dtype="uint64"),
        }
    ).to_arrow()


@pytest.fixture
def store(tmp_path):
    s = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    s.start()
    yield s
    s.stop()


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
