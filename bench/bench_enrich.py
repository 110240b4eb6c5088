"""Time-aware enrichment: 100k pods (a tenth of their IPs reused once), 1M flows, one thread.

Prints: enrich (rows/s through ``Enricher.enrich``, both ends, ``path`` and the counting model's
columns, with the dictionary-encoded columns the pipeline inserts, every exporter classified),
enrich.learning.cpu (the same while the counting model still classifies the exporters), enrich.cpu (the same per CPU-second of
this process: "per core" on a shared machine), enrich.strings and enrich.strings.cpu (plain
string columns, as ``Enricher(meta).enrich`` returns them), enrich.index_build and
enrich.index_build.cpu (seconds to build the index from the metadata versions).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import median_rate, report  # noqa: E402

from pipeline.enrich import Enricher  # noqa: E402
from pipeline.metadata.model import Center, Namespace, Network, Node, Pod, Site  # noqa: E402
from pipeline.metadata.versions import Change, MetadataStore  # noqa: E402

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
    # What the counting model reads (netobs.counting): the exporting node (200 nodes, bridge IPFIX
    # with ingress and egress records, as OVS sends them), ports, protocol, flags and counters.
    node = rng.integers(0, NODES, n)
    exporter = np.zeros((n, 16), dtype=np.uint8)
    exporter[:, 10:12], exporter[:, 12:14], exporter[:, 15] = 0xFF, (192, 0), node % 250
    exporter[:, 14] = 2
    sport = rng.choice([443, 8080, 5432, 6379], n)
    dport = rng.integers(32768, 61000, n)
    swap = rng.random(n) < 0.5
    table = {
        "flow_start": pa.array(start, pa.int64()).cast(ts),
        "flow_end": pa.array(start + 500, pa.int64()).cast(ts),
        "time_received": pa.array(start + 1000, pa.int64()).cast(ts),
        "type": pa.array(np.full(n, "ipfix", dtype=object), pa.string()),
        "direction": pa.array(np.where(rng.random(n) < 0.5, "ingress", "egress").astype(object), pa.string()),
        "src_port": pa.array(np.where(swap, sport, dport).astype(np.uint16)),
        "dst_port": pa.array(np.where(swap, dport, sport).astype(np.uint16)),
        "proto": pa.array(np.full(n, 6, dtype=np.uint8)),
        "tcp_flags": pa.array(np.full(n, 0x18, dtype=np.uint16)),
        "packets": pa.array(rng.integers(1, 100, n).astype(np.uint64)),
        "exporter": pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(16), n, [None, pa.py_buffer(exporter.view("V16").tobytes())]
        ),
    }
    for k, v in cols.items():
        table[k] = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(v.tobytes())])
    return pa.table(table)


def median_cpu_rate(fn: Callable[[], int], rounds: int = 5) -> float:
    """Median of ``items / CPU-seconds of this process`` over ``rounds`` runs of ``fn``."""
    rates = []
    for _ in range(rounds):
        started = time.process_time()
        n = fn()
        rates.append(n / (time.process_time() - started))
    return statistics.median(rates)


def main() -> None:
    pa.set_cpu_count(1)  # "per core": Arrow compute on one thread
    meta = metadata()
    enricher = Enricher(meta, dictionary=True)  # as make_enricher builds it for the pipeline
    walls, cpus = [], []
    for _ in range(3):
        enricher._tables = None  # force a rebuild
        started, cpu = time.perf_counter(), time.process_time()
        enricher.tables()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    report("enrich.index_build", statistics.median(walls), "s")
    report("enrich.index_build.cpu", statistics.median(cpus), "s")
    table = flows(FLOWS)
    counter = getattr(enricher, "counter", None)
    if counter is not None:
        # While exporters are being classified (the counting model looks for the same flow at ingress
        # and egress of one exporter, until it finds one or has seen counting.dual_detect_rows of its
        # records: the first seconds to minutes of an exporter's life).
        learning = lambda: enricher.enrich(table).num_rows  # noqa: E731
        report("enrich.learning.cpu", median_cpu_rate(learning, rounds=3), "rows/s")
        # Steady state: every exporter classified (these random flows never pair: single).
        for e in counter.observations.exporters.values():
            e.directions = e.directions or "single"
    for suffix, dictionary in (("", True), (".strings", False)):
        run = lambda d=dictionary: enricher.enrich(table, dictionary=d).num_rows  # noqa: E731
        report(f"enrich{suffix}", median_rate(run, rounds=5), "rows/s")
        report(f"enrich{suffix}.cpu", median_cpu_rate(run, rounds=5), "rows/s")


if __name__ == "__main__":
    main()
