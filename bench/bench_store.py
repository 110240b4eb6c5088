"""Kernel hot paths: wire encode/decode, chdb insert, in-process pipeline into chdb.

Prints: wire.encode, wire.decode (rows/s), chdb.insert (rows/s, 100k flows whose enrichment
columns are empty), chdb.insert.enriched and its .cpu (200k flows between 100k pods, enriched
into dictionary columns as the pipeline inserts them; per CPU-second of the process, chdb's
threads included), pipeline.inprocess (rows/s, in-process transport → pipeline → chdb) and
pipeline.inprocess.enriched (the same with the enricher as the pipeline's transform),
pipeline.rss_per_million (MiB of RSS growth per million flows buffered as Arrow).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_enrich  # noqa: E402
from _util import median_rate, report  # noqa: E402

from netobs import wire  # noqa: E402
from netobs.batch import FlowBatch  # noqa: E402
from netobs.config import ChdbStoreConfig, InprocessTransportConfig, StoreConfig  # noqa: E402
from netobs.store import Store, make_store  # noqa: E402
from netobs.transport.inprocess import InprocessTransport  # noqa: E402
from pipeline import Pipeline  # noqa: E402
from pipeline.config import PipelineConfig  # noqa: E402
from pipeline.enrich import Enricher  # noqa: E402


def synthetic(n: int, seed: int = 1) -> pa.RecordBatch:
    """Flows shaped like a pod network: few exporters, /24 pod ranges, a handful of services."""
    rng = np.random.default_rng(seed)
    now = int(time.time() * 1000)
    addr = np.zeros((n, 16), dtype=np.uint8)
    addr[:, 10:12] = 0xFF
    addr[:, 12], addr[:, 13], addr[:, 14] = 10, 244, rng.integers(1, 8, n)
    addr[:, 15] = rng.integers(2, 250, n)
    dst = addr.copy()
    dst[:, 15] = rng.integers(2, 250, n)
    cols = {
        "time_received": np.full(n, now, dtype="int64"),
        "flow_start": now - rng.integers(0, 60_000, n),
        "flow_end": np.full(n, now, dtype="int64"),
        "type": np.array(["ipfix"] * n, dtype=object),
        "exporter": np.repeat(addr[:8].view("V16").ravel(), n // 8 + 1)[:n],
        "sampling_rate": np.full(n, 1000, dtype="uint32"),
        "src_addr": addr.view("V16").ravel(),
        "dst_addr": dst.view("V16").ravel(),
        "src_port": rng.integers(1024, 65535, n).astype("uint16"),
        "dst_port": rng.choice(np.array([443, 8080, 5432, 6379, 9092], dtype="uint16"), n),
        "proto": np.full(n, 6, dtype="uint8"),
        "packets": rng.integers(1, 100, n).astype("uint64"),
        "bytes": rng.integers(64, 150_000, n).astype("uint64"),
    }
    return FlowBatch(cols).to_arrow()


def pod_flows(n: int, seed: int = 1) -> pa.RecordBatch:
    """:func:`synthetic` flows between bench_enrich's pods (and legacy hosts), so both ends get named."""
    rb = synthetic(n, seed)
    ends = bench_enrich.flows(n, seed)
    arrays = [
        ends.column(c).combine_chunks() if c in ("src_addr", "dst_addr") else rb.column(c)
        for c in rb.schema.names
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=rb.schema)


def through_pipeline(
    store: Store, rb: pa.RecordBatch, transform: Callable[[pa.Table], pa.Table] | None = None
) -> int:
    """Ten 10k-row messages through the in-process transport and a pipeline into ``store``."""
    t = InprocessTransport(InprocessTransportConfig(max_batches=16))
    p = Pipeline(
        PipelineConfig(max_batch_rows=200_000, max_batch_delay_ms=200),
        t.consumer(),
        store,
        drain=True,
        transform=transform,
    )
    p.start()
    prod = t.producer()
    for i in range(10):
        prod.send(rb.slice((i % 10) * 10_000, 10_000), b"e")
    p.stop()
    return p.rows_inserted


def main() -> None:
    rb = synthetic(100_000)
    data = wire.encode(rb)
    report("wire.encode", median_rate(lambda: (wire.encode(rb), rb.num_rows)[1]), "rows/s")
    report("wire.decode", median_rate(lambda: wire.decode(data).num_rows), "rows/s")
    report("wire.bytes_per_flow", len(data) / rb.num_rows, "bytes")

    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=Path(tmp) / "chdb")))
        store.start()
        table = pa.Table.from_batches([rb])
        report("chdb.insert", median_rate(lambda: (store.insert(table), table.num_rows)[1]), "rows/s")

        report("pipeline.inprocess", median_rate(lambda: through_pipeline(store, rb), rounds=3), "rows/s")

        enricher = Enricher(bench_enrich.metadata(), dictionary=True)  # as make_enricher builds it
        enricher.tables()
        pods = pod_flows(200_000)
        enriched = enricher.enrich(pa.Table.from_batches([pods]))

        def run() -> int:
            store.insert(enriched)
            return enriched.num_rows

        report("chdb.insert.enriched", median_rate(run), "rows/s")
        report("chdb.insert.enriched.cpu", bench_enrich.median_cpu_rate(run), "rows/s")
        inproc = lambda: through_pipeline(store, pods, enricher.enrich)  # noqa: E731
        report("pipeline.inprocess.enriched", median_rate(inproc, rounds=3), "rows/s")
        store.stop()

    before = rss_mib()  # current RSS, not the peak: the inserts above peaked higher
    held = [synthetic(100_000, seed=i) for i in range(10)]
    after = rss_mib()
    report("pipeline.rss_per_million", (after - before) * 1_000_000 / sum(b.num_rows for b in held), "MiB")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


if __name__ == "__main__":
    main()
