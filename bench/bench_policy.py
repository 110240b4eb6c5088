"""Policy evaluation: a 500-rule policy over N million flows (default 10M) in the embedded store.

Flows are generated inside the engine (``INSERT ... SELECT`` from ``numbers()``, hashes of the row
number as the randomness: 2,000 endpoints over 3 centers, 8 tenants, 40 namespaces, a tenth of them
unnamed external addresses; a day of traffic), in batches of 2M; the rollups' materialized views are
dropped first (the policy reads raw flows only, and feeding the rollups was most of the load time).
The timed part is ``evaluate`` over the day (hourly windows) into ``violations``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import report  # noqa: E402

from analytics.policy.evaluate import evaluate  # noqa: E402
from analytics.policy.model import Policy  # noqa: E402
from netobs import ddl  # noqa: E402
from netobs.config import ChdbStoreConfig, StoreConfig  # noqa: E402
from netobs.store import make_store  # noqa: E402

DAY = datetime(2026, 6, 1, tzinfo=UTC)
BATCH = 2_000_000
SEED = 7
ENDPOINTS = 2000
TENANTS = [f"tenant-{i}" for i in range(8)]
NAMESPACES = [f"ns-{i}" for i in range(40)]
ZONES = ["production", "test", "management", "core", "dmz"]
CENTERS = [("dc1", "site-a"), ("dc2", "site-a"), ("dc3", "site-b")]
PORTS = (22, 80, 443, 3306, 5432, 6379, 8080, 8443, 9092, 9093, 10250, 53)


NAMED = ENDPOINTS * 9 // 10  # endpoints 0..NAMED-1 are pods (namespace = i % 40), the rest external


def _end(e: str) -> dict[str, str]:
    """SQL of one end's columns from its endpoint number ``e``: a namespace's pods share tenant,
    zone and center; endpoints from NAMED on are external (no names)."""
    ns = f"({e} % {len(NAMESPACES)})"
    named = f"{e} < {NAMED}"
    arr = lambda values: "[" + ", ".join(f"'{v}'" for v in values) + "]"  # noqa: E731
    cols = {
        "namespace": f"concat('ns-', toString({ns}))",
        "tenant": f"concat('tenant-', toString({ns} % {len(TENANTS)}))",
        "zone": f"{arr(ZONES)}[{ns} % {len(ZONES)} + 1]",
        "workload": f"concat('wl-', toString({e} % 300))",
        "pod": f"concat('pod-', toString({e}))",
        "center": f"{arr([c for c, _ in CENTERS])}[{ns} % 3 + 1]",
        "site": f"{arr([s for _, s in CENTERS])}[{ns} % 3 + 1]",
        "subnet": f"concat('subnet-', toString({ns}))",
        "vpc": f"concat('vpc-', toString({ns} % 8))",
        "node": f"concat('node-', toString(cityHash64({e}, 99) % 60))",
    }
    out = {k: f"if({named}, {v}, '')" for k, v in cols.items()}
    out["addr"] = f"toIPv6(concat('::ffff:10.244.', toString(intDiv({e}, 256)), '.', toString({e} % 256)))"
    return out


def load_sql(database: str, offset: int, n: int, seed: int, columns: set[str] | None = None) -> str:
    """INSERT ... SELECT of flows ``offset .. offset+n`` generated inside the engine (no rows through
    Python): 98.5% inside a namespace on service ports, 1% across namespaces, 0.5% to external
    addresses, over one day; every flow counted once (as the pipeline's counting model sets it),
    a tenth of them replies (turned around before the rules judge them). Only the ``columns`` the
    flows table has are written (so the same data loads into an older schema, e.g. one without the
    counting model's columns, to measure an older policy engine)."""
    h = lambda k: f"cityHash64(number, {seed}, {k})"  # noqa: E731
    ports = "[" + ", ".join(map(str, PORTS)) + "]"
    day_ms = int(DAY.timestamp() * 1000)
    ends = {"src": _end("src_e"), "dst": _end("dst_e")}
    select = {
        "time_received": "t",
        "flow_start": "t",
        "flow_end": "t",
        "event_start": "t",
        "event_end": "t",
        "type": f"['sflow', 'ipfix'][{h(10)} % 2 + 1]",
        "direction": f"['ingress', 'egress', 'unknown'][{h(11)} % 3 + 1]",
        "sampling_rate": f"toUInt32([1, 512, 1024][{h(12)} % 3 + 1])",
        "dst_port": f"toUInt16(if({h(13)} % 100 < 98, [443, 8080, 8443][{h(14)} % 3 + 1], {ports}[{h(14)} % {len(PORTS)} + 1]))",
        "src_port": f"toUInt16(1024 + {h(15)} % 64511)",
        "proto": "toUInt8(6)",
        "packets": f"toUInt64(1 + {h(16)} % 99)",
        "bytes": f"toUInt64(64 + {h(17)} % 149936)",
        "counted": "toUInt8(1)",
        "count_reason": "'source_node'",
        "initiator": f"if({h(18)} % 10 = 0, 'dst', 'src')",
        **{f"{end}_{k}": v for end, cols in ends.items() for k, v in cols.items()},
    }
    if columns is not None:
        select = {k: v for k, v in select.items() if k in columns}
    inner = (
        f"SELECT number, {h(1)} % {NAMED} AS src_e, {h(2)} % 1000 AS kind, "
        f"multiIf(kind < 985, ({h(3)} % {NAMED // len(NAMESPACES)}) * {len(NAMESPACES)} + src_e % {len(NAMESPACES)}, "
        f"kind < 995, {h(4)} % {NAMED}, {NAMED} + {h(5)} % {ENDPOINTS - NAMED}) AS dst_e, "
        f"fromUnixTimestamp64Milli(toInt64({day_ms} + {h(6)} % 86400000), 'UTC') AS t "
        f"FROM numbers({offset}, {n})"
    )
    return (
        f"INSERT INTO `{database}`.flows ({', '.join(select)}) "
        f"SELECT {', '.join(select.values())} FROM ({inner})"
    )


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
    with tempfile.TemporaryDirectory(prefix="bench-policy-") as tmp:
        store = make_store(StoreConfig(retention_days=0, chdb=ChdbStoreConfig(path=Path(tmp))))
        store.start()
        for rollup in ddl.ROLLUPS:
            store.execute(f"DROP TABLE IF EXISTS `{store.database}`.`{rollup.table}_mv`")
        have = set(
            store.query_arrow(
                f"SELECT name FROM system.columns WHERE database = '{store.database}' AND table = 'flows'"
            )
            .column("name")
            .to_pylist()
        )
        missing = sorted(
            set(load_sql(store.database, 0, 1, SEED).split("(", 1)[1].split(")", 1)[0].split(", ")) - have
        )
        if missing:
            print(f"flows table has no {', '.join(missing)}: not loaded", file=sys.stderr)
        loaded, cpu_load = time.perf_counter(), _cpu()
        for done in range(0, total, BATCH):
            store.execute(load_sql(store.database, done, min(BATCH, total - done), SEED, have))
        print(
            f"inserted {total} flows in {time.perf_counter() - loaded:.1f} s ({_cpu() - cpu_load:.1f} cpu-s); "
            f"policy code from {Path(evaluate.__code__.co_filename).parent}",
            file=sys.stderr,
        )
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
