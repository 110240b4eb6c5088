"""Policy evaluation: a 500-rule policy over N million flows (default 10M) in the embedded store.

Flows are generated in batches of 1M with numpy (2,000 named endpoints over 3 centers, 8
tenants, 40 namespaces, plus unnamed external addresses; a day of traffic) and inserted as
Arrow. The timed part is ``evaluate`` over the day (hourly windows) into ``violations``.
Prints ``bench: policy.check_500x<N>M <s> s`` (wall) and ``...cpu`` (CPU-seconds), ``policy.rows_per_s`` and ``policy.peak_rss``
(peak resident memory of the process, chdb engine included).

Usage: bench/bench_policy.py [MILLION_FLOWS]
"""

from __future__ import annotations

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

from analytics.policy.evaluate import evaluate  # noqa: E402
from analytics.policy.model import Policy  # noqa: E402
from netobs import schema  # noqa: E402
from netobs.config import ChdbStoreConfig, StoreConfig  # noqa: E402
from netobs.store import make_store  # noqa: E402

DAY = datetime(2026, 6, 1, tzinfo=UTC)
BATCH = 1_000_000
ENDPOINTS = 2000
TENANTS = [f"tenant-{i}" for i in range(8)]
NAMESPACES = [f"ns-{i}" for i in range(40)]
ZONES = ["production", "test", "management", "core", "dmz"]
CENTERS = [("dc1", "site-a"), ("dc2", "site-a"), ("dc3", "site-b")]
PORTS = np.array([22, 80, 443, 3306, 5432, 6379, 8080, 8443, 9092, 9093, 10250, 53], dtype="uint16")


NAMED = ENDPOINTS * 9 // 10  # endpoints 0..NAMED-1 are pods (namespace = i % 40), the rest external


