"""ClickHouse DDL generated from :mod:`netobs.schema`.

Two dialects: ``modern`` (current ClickHouse and chdb: LowCardinality, IPv6,
DateTime64, codecs, TTL) and ``legacy`` (servers before 19.x, such as Debian's 18.16,
which the driver path is tested against). Two layouts: single node (MergeTree) and
cluster (ReplicatedMergeTree ``*_local`` tables ``ON CLUSTER`` + a Distributed table).

Storage decisions (see README "Design"):
- time axis is ``time_received`` (the collector's clock): partitions and TTL never
  explode on an exporter's wrong clock; flow_start stays exact for analysis;
- daily partitions; ORDER BY starts with the hour, then center and tenant pairs, so
  time-range + center/tenant queries read few granules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from netobs import schema

FLOWS = "flows"

_ORDER_BY = (
    "toStartOfHour(time_received)",
    "src_center",
    "dst_center",
    "src_tenant",
    "dst_tenant",
    "exporter",
    "time_received",
)
_LEGACY_ORDER_BY = ("toStartOfHour(time_received)", "exporter", "time_received")

_LEGACY_TYPES = (
    (re.compile(r"^LowCardinality\((.*)\)$"), r"\1"),
    (re.compile(r"^DateTime64\(3(, '[^']*')?\)$"), "DateTime"),
    (re.compile(r"^IPv6$"), "FixedString(16)"),
    (re.compile(r"^IPv4$"), "UInt32"),
)


def column_type(col: schema.Column, dialect: str = "modern") -> str:
    """The ClickHouse type of ``col`` in ``dialect``."""
    if dialect == "modern":
        return col.ch_type
    typ = col.ch_type
    for pattern, repl in _LEGACY_TYPES:
        typ = pattern.sub(repl, typ)
    return typ


def _column_defs(columns: Iterable[schema.Column], dialect: str) -> str:
    defs = []
    for c in columns:
        codec = f" CODEC({c.codec})" if c.codec and dialect == "modern" else ""
        comment = " COMMENT '" + c.doc.replace("'", "\\'") + "'" if dialect == "modern" else ""
        defs.append(f"    `{c.name}` {column_type(c, dialect)}{codec}{comment}")
    return ",\n".join(defs)


def create_database(database: str, cluster: str | None = None) -> str:
    on = f" ON CLUSTER '{cluster}'" if cluster else ""
    return f"CREATE DATABASE IF NOT EXISTS `{database}`{on}"


def create_flows(
    database: str,
    *,
    retention_days: int = 0,
    dialect: str = "modern",
    cluster: str | None = None,
    table: str = FLOWS,
) -> list[str]:
    """Statements that create the flows table(s), each idempotent (IF NOT EXISTS)."""
    cols = _column_defs(schema.FLOW_COLUMNS, dialect)
    order_by = _ORDER_BY if dialect == "modern" else _LEGACY_ORDER_BY
    ttl = ""
    if retention_days and dialect == "modern":
        ttl = f"\nTTL toDateTime(time_received) + INTERVAL {int(retention_days)} DAY DELETE"
    settings = ""
    if dialect == "modern":
        # Needed for insert_deduplication_token on a non-replicated MergeTree (PEERS.md).
        settings = "\nSETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000"
    part = "toDate(time_received)" if dialect == "modern" else "toYYYYMMDD(time_received)"
    if not cluster:
        return [
            f"CREATE TABLE IF NOT EXISTS `{database}`.`{table}` (\n{cols}\n)\n"
            f"ENGINE = MergeTree\nPARTITION BY {part}\nORDER BY ({', '.join(order_by)}){ttl}{settings}"
        ]
    local = f"{table}_local"
    engine = f"ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{database}/{local}', '{{replica}}')"
    replicated_settings = "\nSETTINGS index_granularity = 8192" if dialect == "modern" else ""
    return [
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{local}` ON CLUSTER '{cluster}' (\n{cols}\n)\n"
        f"ENGINE = {engine}\nPARTITION BY {part}\nORDER BY ({', '.join(order_by)}){ttl}{replicated_settings}",
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{table}` ON CLUSTER '{cluster}' "
        f"AS `{database}`.`{local}`\nENGINE = Distributed('{cluster}', '{database}', '{local}', rand())",
    ]


def add_missing_columns(
    database: str,
    existing: dict[str, str],
    *,
    dialect: str = "modern",
    cluster: str | None = None,
    table: str = FLOWS,
) -> list[str]:
    """ALTERs that converge a live table to the schema (new columns only).

    ``existing`` maps column name → live type. A column whose live type differs is a
    change ALTER ADD cannot express: it is reported, and belongs in a numbered migration.
    """
    out = []
    on = f" ON CLUSTER '{cluster}'" if cluster else ""
    targets = [f"{table}_local", table] if cluster else [table]
    previous = None
    for col in schema.FLOW_COLUMNS:
        want = column_type(col, dialect)
        have = existing.get(col.name)
        if have is None:
            after = f" AFTER `{previous}`" if previous else " FIRST"
            for t in targets:
                out.append(
                    f"ALTER TABLE `{database}`.`{t}`{on} ADD COLUMN IF NOT EXISTS `{col.name}` {want}{after}"
                )
        elif _normal(have) != _normal(want):
            raise SchemaDrift(f"column {col.name}: live type {have}, schema wants {want}; needs a migration")
        previous = col.name
    return out


def _normal(typ: str) -> str:
    return typ.replace(" ", "").replace('"', "'")


class SchemaDrift(Exception):
    """The live table differs from the schema in a way ALTER ADD COLUMN cannot fix."""


def insert_columns() -> list[str]:
    """The insert column list, in schema order."""
    return list(schema.COLUMN_NAMES)
