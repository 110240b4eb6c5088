"""ClickHouse DDL generated from :mod:`netobs.schema`.

Two dialects: ``modern`` (current ClickHouse and chdb: LowCardinality, IPv6,
DateTime64, codecs, TTL) and ``legacy`` (servers before 19.x, such as Debian's 18.16,
which the driver path is tested against). Two layouts: single node (MergeTree) and
cluster (ReplicatedMergeTree ``*_local`` tables ``ON CLUSTER`` + a Distributed table).
Two tables take inserts (:data:`TABLES`): ``flows`` and ``interface_counters`` (sFlow
counter samples); rollups and exporter health are materialized views over ``flows``.

Storage decisions (see README "Design"):
- time axis is ``time_received`` (the collector's clock): partitions and TTL never
  explode on an exporter's wrong clock; flow_start stays exact for analysis;
- daily partitions; ORDER BY starts with the hour, then center and tenant pairs, so
  time-range + center/tenant queries read few granules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from netobs import counting, schema

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


@dataclass(frozen=True)
class TableSpec:
    """A table written by the pipeline: its columns and sort keys, generated per dialect."""

    name: str
    columns: tuple[schema.Column, ...]
    order_by: tuple[str, ...]
    legacy_order_by: tuple[str, ...]
    retention: str  # the StoreConfig field holding the TTL in days
    #: Parts smaller than this (uncompressed) are written compact, one file for all columns,
    #: instead of two files per column: a pipeline batch of flows (58 columns) is one such
    #: part, and merges make the large parts wide again (0: the server's default, 10 MiB).
    compact_below_bytes: int = 0


#: Raw sFlow counter samples, one row per interface and polling interval (see
#: :mod:`netobs.counter_rates` for deltas and utilisation). Sorted by interface within the
#: hour so that the per-interface window of a rate query reads in order.
INTERFACE_COUNTERS = "interface_counters"
_COUNTER_ORDER = ("exporter", "observation_domain", "if_index", "time_received")
#: About 400k enriched flows: every batch the pipeline inserts (max_batch_rows) fits.
FLOWS_COMPACT_BELOW_BYTES = 128 * 2**20
FLOWS_TABLE = TableSpec(
    FLOWS, schema.FLOW_COLUMNS, _ORDER_BY, _LEGACY_ORDER_BY, "retention_days", FLOWS_COMPACT_BELOW_BYTES
)
COUNTERS_TABLE = TableSpec(
    INTERFACE_COUNTERS,
    schema.COUNTER_COLUMNS,
    ("toStartOfHour(time_received)", *_COUNTER_ORDER),
    ("toStartOfHour(time_received)", *_COUNTER_ORDER),
    "interface_counters_retention_days",
)
#: Pod packet samples (headers only) and the L7 summary of each conversation (``netobs sample``);
#: sorted by the conversation's 5-tuple within the hour so a join with its flows reads in order.
_SAMPLE_ORDER = ("toStartOfHour(time_received)", "capture_pod", "src_addr", "dst_addr", "time_received")
SAMPLES_TABLE = TableSpec(
    schema.PACKET_SAMPLES,
    schema.SAMPLE_COLUMNS,
    _SAMPLE_ORDER,
    _SAMPLE_ORDER,
    "packet_samples_retention_days",
)
L7_TABLE = TableSpec(
    schema.L7, schema.L7_COLUMNS, _SAMPLE_ORDER, _SAMPLE_ORDER, "l7_conversations_retention_days"
)
#: Record kind (:data:`netobs.schema.KINDS`) → the table its batches are inserted into.
TABLES: dict[str, TableSpec] = {
    schema.FLOWS: FLOWS_TABLE,
    schema.COUNTERS: COUNTERS_TABLE,
    schema.PACKET_SAMPLES: SAMPLES_TABLE,
    schema.L7: L7_TABLE,
}


def create_flows(
    database: str,
    *,
    retention_days: int = 0,
    dialect: str = "modern",
    cluster: str | None = None,
    table: str = FLOWS,
    replicated: bool = False,
) -> list[str]:
    """Statements that create the flows table(s); see :func:`create_table`."""
    return create_table(
        database,
        FLOWS_TABLE,
        retention_days=retention_days,
        dialect=dialect,
        cluster=cluster,
        name=table,
        replicated=replicated,
    )


def create_table(
    database: str,
    spec: TableSpec,
    *,
    retention_days: int = 0,
    dialect: str = "modern",
    cluster: str | None = None,
    name: str | None = None,
    replicated: bool = False,
) -> list[str]:
    """Statements that create ``spec``'s table(s) (named ``name``), each idempotent (IF NOT EXISTS).

    ``replicated`` (single server with ZooKeeper, no cluster): a ReplicatedMergeTree at
    ``/clickhouse/tables/<database>/<table>``. Replicated tables drop a re-inserted block
    identical to one of the last ``replicated_deduplication_window`` blocks, which is how
    pre-19 servers (no ``insert_deduplication_token``) make a replayed batch harmless.
    """
    table = name or spec.name
    cols = _column_defs(spec.columns, dialect)
    order_by = spec.order_by if dialect == "modern" else spec.legacy_order_by
    ttl = ""
    if retention_days and dialect == "modern":
        ttl = f"\nTTL toDateTime(time_received) + INTERVAL {int(retention_days)} DAY DELETE"
    settings = ""
    compact = f", min_bytes_for_wide_part = {spec.compact_below_bytes}" if spec.compact_below_bytes else ""
    if dialect == "modern":
        # Without it a plain MergeTree ignores a repeated insert_deduplication_token (checked on chdb 26.9).
        settings = f"\nSETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000{compact}"
    part = "toDate(time_received)" if dialect == "modern" else "toYYYYMMDD(time_received)"
    if not cluster:
        engine = "MergeTree"
        if replicated:
            engine = f"ReplicatedMergeTree('{zookeeper_path(database, table)}', 'r1')"
            settings = f"\nSETTINGS index_granularity = 8192{compact}" if dialect == "modern" else ""
        return [
            f"CREATE TABLE IF NOT EXISTS `{database}`.`{table}` (\n{cols}\n)\n"
            f"ENGINE = {engine}\nPARTITION BY {part}\nORDER BY ({', '.join(order_by)}){ttl}{settings}"
        ]
    local = f"{table}_local"
    engine = f"ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{database}/{local}', '{{replica}}')"
    replicated_settings = f"\nSETTINGS index_granularity = 8192{compact}" if dialect == "modern" else ""
    return [
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{local}` ON CLUSTER '{cluster}' (\n{cols}\n)\n"
        f"ENGINE = {engine}\nPARTITION BY {part}\nORDER BY ({', '.join(order_by)}){ttl}{replicated_settings}",
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{table}` ON CLUSTER '{cluster}' "
        f"AS `{database}`.`{local}`\nENGINE = Distributed('{cluster}', '{database}', '{local}', rand())",
    ]


def zookeeper_path(database: str, table: str) -> str:
    """ZooKeeper path of a single-server replicated table."""
    return f"/clickhouse/tables/{database}/{table}"


def add_missing_columns(
    database: str,
    existing: dict[str, str],
    *,
    dialect: str = "modern",
    cluster: str | None = None,
    table: str = FLOWS,
    columns: tuple[schema.Column, ...] = schema.FLOW_COLUMNS,
) -> list[str]:
    """ALTERs that converge a live table to ``columns``: new columns, and the type changes
    that keep every value (:data:`_IN_PLACE_CHANGES`, e.g. LowCardinality(String) → String).

    ``existing`` maps column name → live type. Any other column whose live type differs is
    a change ALTER cannot do safely: it is reported, and belongs in a numbered migration.
    """
    out = []
    on = f" ON CLUSTER '{cluster}'" if cluster else ""
    targets = [f"{table}_local", table] if cluster else [table]
    previous = None
    for col in columns:
        want = column_type(col, dialect)
        have = existing.get(col.name)
        if have is None:
            after = f" AFTER `{previous}`" if previous else " FIRST"
            default = f" DEFAULT {col.backfill}" if col.backfill and dialect == "modern" else ""
            for t in targets:
                out.append(
                    f"ALTER TABLE `{database}`.`{t}`{on} ADD COLUMN IF NOT EXISTS `{col.name}` {want}"
                    f"{default}{after}"
                )
        elif (_normal(have), _normal(want)) in _IN_PLACE_CHANGES:
            for t in targets:  # rewrites the column's data in the background (a mutation)
                out.append(f"ALTER TABLE `{database}`.`{t}`{on} MODIFY COLUMN `{col.name}` {want}")
        elif _normal(have) != _normal(want):
            raise SchemaDrift(f"{table}.{col.name}: live type {have}, schema wants {want}; needs a migration")
        previous = col.name
    return out


#: Type changes that keep every value and that MODIFY COLUMN does in place.
_IN_PLACE_CHANGES = {
    ("LowCardinality(String)", "String"),
    ("String", "LowCardinality(String)"),
}


def _normal(typ: str) -> str:
    return typ.replace(" ", "").replace('"', "'")


class SchemaDrift(Exception):
    """The live table differs from the schema in a way ALTER ADD COLUMN cannot fix."""


# ---- rollups and exporter health (modern dialect) ---------------------------------------------
# Counting: every rollup of traffic sums the records the counting model counts
# (:mod:`netobs.counting`: one observation per packet, whatever the exporters' conventions).
# Raw flows keep every record. Time: traffic rollups bucket by the flow's own time (its
# [start, end], sanitized), spread over the minutes it spans in proportion to the overlap, not
# by the collector's receive time. Measure expressions name source columns as ``f.<column>``:
# the measures reuse column names (bytes, packets) as aliases, and an unqualified name would
# resolve to the alias.
ROLLUP_WHERE = counting.COUNTED
#: Bumped when a rollup's definition changes: converge drops and rebuilds older rollups from
#: the raw flows (they are derived data). Kept in the rollup table's COMMENT.
ROLLUP_VERSION = 2

#: Dimensions of the traffic rollups: center pair × tenant pair × zone pair × service × type/direction
#: × who opened the conversation (``initiator``: replies are told apart from requests).
ROLLUP_KEYS: tuple[str, ...] = (
    "src_center",
    "dst_center",
    "src_tenant",
    "dst_tenant",
    "src_zone",
    "dst_zone",
    "dst_port",
    "proto",
    "type",
    "direction",
    "initiator",
)
#: Dimensions of the planes and QoS rollup (the *Planes and QoS* dashboard), plus ``dscp`` (tos >> 2).
PLANES_QOS_KEYS: tuple[str, ...] = ("src_plane", "dst_plane", "src_tenant", "dst_port", "proto")
_SCALE = "if(f.sampling_rate = 0, 1, f.sampling_rate)"  # an unknown rate (0) counts as 1 in 1
#: Event-time spreading: ``_w`` is the share of a record's span that falls in the bucket.
_EVENT_WITH = (
    "toUnixTimestamp64Milli(f.event_end) AS _ee,\n    toUnixTimestamp64Milli(f.event_start) AS _es,\n"
    "    if(_ee > _es, intDiv(_ee - 1, 60000), intDiv(_ee, 60000)) AS _last"
)
_EVENT_JOIN = "ARRAY JOIN range(toUInt64(intDiv(_es, 60000)), toUInt64(_last) + 1) AS _m"
_EVENT_W = "if(_ee > _es, (least(_ee, (_m + 1) * 60000) - greatest(_es, _m * 60000)) / (_ee - _es), 1)"
_TRAFFIC_MEASURES = (
    ("bytes", "Float64", f"sum(f.bytes * {_SCALE} * _w)", "Bytes scaled by the sampling rate."),
    ("packets", "Float64", f"sum(f.packets * {_SCALE} * _w)", "Packets scaled by the sampling rate."),
    ("raw_bytes", "Float64", "sum(f.bytes * _w)", "Bytes as exported (unscaled)."),
    ("raw_packets", "Float64", "sum(f.packets * _w)", "Packets as exported (unscaled)."),
    ("flows", "Float64", "sum(_w)", "Counted flow records (a record spread over buckets counts in shares)."),
)
#: The same measures without event-time spreading: each record counts whole in its end's bucket.
_END_MEASURES = tuple(
    (n, t, e.replace(" * _w", "").replace("sum(_w)", "count()"), d) for n, t, e, d in _TRAFFIC_MEASURES
)
_TS3 = "DateTime64(3, 'UTC')"
_HEALTH_MEASURES = (
    ("flows", "SimpleAggregateFunction(sum, UInt64)", "count()", "Flow records received."),
    (
        "sampling_rates",
        "SimpleAggregateFunction(groupUniqArrayArray, Array(UInt32))",
        "groupUniqArray(f.sampling_rate)",
        "Sampling rates seen.",
    ),
    ("first_seen", f"SimpleAggregateFunction(min, {_TS3})", "min(f.time_received)", "First record."),
    ("last_seen", f"SimpleAggregateFunction(max, {_TS3})", "max(f.time_received)", "Last record."),
)
#: Honest coverage: every record received, by what the counting model did with it and whether
#: either end has a name (a pod, a node or a named network).
NAMED = counting.NAMED
_COVERAGE_MEASURES = (
    ("flows", "UInt64", "count()", "Flow records received."),
    ("bytes", "UInt64", f"sum(f.bytes * {_SCALE})", "Bytes scaled by the sampling rate."),
)


@dataclass(frozen=True)
class Rollup:
    """A table fed from ``flows`` by a materialized view, generated from the schema."""

    table: str
    bucket: str  # ClickHouse function truncating the time axis
    keys: tuple[str, ...]
    measures: tuple[tuple[str, str, str, str], ...]  # name, type, aggregate expression, doc
    engine: str
    retention: str  # the StoreConfig field holding the TTL in days
    where: str = ""
    source: str = FLOWS  # the table whose inserts feed the view
    time_of: str = "toDateTime(time_received, 'UTC')"  # the source's time axis, as a DateTime
    #: Spread each record over the minutes of its event time (traffic rollups fed from ``flows``).
    event_time: bool = False
    #: Keys computed from the source: (name, ClickHouse type, expression).
    computed: tuple[tuple[str, str, str], ...] = ()


#: The hourly traffic rollup is fed from the 1-minute one (a chained view), not from ``flows``:
#: it aggregates the minute rows of each insert instead of every flow again (about 10% less
#: insert CPU with three views). Sums of sums are the same sums, and ``flows`` counts add up.
_ROLLED_UP_MEASURES = tuple((n, t, f"sum(f.{n})", doc) for n, t, _, doc in _TRAFFIC_MEASURES)

ROLLUPS: tuple[Rollup, ...] = (
    Rollup("flows_1m", "toStartOfMinute", ROLLUP_KEYS, _TRAFFIC_MEASURES, "SummingMergeTree",
           "rollup_1m_retention_days", ROLLUP_WHERE, time_of="toDateTime(intDiv(_m * 60000, 1000), 'UTC')",
           event_time=True),
    Rollup("flows_1h", "toStartOfHour", ROLLUP_KEYS, _ROLLED_UP_MEASURES, "SummingMergeTree",
           "rollup_1h_retention_days", source="flows_1m", time_of="f.time"),
    Rollup("exporter_health_1m", "toStartOfMinute", ("exporter", "type", "observation_domain"),
           _HEALTH_MEASURES, "AggregatingMergeTree", "exporter_health_retention_days"),
    # Planes and DSCP (issue 20) apart from flows_1m: its keys and its rows stay as they were. By
    # the minute of the record's event end, not spread (a second ARRAY JOIN per insert cost 40 %).
    Rollup("planes_qos_1m", "toStartOfMinute", PLANES_QOS_KEYS, _END_MEASURES, "SummingMergeTree",
           "rollup_1m_retention_days", ROLLUP_WHERE, time_of="toDateTime(f.event_end, 'UTC')",
           computed=(("dscp", "UInt8", "bitShiftRight(f.tos, 2)"),)),
    Rollup("counting_1m", "toStartOfMinute", ("exporter", "type", "observer", "count_reason", "counted"),
           _COVERAGE_MEASURES, "SummingMergeTree", "exporter_health_retention_days",
           computed=(("named", "UInt8", NAMED),)),
)  # fmt: skip


def create_rollup(
    database: str, rollup: Rollup, *, retention_days: int = 0, cluster: str | None = None
) -> list[str]:
    """The rollup's target table(s) and its materialized view, each idempotent (modern dialect)."""
    db, on = f"`{database}`", f" ON CLUSTER '{cluster}'" if cluster else ""
    keys = rollup.keys + tuple(n for n, _, _ in rollup.computed)
    cols = ["    `time` DateTime('UTC') COMMENT 'Start of the bucket.'"]
    cols += [f"    `{k}` {schema.BY_NAME[k].ch_type}" for k in rollup.keys]
    cols += [f"    `{n}` {t}" for n, t, _ in rollup.computed]
    cols += [f"    `{n}` {t} COMMENT '{doc}'" for n, t, _, doc in rollup.measures]
    local, source = rollup.table, rollup.source
    settings = "\nSETTINGS non_replicated_deduplication_window = 1000"
    args = []
    if cluster:
        local, source, settings = f"{rollup.table}_local", f"{rollup.source}_local", ""
        args = [f"'/clickhouse/tables/{{shard}}/{database}/{local}'", "'{replica}'"]
    if rollup.engine == "SummingMergeTree":
        args.append("(" + ", ".join(n for n, *_ in rollup.measures) + ")")
    engine = ("Replicated" if cluster else "") + rollup.engine + (f"({', '.join(args)})" if args else "")
    ttl = f"\nTTL time + INTERVAL {int(retention_days)} DAY DELETE" if retention_days else ""
    out = [
        f"CREATE TABLE IF NOT EXISTS {db}.`{local}`{on} (\n" + ",\n".join(cols) + "\n)\n"
        f"ENGINE = {engine}\nPARTITION BY toYYYYMM(time)\n"
        f"ORDER BY (time, {', '.join(keys)}){ttl}{settings}\nCOMMENT '{rollup_comment()}'"
    ]
    if cluster:
        out.append(
            f"CREATE TABLE IF NOT EXISTS {db}.`{rollup.table}`{on} AS {db}.`{local}`\n"
            f"ENGINE = Distributed('{cluster}', '{database}', '{local}', rand())"
        )
    out.append(
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.`{rollup.table}_mv`{on} TO {db}.`{local}` AS\n"
        + rollup_select(database, rollup, source)
    )
    return out


