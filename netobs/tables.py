"""Tables as code: one declaration per table, from which every layout's DDL is generated.

A component declares each table it writes as a :class:`Table` (columns, engine, sort key,
partitioning, TTL) in its own package, once; the composition root lists them all
(``netobs_app.components``). The flow, counter and rollup tables have their own generators
in :mod:`netobs.ddl`, built on the flow schema.

Layouts: a single node (``MergeTree`` / ``ReplacingMergeTree``), a single server with
ZooKeeper (``replicated``: the ``Replicated*`` engine at ``/clickhouse/tables/<db>/<table>``)
and a cluster (``Replicated*`` ``<table>_local`` tables ``ON CLUSTER`` and a ``Distributed``
table over them, sharded by ``shard_by``). Every statement is idempotent (IF NOT EXISTS).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from netobs.ddl import zookeeper_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    comment: str = ""

    def definition(self) -> str:
        comment = f" COMMENT '{self.comment}'" if self.comment else ""
        return f"    `{self.name}` {self.type}{comment}"


@dataclass(frozen=True)
class Table:
    """One table: what it holds and how it is sorted, whatever the layout."""

    name: str
    columns: tuple[Column, ...]
    order_by: tuple[str, ...]
    #: ``ReplacingMergeTree(version)`` when set: the row with the highest version wins.
    version: str | None = None
    partition_by: str | None = None
    #: TTL expression without its interval, e.g. ``toDateTime(intDiv(updated_ms, 1000))``.
    ttl: str | None = None
    #: Sharding key of the cluster layout's Distributed table.
    shard_by: str = "rand()"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def engine(self, replication: str = "") -> str:
        """The engine clause; ``replication`` holds the Replicated engine's path and replica."""
        kind = "ReplacingMergeTree" if self.version else "MergeTree"
        args = [a for a in (replication, self.version or "") if a]
        if replication:
            return f"Replicated{kind}({', '.join(args)})"
        return f"{kind}({self.version})" if self.version else kind

    def create(
        self,
        database: str,
        *,
        cluster: str | None = None,
        replicated: bool = False,
        retention_days: int | None = None,
    ) -> list[str]:
        """The statements that create this table in the layout asked for.

        ``retention_days`` applies the TTL (a table with a ``ttl`` expression needs it).
        """
        if self.ttl is not None and retention_days is None:
            raise ValueError(f"table {self.name} has a TTL: give retention_days")
        if not cluster:
            replication = f"'{zookeeper_path(database, self.name)}', 'r1'" if replicated else ""
            return [self._create(database, self.name, "", self.engine(replication), retention_days)]
        local, on = f"{self.name}_local", f" ON CLUSTER '{cluster}'"
        replication = f"'/clickhouse/tables/{{shard}}/{database}/{local}', '{{replica}}'"
        return [
            self._create(database, local, on, self.engine(replication), retention_days),
            f"CREATE TABLE IF NOT EXISTS `{database}`.`{self.name}`{on} AS `{database}`.`{local}`\n"
            f"ENGINE = Distributed('{cluster}', '{database}', '{local}', {self.shard_by})",
        ]

    def _create(self, database: str, name: str, on: str, engine: str, retention_days: int | None) -> str:
        columns = ",\n".join(c.definition() for c in self.columns)
        order = self.order_by[0] if len(self.order_by) == 1 else f"({', '.join(self.order_by)})"
        partition = f"\nPARTITION BY {self.partition_by}" if self.partition_by else ""
        ttl = f"\nTTL {self.ttl} + INTERVAL {int(retention_days or 0)} DAY" if self.ttl else ""
        return (
            f"CREATE TABLE IF NOT EXISTS `{database}`.`{name}`{on} (\n{columns}\n)\n"
            f"ENGINE = {engine}{partition}\nORDER BY {order}{ttl}"
        )


@dataclass(frozen=True)
class View:
    """A plain view over declared tables; ``select`` names the database as ``{db}``."""

    name: str
    select: str

    def create(
        self,
        database: str,
        *,
        cluster: str | None = None,
        replicated: bool = False,
        retention_days: int | None = None,
    ) -> list[str]:
        on = f" ON CLUSTER '{cluster}'" if cluster else ""
        body = self.select.format(db=f"`{database}`")
        return [f"CREATE VIEW IF NOT EXISTS `{database}`.`{self.name}`{on} AS {body}"]


@dataclass(frozen=True)
class Declared:
    """A table or view as the composition root hands it to a store: with its retention."""

    item: Table | View
    retention_days: int | None = None

    @property
    def name(self) -> str:
        return self.item.name


def converge(
    execute: Callable[[str], None],
    database: str,
    declared: Iterable[Declared],
    *,
    dialect: str,
    cluster: str | None = None,
    replicated: bool = False,
) -> list[str]:
    """Create every declared table and view that is missing (idempotent); the statements run.

    The component tables use the modern types (DateTime64, LowCardinality): on a legacy server
    (ClickHouse before 19) they are not created, and the components that need them say so.
    """
    declared = list(declared)
    if not declared:
        return []
    if dialect != "modern":
        log.info("schema: %d component tables need ClickHouse 19 or later; not created", len(declared))
        return []
    ran: list[str] = []
    for d in declared:
        for stmt in d.item.create(
            database,
            cluster=cluster,
            replicated=replicated and not cluster,
            retention_days=d.retention_days,
        ):
            execute(stmt)
            ran.append(stmt)
    return ran


__all__ = ["Column", "Declared", "Table", "View", "converge"]
