"""Interface counters: wire round trip, insert into chdb, and the rates query over the snapshots.

A synthetic fleet: 2,000 interfaces polled 100 times (10 s apart), counters growing at a
steady rate with a few agent resets, so the rates query does its full work.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import median_rate, report  # noqa: E402

from collectors.counters import CounterBatch  # noqa: E402
from netobs import counter_rates, ddl, wire  # noqa: E402
from netobs.batch import conform, ip_bytes  # noqa: E402
from netobs.config import ChdbStoreConfig, StoreConfig  # noqa: E402
from netobs.store import make_store  # noqa: E402

INTERFACES, POLLS = 2_000, 100
T0 = 1_796_000_000_000


def fleet() -> CounterBatch:
    n = INTERFACES * POLLS
    poll = np.repeat(np.arange(POLLS, dtype=np.uint64), INTERFACES)
    iface = np.tile(np.arange(INTERFACES, dtype=np.uint32), POLLS)
    octets = poll * np.uint64(125_000_000) + iface.astype(np.uint64)
    octets[(poll == 50) & (iface % 100 == 0)] = 7  # a few agents restart
    agents = np.array([ip_bytes(f"10.1.{i // 250}.{i % 250}") for i in range(INTERFACES // 50)], dtype="V16")
    return CounterBatch(
        {
            "time_received": (T0 + poll * 10_000).astype(np.int64),
            "type": np.full(n, "sflow", dtype=object),
            "exporter": agents[iface // 50],
            "if_index": iface % 50,
            "source_id": iface % 50,
            "if_speed": np.full(n, 10_000_000_000, dtype=np.uint64),
            "in_octets": octets,
            "out_octets": octets // np.uint64(2),
            "in_unicast_packets": (poll * np.uint64(90_000) % np.uint64(1 << 32)).astype(np.uint32),
            "if_name": np.full(n, "eth0", dtype=object),
        },
        n,
    )


def main() -> None:
    batch = fleet()
    rb = batch.to_arrow()
    n = len(batch)
    report("counters.wire", median_rate(lambda: wire.decode(wire.encode(rb)).num_rows), "rows/s")
    table = conform(pa.Table.from_batches([rb]), "counters")
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=Path(tmp) / "chdb")))
        store.start()
        try:
            rounds = iter(range(1_000))

            def insert() -> int:
                store.execute(f"TRUNCATE TABLE netobs.{ddl.INTERFACE_COUNTERS}")
                store.insert(table, token=f"bench-{next(rounds)}", target=ddl.INTERFACE_COUNTERS)
                return n

            report("counters.insert", median_rate(insert, rounds=3), "rows/s")
            sql = counter_rates.rates_sql("netobs")
            got = store.query_arrow(sql).num_rows
            assert got == INTERFACES * (POLLS - 1), got
            report(
                "counters.rates",
                median_rate(lambda: store.query_arrow(sql).num_rows and n, rounds=3),
                "snapshots/s",
            )
        finally:
            store.stop()


if __name__ == "__main__":
    main()
