"""What every store offers, and the schema convergence they share."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import pyarrow as pa

from netobs import counter_rates, ddl
from netobs.config import StoreConfig

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """The store refused a statement (bad SQL, schema drift, ...): retrying will not help."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now; the caller keeps the data and retries later."""


class Store(Protocol):
    dialect: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def insert(self, table: pa.Table, token: str | None = None, target: str = ddl.FLOWS) -> None: ...
    def query_arrow(self, sql: str) -> pa.Table: ...
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
) -> list[str]:
    """Bring a live database to the schema, idempotently; returns the statements run.

    The tables of :data:`netobs.ddl.TABLES` (flows, interface counters) exist in every
    dialect and layout. Rollups and the exporter-health table (materialized views) exist in
    the modern dialect only; ``rollup_retention`` maps a :class:`netobs.ddl.Rollup`'s
    ``retention`` field name to its TTL in days.
    """
    days = {ddl.FLOWS: retention_days, ddl.INTERFACE_COUNTERS: counters_retention_days}
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
        for rollup in ddl.ROLLUPS:
            rollups += ddl.create_rollup(
                database, rollup, retention_days=ttl.get(rollup.retention, 0), cluster=cluster
            )
        rollups.append(counter_rates.create_view(database, cluster))
        for stmt in rollups:
            execute(stmt)
    return ran + alters + rollups


def converge_store(store: Any, config: StoreConfig) -> list[str]:
    """:func:`converge` with a store's own ``execute``/``_columns_of`` and the config's TTLs."""
    return converge(
        store.execute,
        store._columns_of,
        config.database,
        retention_days=config.retention_days,
        dialect=store.dialect,
        cluster=config.clickhouse.cluster if config.type == "clickhouse" else None,
        replicated=config.replicated,
        rollup_retention={r.retention: getattr(config, r.retention) for r in ddl.ROLLUPS},
        counters_retention_days=getattr(config, ddl.COUNTERS_TABLE.retention),
    )
