"""ClickHouse server insert path: Arrow batch → clickhouse-driver → a real server (Debian's 18.16).

Prints: clickhouse.insert (rows/s, 100k flows whose enrichment columns are empty),
clickhouse.insert.enriched (rows/s, 100k flows between 100k pods, enriched into dictionary
columns as the pipeline inserts them), and for each the CPU-seconds this (client) process
spends per million rows (``.cpu_s_per_million``): the server runs in its own process, so
this is the cost the pipeline pays, apart from the server's. Medians of 5 rounds.
The server is started with the test fixture's helper; without one the script says so and
prints no figure.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))
import bench_enrich  # noqa: E402
from _util import report  # noqa: E402
from bench_store import pod_flows, synthetic  # noqa: E402

from netobs.config import ClickHouseStoreConfig, StoreConfig  # noqa: E402
from netobs.store import make_store  # noqa: E402
from pipeline.enrich import Enricher  # noqa: E402
from tests.services.clickhouse_server import ClickHouseServer, find_server_command  # noqa: E402

ROWS, ROUNDS = 100_000, 5


def measure(fn: Callable[[], int], rounds: int = ROUNDS) -> tuple[float, float]:
    """Median rows/s (wall) and median CPU-seconds of this process per million rows."""
    rates, cpu = [], []
    for _ in range(rounds):
        wall, proc = time.perf_counter(), time.process_time()
        n = fn()
        rates.append(n / (time.perf_counter() - wall))
        cpu.append((time.process_time() - proc) * 1_000_000 / n)
    return statistics.median(rates), statistics.median(cpu)


def run(store, name: str, table: pa.Table) -> None:
    store.insert(table)  # warm up: connection, column metadata
    rate, cpu = measure(lambda: (store.insert(table), table.num_rows)[1])
    report(name, rate, "rows/s")
    report(f"{name}.cpu_s_per_million", cpu, "s")


def main() -> int:
    if not find_server_command():
        print("bench_clickhouse_server: skipped, clickhouse-server is not installed", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        server = ClickHouseServer(tmp).start()
        try:
            cfg = StoreConfig(
                type="clickhouse",
                database="netobs_bench",
                clickhouse=ClickHouseStoreConfig(host=server.host, port=server.port),
            )
            store = make_store(cfg)
            store.start()
            run(store, "clickhouse.insert", pa.Table.from_batches([synthetic(ROWS)]))
            enricher = Enricher(bench_enrich.metadata(), dictionary=True)  # as make_enricher builds it
            enriched = enricher.enrich(pa.Table.from_batches([pod_flows(ROWS)]))
            run(store, "clickhouse.insert.enriched", enriched)
            store.stop()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
