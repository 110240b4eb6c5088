"""What every store offers, and the schema convergence they share."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, Protocol

import pyarrow as pa

from netobs import counter_rates, ddl, tables
from netobs.config import StoreConfig
from netobs.store.errors import Category, classify, code_of

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """The store refused a statement: retrying will not help.

    ``category`` (:mod:`netobs.store.errors`) says why: ``data`` (some values cannot be
    stored: the rows go to quarantine, the rest goes on) or ``schema`` (the statement does not
    fit the table)."""

    def __init__(self, message: str, category: Category = "schema"):
        super().__init__(message)
        self.category: Category = category


class StoreUnavailable(StoreError):
    """The store cannot take data now (unreachable, disk full, too many parts, read-only
    replica, ...): the caller keeps the data and retries later. ``category`` is ``transient``,
    or ``unknown`` for an error no one classified (retried a limited number of times)."""

    def __init__(self, message: str, category: Category = "transient"):
        super().__init__(message, category)


def raise_classified(message: str, code: int | None = None, detail: str = "") -> NoReturn:
    """Raise the exception an error with this code and message calls for."""
    category = classify(code if code is not None else code_of(detail or message), detail or message)
    if category in ("transient", "unknown"):
        raise StoreUnavailable(message, category)
    raise StoreError(message, category)


class Store(Protocol):
    dialect: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def insert(self, table: pa.Table, token: str | None = None, target: str = ddl.FLOWS) -> int | None: ...
    def query_arrow(self, sql: str, settings: Mapping[str, Any] | None = None) -> pa.Table: ...
    def execute(self, sql: str) -> None: ...


def converge(
    execute: Callable[[str], None],
    columns_of: Callable[[str], dict[str, str]],
    database: str,
    *,
    retention_days: int,
    dialect: str,
    cluster: str | None = None,
    replicated: bool = False,
    rollup_retention: Mapping[str, int] | None = None,
    counters_retention_days: int = 0,
    table_retention: Mapping[str, int] | None = None,
    query: Callable[[str], pa.Table] | None = None,
) -> list[str]:
    """Bring a live database to the schema, idempotently; returns the statements run.

    The tables of :data:`netobs.ddl.TABLES` (flows, interface counters) exist in every
    dialect and layout. Rollups and the exporter-health table (materialized views) exist in
    the modern dialect only; ``rollup_retention`` maps a :class:`netobs.ddl.Rollup`'s
    ``retention`` field name to its TTL in days.
    """
    days = {ddl.FLOWS: retention_days, ddl.INTERFACE_COUNTERS: counters_retention_days}
    days.update({spec.name: (table_retention or {}).get(spec.retention, 0) for spec in ddl.TABLES.values()
                 if spec.name not in days})  # fmt: skip
    ran = [ddl.create_database(database, cluster)]
    for spec in ddl.TABLES.values():
        ran += ddl.create_table(
            database,
            spec,
            retention_days=days[spec.name],
            dialect=dialect,
            cluster=cluster,
            replicated=replicated and not cluster,
        )
    for stmt in ran:
        execute(stmt)
    alters: list[str] = []
    for spec in ddl.TABLES.values():
        alters += ddl.add_missing_columns(
            database,
            columns_of(spec.name),
            dialect=dialect,
            cluster=cluster,
            table=spec.name,
            columns=spec.columns,
        )
    for stmt in alters:
        log.info("schema: %s", stmt)
        execute(stmt)
    rollups: list[str] = []
    if dialect == "modern":
        ttl = rollup_retention or {}
        stale = _stale_rollups(query, database) if query is not None else []
        new = _new_rollups(query, database) if query is not None else []
        drops = _drop_rollups(database, stale, cluster)
        for stmt in drops:
            log.warning("schema: %s (its definition changed; rebuilt from the raw flows)", stmt)
            execute(stmt)
        for rollup in ddl.ROLLUPS:
            rollups += ddl.create_rollup(
                database, rollup, retention_days=ttl.get(rollup.retention, 0), cluster=cluster
            )
        rollups.append(counter_rates.create_view(database, cluster))
        for stmt in rollups:
            execute(stmt)
        rebuilds = _rebuild_rollups(database, stale + new, cluster)
        for stmt in rebuilds:
            log.warning("schema: %s", stmt.splitlines()[0])
            execute(stmt)
        rollups = drops + rollups + rebuilds
    return ran + alters + rollups


def _stale_rollups(query: Callable[[str], pa.Table], database: str) -> list[ddl.Rollup]:
    """Rollups whose live table was made by another rollup definition (its COMMENT says which)."""
    names = (
        ", ".join(f"'{r.table}'" for r in ddl.ROLLUPS)
        + ", "
        + ", ".join(f"'{r.table}_local'" for r in ddl.ROLLUPS)
    )
    rows = query(
        f"SELECT name, comment FROM system.tables WHERE database = '{database}' AND name IN ({names})"
    ).to_pylist()
    live = {r["name"].removesuffix("_local"): r["comment"] for r in rows}
    return [r for r in ddl.ROLLUPS if r.table in live and live[r.table] != ddl.rollup_comment()]


def _new_rollups(query: Callable[[str], pa.Table], database: str) -> list[ddl.Rollup]:
    """Rollups a store that already has its others does not have yet (added by an upgrade): filled
    from the raw flows once created. A new store (no rollup yet) has nothing to fill."""
    rows = query(f"SELECT name FROM system.tables WHERE database = '{database}'").to_pylist()
    live = {r["name"].removesuffix("_local") for r in rows}
    if ddl.ROLLUPS[0].table not in live:
        return []
    return [r for r in ddl.ROLLUPS if r.table not in live]


def _drop_rollups(database: str, stale: list[ddl.Rollup], cluster: str | None) -> list[str]:
    on = f" ON CLUSTER '{cluster}'" if cluster else ""
    out = []
    for r in stale:
        out.append(f"DROP VIEW IF EXISTS `{database}`.`{r.table}_mv`{on}")
        out.append(f"DROP TABLE IF EXISTS `{database}`.`{r.table}`{on}")
        if cluster:
            out.append(f"DROP TABLE IF EXISTS `{database}`.`{r.table}_local`{on}")
    return out


def _rebuild_rollups(database: str, stale: list[ddl.Rollup], cluster: str | None) -> list[str]:
    """Fill rebuilt rollups from the raw flows (chained rollups fill through their views)."""
    rebuilt = {r.table for r in stale}
    out = []
    for r in stale:
        if r.source != ddl.FLOWS and r.source in rebuilt:
            continue  # its view fills it while its source is rebuilt
        target = f"{r.table}_local" if cluster else r.table
        source = f"{r.source}_local" if cluster else r.source
        out.append(f"INSERT INTO `{database}`.`{target}`\n" + ddl.rollup_select(database, r, source))
    return out


def converge_store(store: Any, config: StoreConfig) -> list[str]:
    """:func:`converge` with a store's own ``execute``/``_columns_of`` and the config's TTLs, then
    the components' tables and views the store was made with (``store.schema``)."""
    cluster = config.clickhouse.cluster if config.type == "clickhouse" else None
    ran = converge(
        store.execute,
        store._columns_of,
        config.database,
        retention_days=config.retention_days,
        dialect=store.dialect,
        cluster=cluster,
        replicated=config.replicated,
        rollup_retention={r.retention: getattr(config, r.retention) for r in ddl.ROLLUPS},
        counters_retention_days=getattr(config, ddl.COUNTERS_TABLE.retention),
        table_retention={s.retention: getattr(config, s.retention) for s in ddl.TABLES.values()},
        query=store.query_arrow if store.dialect == "modern" else None,
    )
    return ran + tables.converge(
        store.execute,
        config.database,
        getattr(store, "schema", ()),
        dialect=store.dialect,
        cluster=cluster,
        replicated=config.replicated,
    )
