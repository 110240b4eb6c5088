"""Distributed pipeline hot path: real Kafka broker → pipeline → chdb, and buffer memory.

Prints: pipeline.e2e (rows/s from a topic already holding the flows, 3 partitions, until the
last row is in chdb: poll, wire decode, per-partition batching, time-aware enrichment of both
ends against 100k pods (bench_enrich's metadata), dedup-token insert, offset commits),
pipeline.e2e.no_enrich (the same without the enrichment step), pipeline.buffer_mib_per_million
(RSS growth per million decoded flows held in the pipeline's batcher). Needs java and the
Kafka jars (scripts/install-services.sh).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench_enrich  # noqa: E402
from _util import report  # noqa: E402
from bench_store import pod_flows, synthetic  # noqa: E402

from netobs import wire  # noqa: E402
from netobs.config import ChdbStoreConfig, KafkaTransportConfig, PipelineConfig, StoreConfig  # noqa: E402
from netobs.store import make_store  # noqa: E402
from netobs.transport import Message  # noqa: E402
from netobs.transport.kafka import KafkaTransport  # noqa: E402
from pipeline import Pipeline  # noqa: E402
from pipeline.delivery import Batcher  # noqa: E402
from pipeline.enrich import Enricher  # noqa: E402
from tests.services.kafka import KafkaBroker, wait_topic  # noqa: E402

TOTAL = 1_000_000
PER_MESSAGE = 10_000


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def e2e(broker: KafkaBroker, tmp: Path, topic: str, enricher: Enricher | None) -> float:
    """Rows/s through a pipeline (one consumer group) from a 3-partition topic into a fresh chdb."""
    cfg = KafkaTransportConfig(bootstrap_servers=(broker.bootstrap,), topic=topic, group_id=topic)
    transport = KafkaTransport(cfg)
    producer = transport.producer()
    rb = pod_flows(PER_MESSAGE)
    for i in range(TOTAL // PER_MESSAGE):
        producer.send(rb, key=f"exporter-{i % 9}".encode())
    producer.flush()
    producer.close()
    wait_topic(broker.bootstrap, topic, 3)
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp / f"chdb-{topic}")))
    store.start()
    transform = None
    if enricher is not None:
        enricher.tables()  # the index is built when the metadata changes, not per batch
        transform = enricher.enrich
    pipe = Pipeline(
        PipelineConfig(max_batch_rows=200_000, max_batch_delay_ms=500),
        transport.consumer(),
        store,
        transform=transform,
    )
    started = time.perf_counter()
    pipe.start()
    deadline = time.monotonic() + 300
    while pipe.rows_inserted < TOTAL and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    pipe.stop()
    n = store.query_arrow("SELECT count() AS n, countIf(src_pod != '') AS named FROM netobs.flows")
    store.stop()
    if n.column("n")[0].as_py() != TOTAL:
        raise SystemExit(f"bench_pipeline: {n.column('n')[0]} rows in chdb, expected {TOTAL}")
    if enricher is not None and n.column("named")[0].as_py() < TOTAL // 2:
        raise SystemExit(f"bench_pipeline: only {n.column('named')[0]} rows name their source pod")
    return TOTAL / elapsed


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
        broker = KafkaBroker(Path(tmp) / "kafka", num_partitions=3)
        why = broker.check_installed()
        if why:
            raise SystemExit(f"bench_pipeline: {why}")
        broker.start()
        try:
            enricher = Enricher(bench_enrich.metadata(), dictionary=True)  # as make_enricher builds it
            report("pipeline.e2e", e2e(broker, Path(tmp), "bench", enricher), "rows/s")
            report("pipeline.e2e.no_enrich", e2e(broker, Path(tmp), "bench-raw", None), "rows/s")
        finally:
            broker.stop()
    report("pipeline.buffer_mib_per_million", buffer_memory(), "MiB")


if __name__ == "__main__":
    main()
