"""Distributed pipeline hot path: real Kafka broker → pipeline → chdb, and buffer memory.

Prints: pipeline.e2e (rows/s from a topic already holding the flows, 3 partitions, until the
last row is in chdb: poll, wire decode, per-partition batching, dedup-token insert, offset
commits), pipeline.buffer_mib_per_million (RSS growth per million decoded flows held in the
pipeline's batcher). Needs java and the Kafka jars (scripts/install-services.sh).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _util import report  # noqa: E402
from bench_store import synthetic  # noqa: E402

from netobs import wire  # noqa: E402
from netobs.config import ChdbStoreConfig, KafkaTransportConfig, PipelineConfig, StoreConfig  # noqa: E402
from netobs.store import make_store  # noqa: E402
from netobs.transport import Message  # noqa: E402
from netobs.transport.kafka import KafkaTransport  # noqa: E402
from pipeline import Pipeline  # noqa: E402
from pipeline.delivery import Batcher  # noqa: E402
from tests.services.kafka import KafkaBroker, wait_topic  # noqa: E402

TOTAL = 1_000_000
PER_MESSAGE = 10_000


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def e2e(tmp: Path) -> float:
    broker = KafkaBroker(tmp / "kafka", num_partitions=3)
    why = broker.check_installed()
    if why:
        raise SystemExit(f"bench_pipeline: {why}")
    broker.start()
    try:
        cfg = KafkaTransportConfig(bootstrap_servers=(broker.bootstrap,), topic="bench", group_id="bench")
        transport = KafkaTransport(cfg)
        producer = transport.producer()
        rb = synthetic(PER_MESSAGE)
        for i in range(TOTAL // PER_MESSAGE):
            producer.send(rb, key=f"exporter-{i % 9}".encode())
        producer.flush()
        producer.close()
        wait_topic(broker.bootstrap, "bench", 3)
        store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp / "chdb")))
        store.start()
        pipe = Pipeline(
            PipelineConfig(max_batch_rows=200_000, max_batch_delay_ms=500), transport.consumer(), store
        )
        started = time.perf_counter()
        pipe.start()
        deadline = time.monotonic() + 300
        while pipe.rows_inserted < TOTAL and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        pipe.stop()
        n = store.query_arrow("SELECT count() AS n FROM netobs.flows").column("n")[0].as_py()
        store.stop()
        if n != TOTAL:
            raise SystemExit(f"bench_pipeline: {n} rows in chdb, expected {TOTAL}")
        return TOTAL / elapsed
    finally:
        broker.stop()


def buffer_memory() -> float:
    data = [wire.encode(synthetic(PER_MESSAGE, seed=i)) for i in range(TOTAL // PER_MESSAGE)]
    batcher = Batcher(max_rows=10 * TOTAL)
    before = rss_mib()
    for offset, payload in enumerate(data):
        batcher.add(Message(wire.decode(payload), ("bench", offset % 3, offset)))
    after = rss_mib()
    assert batcher.rows == TOTAL
    return (after - before) * 1_000_000 / TOTAL


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report("pipeline.e2e", e2e(Path(tmp)), "rows/s")
    report("pipeline.buffer_mib_per_million", buffer_memory(), "MiB")


if __name__ == "__main__":
    main()
