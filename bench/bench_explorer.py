"""Latency of every flow-explorer view and every dashboard panel over 30 days of a large bank's rollups.

The rollup rows are generated directly (no flows): a 5,000-node bank (3 centers, 60 tenants,
4 zones, 12 services) with ``--keys`` distinct rollup keys per minute for ``--days`` days,
inserted into ``flows_1m`` (the store's own view fills ``flows_1h`` from it). Each view and
panel is rendered for the last 1 h, 1 day, 7 days and 30 days and run ``--rounds`` times on
chdb; p50 and p95 of the wall time are printed as ``bench:`` lines, then a table.

The explorer's views are also run the way the explorer runs them: as a viewer through the query
service (``QueryService.run``: the SQL guard's parse and allowlist walk, readonly settings, one
audit row inserted per query), and the two added costs are measured alone (guard CPU per view,
audit insert wall/CPU per row).

    nice .venv/bin/python bench/bench_explorer.py [--days 30] [--keys 400] [--rounds 5] [--only-explorer]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._util import report  # noqa: E402
from dashboards import build_all  # noqa: E402
from dashboards import explorer as ex  # noqa: E402
from dashboards.catalog import panel_queries  # noqa: E402
from dashboards.check import context  # noqa: E402
from dashboards.render import render  # noqa: E402
from netobs.audit import AUDIT_TABLE, AuditLog  # noqa: E402
from netobs.auth import Principal  # noqa: E402
from netobs.config import ChdbStoreConfig, ControlAuthConfig, StoreConfig  # noqa: E402
from netobs.queryservice import QueryService  # noqa: E402
from netobs.sqlguard import guard_sql  # noqa: E402
from netobs.store import make_store  # noqa: E402
from netobs_app.settings import Settings  # noqa: E402

RANGES = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
CENTERS = ("dc1", "dc2", "dc3")
TENANTS = tuple(f"tenant{i:02d}" for i in range(1, 61))
ZONES = ("production", "pci", "internal", "dmz")
PORTS = (443, 8080, 5432, 6379, 53, 9092, 3306, 22, 8443, 2379, 11211, 27017)


def rows(minute0: int, minutes: int, keys: int, rng: np.random.Generator) -> pa.Table:
    """``keys`` rollup rows per minute: a fixed key set (a bank's steady conversations) with noisy measures."""
    k = np.arange(keys)
    n = minutes * keys
    key = np.tile(k, minutes)
    t = np.repeat(np.arange(minute0, minute0 + minutes, dtype=np.int64) * 60, keys)
    pick = lambda items, salt: np.array(items, dtype=object)[(key * 2654435761 + salt) % len(items)]  # noqa: E731
    bytes_ = rng.lognormal(12, 1.5, n)
    packets = bytes_ / rng.uniform(200, 1400, n)
    return pa.table({
        "time": pa.array(t.astype("datetime64[s]"), pa.timestamp("s", tz="UTC")),
        "src_center": pick(CENTERS, 1), "dst_center": pick(CENTERS, 7),
        "src_tenant": pick(TENANTS, 3), "dst_tenant": pick(TENANTS, 11),
        "src_zone": pick(ZONES, 5), "dst_zone": pick(ZONES, 13),
        "dst_port": pa.array(pick(PORTS, 17).astype(np.uint16)), "proto": pa.array(np.where(pick(PORTS, 17) == 53, 17, 6).astype(np.uint8)),
        "type": pick(("ipfix", "sflow"), 19), "direction": pick(("ingress", "egress"), 23),
        "initiator": pick(("src", "dst"), 29),
        "bytes": bytes_, "packets": packets, "raw_bytes": bytes_, "raw_packets": packets,
        "flows": rng.uniform(1, 20, n),
    })  # fmt: skip


def fill(store, days: int, keys: int, end: datetime) -> int:
    rng = np.random.default_rng(42)
    first = int((end - timedelta(days=days)).timestamp()) // 60
    total = 0
    for day in range(days):
        table = rows(first + day * 1440, 1440, keys, rng)
        store.insert(table, target="flows_1m")
        total += table.num_rows
    store.execute(f"OPTIMIZE TABLE `{store.database}`.`flows_1h` FINAL")
    return total


def timed(query, sql: str, rounds: int) -> tuple[list[float], list[float]]:
    """Wall seconds and CPU seconds (this process: chdb runs in it) of each round."""
    wall, cpu = [], []
    for _ in range(rounds):
        t, c = time.perf_counter(), time.process_time()
        query(sql)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return wall, cpu


def p95(xs: list[float]) -> float:
    return sorted(xs)[max(0, int(round(0.95 * len(xs))) - 1)]


def explorer_views(db: str, view: ex.View) -> dict[str, str]:
    top = ex.top_sql(db, view)
    return {
        "explorer top src_tenant": top,
        "explorer series by src_tenant": ex.series_sql(db, view, [f"tenant{i:02d}" for i in range(1, 11)]),
        "explorer series total pps": ex.series_sql(db, ex.View(view.start, view.end, metric="pps")),
        "explorer sankey center": ex.sankey_sql(db, view, "src_center", "dst_center"),
        "explorer sankey tenant": ex.sankey_sql(db, ex.View(view.start, view.end, limit=60), "src_tenant", "dst_tenant"),
        "explorer filtered series": ex.series_sql(
            db, ex.View(view.start, view.end, (ex.Filter("src_center", ("dc1",)), ex.Filter("dst_port", ("5432",))),
                        by="dst_tenant"), ["tenant01"]),
        "explorer values src_tenant": ex.values_sql(db, view, "src_tenant", "tenant0"),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--keys", type=int, default=400, help="distinct rollup keys per minute")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only-explorer", action="store_true", help="skip the dashboard panels")
    args = ap.parse_args()
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = StoreConfig(chdb=ChdbStoreConfig(path=Path(tmp) / "chdb"), retention_days=0,
                          rollup_1m_retention_days=0, rollup_1h_retention_days=0)  # fmt: skip
        store = make_store(cfg)
        store.start()
        try:
            t = time.process_time()
            n = fill(store, args.days, args.keys, end)
            report("explorer_fill_rows_per_cpu_s", n / (time.process_time() - t), "rows/cpu-s")
            hourly = (
                store.query_arrow(f"SELECT count() FROM `{cfg.database}`.`flows_1h`").column(0)[0].as_py()
            )
            print(f"# {n} flows_1m rows, {hourly} flows_1h rows, {args.days} days, {args.keys} keys/minute")
            settings = Settings.model_validate(
                {"store": {"type": "chdb", "chdb": {"path": str(Path(tmp) / "chdb")}}}
            )
            models = {} if args.only_explorer else build_all(settings)
            for stmt in AUDIT_TABLE.create(cfg.database, retention_days=90):
                store.execute(stmt)
            audit = AuditLog(  # as netobs_app.runtime makes it
                lambda t, target: store.insert(t, target=target),
                store.query_arrow,
                cfg.database,
                insert_json=store.insert_json,
            )
            audit.start()
            service = QueryService(store, cfg.database, ControlAuthConfig(), audit)
            viewer = Principal("bench", "viewer")
            tables, tenant_tables = service.tables()
            table: list[tuple[str, str, float, float, float]] = []
            for label, span in RANGES.items():
                start = end - span
                view = ex.View(start, end, by="src_tenant")
                queries = dict(explorer_views(cfg.database, view))
                for name, model in models.items():
                    if name == "compliance":
                        continue  # findings and violations only: tables the analytics create, empty here
                    ctx = context(model, store.query_arrow, start, end)
                    for q in panel_queries(model):
                        queries[f"{name}: {q.where}"] = render(q.sql, ctx)
                for name, sql in list(queries.items()):
                    if not name.startswith("explorer"):
                        continue
                    # the explorer's own path: guard + readonly + audit row, as a viewer
                    ts, cpu = timed(
                        lambda q: service.run(viewer, q, route="/explorer/api/bench"), sql, args.rounds
                    )
                    table.append(
                        (f"{name} (as viewer)", label, statistics.median(ts), p95(ts), statistics.median(cpu))
                    )
                    slug = "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()
                    report(f"explorer_{slug}_{label}_viewer_p95", p95(ts), "s")
                    report(f"explorer_{slug}_{label}_viewer_cpu", statistics.median(cpu), "cpu-s")
                    if label == "1h":
                        c0 = time.process_time()
                        for _ in range(20):
                            guard_sql(viewer, sql, database=cfg.database, tables=tables,
                                      tenant_tables=tenant_tables, timeout_s=30)  # fmt: skip
                        report(f"explorer_{slug}_guard_cpu", (time.process_time() - c0) / 20 * 1e3, "cpu-ms")
                for name, sql in queries.items():
                    rounds = args.rounds if name.startswith("explorer") else max(2, args.rounds // 2)
                    try:
                        ts, cpu = timed(store.query_arrow, sql, rounds)
                    except Exception as e:  # a table another component creates (findings, violations)
                        print(f"# {name} {label}: {str(e).splitlines()[0][:120]}")
                        continue
                    table.append((name, label, statistics.median(ts), p95(ts), statistics.median(cpu)))
                    slug = "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()
                    report(f"explorer_{slug}_{label}_p95", p95(ts), "s")
                    report(f"explorer_{slug}_{label}_cpu", statistics.median(cpu), "cpu-s")
            arrow = AuditLog(
                lambda t, target: store.insert(t, target=target), store.query_arrow, cfg.database
            )
            arrow.start()
            for how, log in (("json", audit), ("arrow", arrow)):  # the row as JSONEachRow, or as Arrow
                walls, cpus = [], []
                for i in range(50):
                    t0, c0 = time.perf_counter(), time.process_time()
                    log.record(
                        principal="bench", role="viewer", route="/bench", sql=f"SELECT {i}", outcome="ok"
                    )
                    walls.append(time.perf_counter() - t0)
                    cpus.append(time.process_time() - c0)
                report(f"explorer_audit_row_{how}_wall_p50", statistics.median(walls) * 1e3, "ms")
                report(f"explorer_audit_row_{how}_wall_p95", p95(walls) * 1e3, "ms")
                report(f"explorer_audit_row_{how}_cpu", statistics.median(cpus) * 1e3, "cpu-ms")
            print(f"\n{'view or panel':60} {'range':>5} {'p50 s':>8} {'p95 s':>8} {'cpu s':>8}")
            for name, label, p50, p95_, c in table:
                print(f"{name[:60]:60} {label:>5} {p50:8.3f} {p95_:8.3f} {c:8.3f}")
        finally:
            store.stop()


if __name__ == "__main__":
    main()
