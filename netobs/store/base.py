"""What every store offers, and the schema convergence they share."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import pyarrow as pa

from netobs import ddl

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
) -> list[str]:
    """Bring a live database to the schema, idempotently; returns the statements run."""
    ran = [ddl.create_database(database, cluster)]
    ran += ddl.create_flows(database, retention_days=retention_days, dialect=dialect, cluster=cluster)
    for stmt in ran:
        execute(stmt)
    alters = ddl.add_missing_columns(database, columns_of(ddl.FLOWS), dialect=dialect, cluster=cluster)
    for stmt in alters:
        log.info("schema: %s", stmt)
        execute(stmt)
    return ran + alters
