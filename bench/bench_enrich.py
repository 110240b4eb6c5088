"""Time-aware enrichment: 100k pods (a tenth of their IPs reused once), 1M flows, one thread.

Prints: enrich (rows/s through ``Enricher.enrich``, both ends and ``path``) and
enrich.index_build (seconds to build the index from the metadata versions).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

pa.set_cpu_count(1)  # "per core": Arrow compute on one thread
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import median_rate, report  # noqa: E402

from pipeline.enrich import Enricher  # noqa: E402
from pipeline.metadata.model import Center, Namespace, Network, Node, Pod, Site  # noqa: E402
from pipeline.metadata.store import Change, MetadataStore  # noqa: E402

T0 = 1_700_000_000_000
PODS, FLOWS, NODES = 100_000, 1_000_000, 200


def pod_ip(i: int) -> str:
    return f"10.{64 + i // 65536}.{(i // 256) % 256}.{i % 256}"


def metadata() -> MetadataStore:
    """Two sites, three centers, 200 nodes, 20 namespaces, 100k pods; 10k IPs reused at T0+1h."""
    meta = MetadataStore()
    objs = [Site(name="site-a"), Site(name="site-b")]
    objs += [Center(name=f"dc{c}", site="site-a" if c < 3 else "site-b") for c in (1, 2, 3)]
    objs += [Node(name=f"node-{n}", ip=f"192.0.2.{n % 250}", center=f"dc{1 + n % 3}") for n in range(NODES)]
    objs += [Namespace(name=f"ns-{k}", tenant=f"tenant-{k % 5}", zone="production") for k in range(20)]
    objs += [Network(name="pods", cidr="10.64.0.0/10", vpc="ovn-cluster", center="dc1")]
    objs += [Network(name="legacy", cidr="172.30.0.0/16", kind="legacy", tenant="core", center="dc1")]
    objs += [
        Pod(
            name=f"pod-{i}",
            namespace=f"ns-{i % 20}",
            ip=pod_ip(i),
            node=f"node-{i % NODES}",
            workload=f"w{i % 500}",
        )
        for i in range(PODS)
    ]
    meta.apply([Change.upsert(o) for o in objs], T0)
    reused = [Change.delete("pod", f"ns-{i % 20}/pod-{i}") for i in range(0, PODS, 10)]
    reused += [
        Change.upsert(Pod(name=f"new-{i}", namespace=f"ns-{(i + 1) % 20}", ip=pod_ip(i), node="node-1"))
        for i in range(0, PODS, 10)
    ]
    meta.apply(reused, T0 + 3_600_000)
    return meta


def flows(n: int, seed: int = 1) -> pa.Table:
    """Flows between random pods (some to legacy and unknown hosts) over two hours."""
    rng = np.random.default_rng(seed)
    cols = {}
    for end in ("src", "dst"):
        i = rng.integers(0, PODS, n)
        b = np.zeros((n, 16), dtype=np.uint8)
        b[:, 10:12] = 0xFF
        b[:, 12], b[:, 13], b[:, 14], b[:, 15] = 10, 64 + i // 65536, (i // 256) % 256, i % 256
        other = rng.random(n) < 0.05
        b[other, 12], b[other, 13] = 172, 30 + rng.integers(0, 2, other.sum())
        cols[f"{end}_addr"] = b.view("V16").ravel()
    ts = pa.timestamp("ms", tz="UTC")
    start = T0 + rng.integers(0, 7_200_000, n)
    table = {
        "flow_start": pa.array(start, pa.int64()).cast(ts),
        "time_received": pa.array(start + 1000, pa.int64()).cast(ts),
    }
    for k, v in cols.items():
        table[k] = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(v.tobytes())])
    return pa.table(table)


def main() -> None:
    meta = metadata()
    enricher = Enricher(meta)
    started = time.perf_counter()
    enricher.tables()
    report("enrich.index_build", time.perf_counter() - started, "s")
    table = flows(FLOWS)
    rate = median_rate(lambda: enricher.enrich(table).num_rows, rounds=5)
    report("enrich", rate, "rows/s")


if __name__ == "__main__":
    main()
