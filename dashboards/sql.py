"""SQL fragments shared by the dashboards, written with the ClickHouse plugin's macros.

Traffic panels read the rollups and pick one by the panel's interval: ``flows_1m`` while a
bucket is shorter than an hour, ``flows_1h`` from there on (both halves of a UNION ALL carry
the condition, ClickHouse drops the constant-false one at once). Rollups are
SummingMergeTree tables, so every read sums again. Raw ``flows`` reads scale by the sampling
rate, sum only the records the counting model counts and bucket by the flow's own time
(``event_end``), like the rollups (:mod:`netobs.counting`).
"""

from __future__ import annotations

from netobs import counting, ddl

#: From this bucket length (seconds) on, traffic panels read the hourly rollup.
HOURLY_FROM_S = 3600
#: Bytes and packets of a raw flow, scaled by its sampling rate (0: unknown, counted once).
SCALE = "if(sampling_rate = 0, 1, sampling_rate)"
SCALED_BYTES = f"bytes * {SCALE}"
SCALED_PACKETS = f"packets * {SCALE}"
#: Per-second rate of a per-bucket sum.
BPS = "sum(bytes) * 8 / $__interval_s"
PPS = "sum(packets) / $__interval_s"


def table(database: str, name: str) -> str:
    return f"`{database}`.`{name}`"


def rollup(database: str, where: str = "") -> str:
    """A FROM source of rollup rows in the time range (1-minute or 1-hour by ``$__interval_s``)."""
    extra = f" AND ({where})" if where else ""
    minute = (
        f"SELECT * FROM {table(database, 'flows_1m')} WHERE $__interval_s < {HOURLY_FROM_S} "
        f"AND $__timeFilter(time){extra}"
    )
    hour = (
        f"SELECT * FROM {table(database, 'flows_1h')} WHERE $__interval_s >= {HOURLY_FROM_S} "
        f"AND time >= toStartOfHour($__fromTime) AND time <= $__toTime{extra}"
    )
    return f"(\n  {minute}\n  UNION ALL\n  {hour}\n)"


def raw_flows(database: str, where: str = "") -> str:
    """A FROM source of raw flows in the time range, each flow counted once."""
    extra = f" AND ({where})" if where else ""
    return (
        f"(SELECT * FROM {table(database, ddl.FLOWS)} WHERE $__timeFilter_ms({counting.EVENT_TIME}) "
        f"AND {counting.COUNTED}{extra})"
    )


def any_of(var: str, *columns: str) -> str:
    """``$__conditionalAll`` over ``columns`` (OR): true when ``$var`` is All."""
    cond = " OR ".join(f"{c} IN (${{{var}:singlequote}})" for c in columns)
    return f"$__conditionalAll(({cond}), ${var})"


def names(database: str, columns: tuple[str, ...], source: str = "flows_1h") -> str:
    """Variable query: the distinct non-empty values of ``columns`` in the rollup over the range."""
    union = " UNION ALL ".join(
        f"SELECT {c} AS v FROM {table(database, source)} "
        f"WHERE time >= toStartOfHour($__fromTime) AND time <= $__toTime"
        for c in columns
    )
    return f"SELECT DISTINCT v FROM ({union}) WHERE v != '' ORDER BY v"


def exporter_name(column: str = "exporter") -> str:
    """An exporter address as people write it (IPv4 without the ::ffff: prefix)."""
    return f"replaceRegexpOne(toString({column}), '^::ffff:', '')"


__all__ = [
    "BPS",
    "HOURLY_FROM_S",
    "PPS",
    "SCALED_BYTES",
    "SCALED_PACKETS",
    "any_of",
    "exporter_name",
    "names",
    "raw_flows",
    "rollup",
    "table",
]
