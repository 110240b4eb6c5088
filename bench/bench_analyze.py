"""``analyze`` over 30 simulated days for a bank of 50 tenants × 3 centers: wall time and peak memory.

Enriched flows are generated with numpy (web → api → db/cache per tenant in dc1 and dc2,
database replication dc1 → dc2, a day/night cycle) and inserted straight into chdb, whose
materialized views fill the rollups; the analysis then judges the last 7 days against the 23
before. The flows go through the counting kernel first (``netobs.observations.Counter``), as the
pipeline does: the rollups keep only counted records, so flows without its columns would leave the
analysis nothing to judge. Prints analyze.30d_50t (s), analyze.cpu (CPU s), analyze.peak_rss (MiB)
and the flows analysed.

``--store DIR`` keeps the loaded chdb store in DIR and reuses it on the next run (only the analysis
is then timed by a whole-process measurement); without it a temporary store is loaded each run.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import report  # noqa: E402

from analytics.config import AnalyticsConfig  # noqa: E402
from analytics.runner import Analysis  # noqa: E402
from netobs.batch import FlowBatch  # noqa: E402
from netobs.config import ChdbStoreConfig, StoreConfig  # noqa: E402
from netobs.observations import Counter  # noqa: E402
from netobs.store import make_store  # noqa: E402

TENANTS, DAYS, BUCKET_S = 50, 30, 300
START = datetime(2025, 10, 27, tzinfo=UTC)
EDGES = (("web", "api", 8080), ("api", "db", 5432), ("api", "cache", 6379))


def day_of_flows(day: int, rng: np.random.Generator) -> pa.Table:
    buckets = np.arange(86_400 // BUCKET_S)
    t_ms = int((START + timedelta(days=day)).timestamp() * 1000) + buckets * BUCKET_S * 1000
    # one row per bucket × tenant × center × edge × direction
    b, t, c, e, d = np.meshgrid(
        buckets, np.arange(TENANTS), np.arange(2), np.arange(len(EDGES)), np.arange(2), indexing="ij"
    )
    b, t, c, e, d = (x.ravel() for x in (b, t, c, e, d))
    n = len(b)
    hour = (b * BUCKET_S / 3600.0) % 24
    level = (1 + 0.8 * np.sin((hour - 6) / 24 * 2 * np.pi)) * rng.lognormal(0, 0.08, n)
    raw_bytes = (3e5 * level * np.where(d == 1, 8, 1)).astype("uint64") + 1
    addr = np.zeros((n, 16), dtype=np.uint8)
    addr[:, 10:12] = 0xFF
    addr[:, 12], addr[:, 13], addr[:, 14], addr[:, 15] = 10, t + 1, c + 1, 10 + e * 16
    peer = addr.copy()
    peer[:, 15] = 26 + e * 16
    src, dst = np.where(d[:, None] == 0, addr, peer), np.where(d[:, None] == 0, peer, addr)
    tenants = np.array([f"tenant{i + 1:02d}" for i in range(TENANTS)], dtype=object)
    centers = np.array(["dc1", "dc2"], dtype=object)
    client = np.array([x[0] for x in EDGES], dtype=object)[e]
    server = np.array([x[1] for x in EDGES], dtype=object)[e]
    ports = np.array([x[2] for x in EDGES], dtype="uint16")[e]
    cols = {
        "time_received": t_ms[b] + BUCKET_S * 1000,
        "flow_start": t_ms[b] + rng.integers(0, 240_000, n),
        "flow_end": t_ms[b] + 270_000,
        "type": np.full(n, "ipfix", dtype=object),
        "direction": np.full(n, "ingress", dtype=object),
        "exporter": src.view("V16").ravel(),
        "sampling_rate": np.full(n, 1000, dtype="uint32"),
        "src_addr": src.view("V16").ravel(),
        "dst_addr": dst.view("V16").ravel(),
        "src_port": np.where(d == 0, 40000 + e, ports).astype("uint16"),
        "dst_port": np.where(d == 0, ports, 40000 + e).astype("uint16"),
        "proto": np.full(n, 6, dtype="uint8"),
        "packets": raw_bytes // 900 + 1,
        "bytes": raw_bytes,
        "src_tenant": tenants[t],
        "dst_tenant": tenants[t],
        "src_namespace": tenants[t],
        "dst_namespace": tenants[t],
        "src_workload": np.where(d == 0, client, server),
        "dst_workload": np.where(d == 0, server, client),
        "src_zone": np.full(n, "production", dtype=object),
        "dst_zone": np.full(n, "production", dtype=object),
        "src_center": centers[c],
        "dst_center": centers[c],
        "exporter_center": centers[c],
        "path": np.full(n, "intra_center", dtype=object),
    }
    # the counting model's columns (counted, initiator, event time), as the pipeline fills them
    return Counter().apply(pa.Table.from_batches([FlowBatch(cols).to_arrow()]), dictionary=False)


def analyze(path: Path) -> None:
    store = make_store(
        StoreConfig(
            retention_days=0,
            rollup_1m_retention_days=0,
            rollup_1h_retention_days=0,
            exporter_health_retention_days=0,
            chdb=ChdbStoreConfig(path=path),
        )
    )
    store.start()
    loaded = path / ".loaded"
    if not loaded.exists():
        rng = np.random.default_rng(3)
        rows = 0
        started = time.perf_counter()
        for day in range(DAYS):
            table = day_of_flows(day, rng)
            store.insert(table)
            rows += table.num_rows
        report("analyze.load_rows", rows, "flows")
        report("analyze.load_rate", rows / (time.perf_counter() - started), "rows/s")
        loaded.touch()
    end = START + timedelta(days=DAYS)
    started, cpu = time.perf_counter(), time.process_time()
    findings = Analysis(
        store.query_arrow, "netobs", AnalyticsConfig(), end - timedelta(days=7), end, history_days=23
    ).run()
    report("analyze.30d_50t", time.perf_counter() - started, "s")
    # CPU seconds of the whole process (chdb's threads included): the machine is shared.
    report("analyze.cpu", time.process_time() - cpu, "s")
    report("analyze.findings", len(findings), "findings")
    report("analyze.peak_rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB")
    store.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="keep (and reuse) the loaded chdb store here")
    args = parser.parse_args()
    if args.store is not None:
        args.store.mkdir(parents=True, exist_ok=True)
        analyze(args.store)
        return
    with tempfile.TemporaryDirectory() as tmp:
        analyze(Path(tmp) / "chdb")


if __name__ == "__main__":
    main()
