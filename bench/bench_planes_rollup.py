"""What the planes_qos_1m rollup (a second event-time materialized view on ``flows``) costs an insert.

Inserts 200k enriched flows (bench_store's pods, planes named on half of them, TOS drawn) ten
times into a fresh embedded store. Prints store.insert.planes_rollup (rows/s, wall) and its .cpu
(rows per CPU-second of the process, chdb's threads included). ``--without`` drops the rollup from
the schema first: run both as whole processes, paired, to read the cost (the note quotes them).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_enrich  # noqa: E402
import bench_store  # noqa: E402
from _util import median_rate, report  # noqa: E402

from netobs import ddl  # noqa: E402
from netobs.config import ChdbStoreConfig, StoreConfig  # noqa: E402
from netobs.store import make_store  # noqa: E402
from pipeline.enrich import Enricher  # noqa: E402

ROWS, ROUNDS = 200_000, 10


def flows() -> pa.Table:
    enricher = Enricher(bench_enrich.metadata(), dictionary=True)
    table = enricher.enrich(pa.Table.from_batches([bench_store.pod_flows(ROWS)]))
    rng = np.random.default_rng(7)
    planes = np.array(["", "business", "storage", "backup", "management"], dtype=object)
    for name in ("src_plane", "dst_plane"):
        values = planes[rng.integers(0, len(planes), ROWS)]
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, pa.string()))
    tos = rng.choice(np.array([0, 0, 0, 46 << 2, 34 << 2, 8 << 2], dtype=np.uint8), ROWS)
    return table.set_column(table.schema.get_field_index("tos"), "tos", pa.array(tos))


def main() -> None:
    if "--without" in sys.argv:
        ddl.ROLLUPS = tuple(r for r in ddl.ROLLUPS if r.table != "planes_qos_1m")
    table = flows()
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=Path(tmp) / "chdb")))
        store.start()

        def run() -> int:
            store.insert(table)
            return table.num_rows

        suffix = ".without" if "--without" in sys.argv else ""
        report(f"store.insert.planes_rollup{suffix}", median_rate(run, rounds=ROUNDS // 2), "rows/s")
        report(f"store.insert.planes_rollup{suffix}.cpu", bench_enrich.median_cpu_rate(run), "rows/s")
        store.stop()


if __name__ == "__main__":
    main()