def rollup_select(database: str, rollup: Rollup, source: str | None = None) -> str:
    """The SELECT that feeds ``rollup`` from ``source`` (its view's query; also used to rebuild it)."""
    db = f"`{database}`"
    keys = rollup.keys + tuple(n for n, _, _ in rollup.computed)
    where = f"\nWHERE {rollup.where}" if rollup.where else ""
    aggs = ",\n    ".join(f"{expr} AS `{n}`" for n, _, expr, _ in rollup.measures)
    with_, join = "", ""
    if rollup.event_time:
        with_ = f"WITH\n    {_EVENT_WITH},\n    {_EVENT_W} AS _w\n"
        join = f"\n{_EVENT_JOIN}"
    computed = "".join(f",\n    {expr} AS `{n}`" for n, _, expr in rollup.computed)
    return (
        f"{with_}SELECT\n    {rollup.bucket}({rollup.time_of}) AS `time`,\n    "
        + ",\n    ".join(f"`{k}`" for k in rollup.keys)
        + f"{computed},\n    {aggs}\nFROM {db}.`{source or rollup.source}` AS f{join}{where}\n"
        f"GROUP BY time, {', '.join(keys)}"
    )


def rollup_comment() -> str:
    return f"netobs rollup v{ROLLUP_VERSION}"
