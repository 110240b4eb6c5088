"""Distributed pipeline hot path: real Kafka broker → pipeline → chdb, and buffer memory.

Prints:
- pipeline.e2e: sustained rows/s of one pipeline reading a 3-partition topic that already
  holds the flows (poll, wire decode, per-partition batching, time-aware enrichment of both
  ends against 100k pods (bench_enrich's metadata), sorting, dedup-token insert into
  ``flows`` and its three views, offset commits): rows inserted between the end of its first
  insert and the last insert completed before 85% of the rows are in, over that time. The
  rate of a running pipeline, without its start (group join) or the end of a finite topic
  (its last partial batches wait out ``max_batch_delay_ms``).
- pipeline.e2e.cold: the whole run, from ``start()`` until the last row is in chdb.
- pipeline.e2e.no_enrich: sustained, without the enrichment step.
- pipeline.e2e.insert_busy: the share of that window the inserter thread was inserting
  (near 1: the store is the limit; lower: the polling, enriching thread is).
- pipeline.buffer_mib_per_million: RSS growth per million decoded flows held in the batcher.

Each partition receives the same share of the messages (one key per partition, picked as
the producer's partitioner places them).
Needs java and the Kafka jars (scripts/install-services.sh).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from kafka.partitioner.default import murmur2

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench_enrich  # noqa: E402
from _util import report  # noqa: E402
from bench_store import pod_flows, synthetic  # noqa: E402

from netobs import wire  # noqa: E402
from netobs.config import ChdbStoreConfig, KafkaTransportConfig, StoreConfig  # noqa: E402
from netobs.store import make_store  # noqa: E402
from netobs.transport import Message  # noqa: E402
from netobs.transport.kafka import KafkaTransport  # noqa: E402
from pipeline import Pipeline  # noqa: E402
from pipeline.config import PipelineConfig  # noqa: E402
from pipeline.delivery import Batcher  # noqa: E402
from pipeline.enrich import Enricher  # noqa: E402
from tests.services.kafka import KafkaBroker, wait_topic  # noqa: E402

TOTAL = 2_400_000
#: The sustained rate is taken between insert completions up to this share of TOTAL: the
#: last batches of a finite topic wait out max_batch_delay_ms, which a running stream never does.
STEADY_UNTIL = 0.85
PER_MESSAGE = 10_000
BATCH = 200_000
BUFFER_TOTAL = 1_000_000


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def partition_keys(partitions: int) -> list[bytes]:
    """One message key per partition, as kafka-python's default partitioner places them."""
    keys: dict[int, bytes] = {}
    i = 0
    while len(keys) < partitions:
        key = f"exporter-{i}".encode()
        keys.setdefault((murmur2(key) & 0x7FFFFFFF) % partitions, key)
        i += 1
    return [keys[p] for p in range(partitions)]


def e2e(broker: KafkaBroker, tmp: Path, topic: str, enricher: Enricher | None) -> dict[str, float]:
    """Rows/s through a pipeline (one consumer group) from a 3-partition topic into a fresh chdb."""
    cfg = KafkaTransportConfig(bootstrap_servers=(broker.bootstrap,), topic=topic, group_id=topic)
    transport = KafkaTransport(cfg)
    producer = transport.producer()
    rb = pod_flows(PER_MESSAGE)
    keys = partition_keys(3)
    for i in range(TOTAL // PER_MESSAGE):
        producer.send(rb, key=keys[i % 3])
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
        PipelineConfig(max_batch_rows=BATCH, max_batch_delay_ms=500),
        transport.consumer(),
        store,
        transform=transform,
    )
    inserting: list[tuple[float, float]] = []  # (start, end) of each insert
    done: list[tuple[float, int]] = []  # (time, rows inserted) at each change
    insert = store.insert

    def timed_insert(*args, **kwargs):
        began = time.perf_counter()
        insert(*args, **kwargs)
        inserting.append((began, time.perf_counter()))

    store.insert = timed_insert  # type: ignore[method-assign]
    started = time.perf_counter()
    pipe.start()
    deadline = time.monotonic() + 300
    while pipe.rows_inserted < TOTAL and time.monotonic() < deadline:
        rows = pipe.rows_inserted
        if rows and (not done or done[-1][1] != rows):
            done.append((time.perf_counter(), rows))
        time.sleep(0.001)
    ended = time.perf_counter()
    pipe.stop()
    n = store.query_arrow("SELECT count() AS n, countIf(src_pod != '') AS named FROM netobs.flows")
    store.stop()
    if n.column("n")[0].as_py() != TOTAL:
        raise SystemExit(f"bench_pipeline: {n.column('n')[0]} rows in chdb, expected {TOTAL}")
    if enricher is not None and n.column("named")[0].as_py() < TOTAL // 2:
        raise SystemExit(f"bench_pipeline: only {n.column('named')[0]} rows name their source pod")
    steady = [p for p in done if p[1] <= STEADY_UNTIL * TOTAL]
    (t0, r0), (t1, r1) = done[0], steady[-1]
    return {
        "sustained": (r1 - r0) / (t1 - t0),
        "cold": TOTAL / (ended - started),
        "insert_busy": sum(max(0.0, min(e, t1) - max(b, t0)) for b, e in inserting) / (t1 - t0),
    }


def buffer_memory() -> float:
    data = [wire.encode(synthetic(PER_MESSAGE, seed=i)) for i in range(BUFFER_TOTAL // PER_MESSAGE)]
    batcher = Batcher(max_rows=10 * BUFFER_TOTAL)
    before = rss_mib()
    for offset, payload in enumerate(data):
        batcher.add(Message(wire.decode(payload), ("bench", offset % 3, offset)))
    after = rss_mib()
    assert batcher.rows == BUFFER_TOTAL
    return (after - before) * 1_000_000 / BUFFER_TOTAL


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        broker = KafkaBroker(Path(tmp) / "kafka", num_partitions=3)
        why = broker.check_installed()
        if why:
            raise SystemExit(f"bench_pipeline: {why}")
        broker.start()
        try:
            enricher = Enricher(bench_enrich.metadata(), dictionary=True)  # as make_enricher builds it
            run = e2e(broker, Path(tmp), "bench", enricher)
            report("pipeline.e2e", run["sustained"], "rows/s")
            report("pipeline.e2e.cold", run["cold"], "rows/s")
            report("pipeline.e2e.insert_busy", run["insert_busy"], "ratio")
            raw = e2e(broker, Path(tmp), "bench-raw", None)
            report("pipeline.e2e.no_enrich", raw["sustained"], "rows/s")
        finally:
            broker.stop()
    report("pipeline.buffer_mib_per_million", buffer_memory(), "MiB")


if __name__ == "__main__":
    main()