def endpoints(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Attribute arrays of the endpoints: a namespace's pods share tenant, zone and center."""
    i = np.arange(ENDPOINTS)
    ns = i % len(NAMESPACES)
    named = i < NAMED
    pick = lambda values, idx: np.where(named, np.array(values, dtype=object)[idx], "")  # noqa: E731
    return {
        "namespace": pick(NAMESPACES, ns),
        "tenant": pick(TENANTS, ns % len(TENANTS)),
        "zone": pick(ZONES, ns % len(ZONES)),
        "workload": np.where(named, [f"wl-{k % 300}" for k in i], ""),
        "pod": np.where(named, [f"pod-{k}" for k in i], ""),
        "center": pick([c for c, _ in CENTERS], ns % 3),
        "site": pick([s for _, s in CENTERS], ns % 3),
        "subnet": pick([f"subnet-{k}" for k in range(40)], ns),
        "vpc": pick([f"vpc-{k % 8}" for k in range(40)], ns),
        "node": pick([f"node-{k}" for k in range(60)], rng.integers(0, 60, ENDPOINTS)),
        "addr": np.array(
            [b"\0" * 10 + b"\xff\xff" + bytes([10, 244, k // 256, k % 256]) for k in i], dtype="V16"
        ),
    }


def flow_batch(rng: np.random.Generator, eps: dict[str, np.ndarray], n: int) -> pa.Table:
    """n flows over the day: 98.5% inside a namespace on service ports, 1% across namespaces, 0.5% external."""
    src = rng.integers(0, NAMED, n)
    same_ns = rng.integers(0, NAMED // len(NAMESPACES), n) * len(NAMESPACES) + src % len(NAMESPACES)
    kind = rng.random(n)
    dst = np.where(
        kind < 0.985,
        same_ns,
        np.where(kind < 0.995, rng.integers(0, NAMED, n), rng.integers(NAMED, ENDPOINTS, n)),
    )
    ports = np.where(rng.random(n) < 0.98, rng.choice(PORTS[[2, 6, 7]], n), rng.choice(PORTS, n))
    t = int(DAY.timestamp() * 1000) + rng.integers(0, 86_400_000, n)
    cols: dict[str, pa.Array] = {
        "time_received": pa.array(t).cast(pa.timestamp("ms", tz="UTC")),
        "type": pa.array(rng.choice(["sflow", "ipfix"], n)),
        "direction": pa.array(rng.choice(["ingress", "egress", "unknown"], n)),
        "sampling_rate": pa.array(rng.choice([1, 512, 1024], n).astype("uint32")),
        "dst_port": pa.array(ports.astype("uint16")),
        "src_port": pa.array(rng.integers(1024, 65535, n).astype("uint16")),
        "proto": pa.array(np.full(n, 6, dtype="uint8")),
        "packets": pa.array(rng.integers(1, 100, n).astype("uint64")),
        "bytes": pa.array(rng.integers(64, 150_000, n).astype("uint64")),
    }
    cols["flow_start"] = cols["flow_end"] = cols["time_received"]
    # The counting model's columns, as the pipeline sets them: every flow counted once (a flow
    # without them has counted = 0 and event time 1970, and the policy would read nothing);
    # a tenth are replies (the server's answer), turned around before the rules judge them.
    cols["event_start"] = cols["event_end"] = cols["time_received"]
    cols["counted"] = pa.array(np.ones(n, dtype="uint8"))
    cols["count_reason"] = pa.array(np.full(n, "source_node", dtype=object))
    cols["initiator"] = pa.array(np.where(rng.random(n) < 0.1, "dst", "src").astype(object))
    for end, idx in (("src", src), ("dst", dst)):
        for attr, values in eps.items():
            name = f"{end}_{attr}"
            if attr == "addr":
                cols[name] = pa.FixedSizeBinaryArray.from_buffers(
                    pa.binary(16), n, [None, pa.py_buffer(values[idx].tobytes())]
                )
            else:
                cols[name] = pa.array(values).take(pa.array(idx))
    fields = schema.arrow_schema()
    return pa.table(
        [cols[f.name] if f.name in cols else pa.nulls(n, f.type).fill_null(_zero(f.type)) for f in fields],
        schema=fields,
    )


def _zero(t: pa.DataType):
    return "" if pa.types.is_string(t) else b"\0" * 16 if pa.types.is_fixed_size_binary(t) else 0


def policy(n_rules: int = 500) -> Policy:
    """A generated policy of every rule type, cycling over namespaces, tenants and zones."""
    zones = {f"ns-{i}": {"match": [{"namespace": [f"ns-{i}"]}]} for i in range(40)}
    zones |= {z: {"match": [{"zone": [z]}]} for z in ZONES}
    zones["bastion"] = {"match": [{"workload": ["wl-1", "wl-2"]}, {"cidr": ["10.250.0.0/24"]}]}
    zones["gw"] = {"match": [{"workload": ["wl-7"]}]}
    makers = [
        lambda i: {
            "type": "deny",
            "from": f"ns-{i % 40}",
            "to": f"ns-{(i * 7 + 3) % 40}",
            "ports": [int(PORTS[i % len(PORTS)])],
            "protocols": ["tcp"],
        },
        lambda i: {"type": "allow", "from": f"ns-{i % 40}", "to": f"ns-{(i * 3 + 1) % 40}", "ports": [443]},
        lambda i: {"type": "tenant_isolation", "tenants": [TENANTS[i % 8]], "shared": [TENANTS[(i + 1) % 8]]},
        lambda i: {"type": "separation", "between": ["production", ZONES[1 + i % 4]]},
        lambda i: {"type": "plane_separation", "planes": ["production", "management", "core"]},
        lambda i: {"type": "gateway", "inside": f"ns-{i % 40}", "gateways": "gw", "direction": "egress"},
        lambda i: {"type": "management_access", "to": f"ns-{i % 40}", "bastions": ["bastion"]},
        lambda i: {"type": "plaintext", "to": ["core", f"ns-{i % 40}"]},
        lambda i: {"type": "residency", "tenants": [TENANTS[i % 8]], "within": "center"},
        lambda i: {
            "type": "cross_center",
            "scope": f"ns-{i % 40}",
            "services": [{"name": "repl", "ports": [5432]}],
        },
    ]
    rules = [{"id": f"r{i:03d}", "severity": "high", **makers[i % len(makers)](i)} for i in range(n_rules)]
    return Policy.model_validate({"name": "bench", "zones": zones, "rules": rules})


def _cpu() -> float:
    """CPU-seconds of this process, chdb's threads included (wall time lies on a shared machine)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    millions = float(sys.argv[1]) if len(sys.argv) > 1 else 10
    total = int(millions * 1_000_000)
    rng = np.random.default_rng(7)
    eps = endpoints(rng)
    with tempfile.TemporaryDirectory(prefix="bench-policy-") as tmp:
        store = make_store(StoreConfig(retention_days=0, chdb=ChdbStoreConfig(path=Path(tmp))))
        store.start()
        loaded = time.perf_counter()
        for done in range(0, total, BATCH):
            store.insert(flow_batch(rng, eps, min(BATCH, total - done)))
        print(f"inserted {total} flows in {time.perf_counter() - loaded:.1f} s", file=sys.stderr)
        p = policy(500)
        started, cpu0 = time.perf_counter(), _cpu()
        evaluate(store, p, DAY, DAY + timedelta(days=1), window_s=3600)
        took, cpu = time.perf_counter() - started, _cpu() - cpu0
        n = store.query_arrow("SELECT count() AS n FROM netobs.violations").column("n")[0].as_py()
        print(f"{n} violations", file=sys.stderr)
        store.stop()
    label = f"{millions:g}M"
    report(f"policy.check_500x{label}", took, "s")
    report(f"policy.check_500x{label}.cpu", cpu, "cpu-s")
    report("policy.rows_per_s", total / took, "rows/s")
    report("policy.peak_rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB")


if __name__ == "__main__":
    main()
