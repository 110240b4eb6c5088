"""The flow explorer's queries: time series, Sankey, top-N, value completion, findings and violations.

Written like the dashboards' panels (the ClickHouse plugin's macros over :mod:`dashboards.sql`
sources) and rendered by :mod:`dashboards.render`, so the explorer and Grafana read the same
rows the same way: the rollups when every column a view needs is a rollup key, else the raw
flows counted once (:data:`netobs.counting.COUNTED`, bucketed by event time) and scaled by
their sampling rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from dashboards import compliance
from dashboards.render import ALL, Context, interval_for, render
from dashboards.sql import SCALED_BYTES, SCALED_PACKETS, raw_flows, rollup
from netobs import ddl, schema

Metric = Literal["bps", "pps", "fps"]
METRICS: dict[str, str] = {"bps": "bits/s", "pps": "packets/s", "fps": "flows/s"}
#: Data points of a time series (Grafana's are 1000; fewer keep 7 days on the hourly rollup).
MAX_POINTS = 300
ROLLUP_COLUMNS = frozenset(ddl.ROLLUP_KEYS)
#: A rate over a bucket finer than the rows it sums would be wrong (a minute row in a 5 s bucket).
MIN_INTERVAL_S = 60
#: Every column a view can group or filter by: the rollup keys and every enriched text column.
DIMENSIONS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [*ddl.ROLLUP_KEYS]
        + [c.name for c in schema.FLOW_COLUMNS if c.group == "enrich" and c.ch_type.endswith("String)")]
        + [c.name for c in schema.FLOW_COLUMNS if c.group == "enrich" and c.ch_type == "String"]
        + ["src_port", "exporter_node", "exporter_center", "observer"]
    )
)
_NUMERIC = frozenset({"dst_port", "src_port", "proto"})
#: Finding entity keys → the column a link filters on.
_ENTITY_COLUMN = {
    "tenant": "src_tenant",
    "center": "src_center",
    "zone": "src_zone",
    "exporter": "exporter_node",
}


class ViewError(ValueError):
    """A view asked for something the explorer does not have (an unknown column, a bad range)."""


@dataclass(frozen=True)
class Filter:
    column: str
    values: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True)
class View:
    """What the explorer shows: a range, filters, and the dimension(s) to split by."""

    start: datetime
    end: datetime
    filters: tuple[Filter, ...] = ()
    metric: Metric = "bps"
    by: str = ""
    limit: int = 10
    points: int = MAX_POINTS
    extra: tuple[str, ...] = field(default=())  # other columns the view reads (Sankey's right side)
    #: The store's SQL dialect: ``legacy`` (a ClickHouse server before 19) has no rollups, so every
    #: view reads the raw flows there, with the macros expanded for its DateTime columns.
    dialect: str = "modern"

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ViewError("the time range is empty: 'to' must be after 'from'")
        for col in (self.by, *self.extra, *(f.column for f in self.filters)):
            if col and col not in DIMENSIONS:
                raise ViewError(f"unknown column {col!r}; known: {', '.join(DIMENSIONS)}")
        if self.metric not in METRICS:
            raise ViewError(f"unknown metric {self.metric!r}; known: {', '.join(METRICS)}")
        if not 1 <= self.limit <= 1000:
            raise ViewError("limit must be between 1 and 1000")

    @property
    def on_rollup(self) -> bool:
        cols = {self.by, *self.extra, *(f.column for f in self.filters)} - {""}
        return cols <= ROLLUP_COLUMNS and self.dialect == "modern"

    def context(self) -> Context:
        """The panel context; the interval is never finer than the minute rollup's rows."""
        interval = max(interval_for(self.start, self.end, self.points), MIN_INTERVAL_S)
        return Context(self.start, self.end, interval, dialect=self.dialect)

    def seconds(self) -> int:
        """The range's length in seconds (at least 1), what mean rates divide by."""
        return max(int((self.end - self.start).total_seconds()), 1)


def _quote(v: str) -> str:
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def where(filters: Sequence[Filter]) -> str:
    """The filters as one SQL condition (values compared as text, so ports and protocols too)."""
    parts = []
    for f in filters:
        if f.column not in DIMENSIONS:
            raise ViewError(f"unknown column {f.column!r}")
        if not f.values:
            continue
        values = ", ".join(_quote(v) for v in f.values)
        parts.append(f"toString({f.column}) {'NOT IN' if f.negate else 'IN'} ({values})")
    return " AND ".join(parts)


@dataclass(frozen=True)
class _Source:
    sql: str  # a FROM source with macros
    time: str
    bytes: str
    packets: str
    flows: str


def source(database: str, view: View) -> _Source:
    cond = where(view.filters)
    if view.on_rollup:
        return _Source(rollup(database, cond), "time", "bytes", "packets", "flows")
    return _Source(raw_flows(database, cond), "event_end", SCALED_BYTES, SCALED_PACKETS, "1")


def _measure(src: _Source, metric: Metric) -> str:
    per = {"bps": f"sum({src.bytes}) * 8", "pps": f"sum({src.packets})", "fps": f"sum({src.flows})"}
    return per[metric]


def top_sql(database: str, view: View) -> str:
    """Top ``limit`` values of ``by`` with their bytes, packets, flows and mean rates over the range."""
    src = source(database, view)
    by = f"toString({view.by})" if view.by else "'total'"
    secs = view.seconds()
    return render(
        f"SELECT {by} AS key, sum({src.bytes}) AS bytes, sum({src.packets}) AS packets, "
        f"sum({src.flows}) AS flows, bytes * 8 / {secs} AS bps, packets / {secs} AS pps, "
        f"flows / {secs} AS fps FROM {src.sql} GROUP BY key ORDER BY bytes DESC, key LIMIT {view.limit}",
        view.context(),
    )


def series_sql(database: str, view: View, keep: Sequence[str] = ()) -> str:
    """Per-interval rate of ``metric``; split by ``by`` (values outside ``keep`` as 'other')."""
    src = source(database, view)
    if view.by:
        kept = ", ".join(_quote(k) for k in keep) or "''"
        series = f"if(toString({view.by}) IN ({kept}), toString({view.by}), 'other')"
    else:
        series = "'total'"
    return render(
        f"SELECT $__timeInterval({src.time}) AS t, {series} AS series, "
        f"{_measure(src, view.metric)} / $__interval_s AS value FROM {src.sql} "
        "GROUP BY t, series ORDER BY t, series",
        view.context(),
    )


def sankey_sql(database: str, view: View, left: str, right: str) -> str:
    """Bytes from each ``left`` value to each ``right`` value over the range (largest ``limit`` links)."""
    v = replace(view, by=left, extra=(right,))
    src = source(database, v)
    return render(
        f"SELECT toString({left}) AS source, toString({right}) AS target, sum({src.bytes}) AS bytes, "
        f"sum({src.packets}) AS packets, sum({src.flows}) AS flows FROM {src.sql} "
        f"GROUP BY source, target ORDER BY bytes DESC, source, target LIMIT {view.limit}",
        v.context(),
    )


def values_sql(database: str, view: View, column: str, prefix: str = "", limit: int = 50) -> str:
    """Values of ``column`` seen in the range (starting with ``prefix``), most traffic first."""
    rest = tuple(f for f in view.filters if f.column != column)
    v = replace(view, filters=rest, metric="bps", by=column, limit=limit, extra=())
    src = source(database, v)
    low = prefix.lower()  # a prefix test every server has (startsWith came with 19.x)
    cond = f" WHERE substring(lowerUTF8(key), 1, {len(low.encode())}) = {_quote(low)}" if prefix else ""
    return render(
        f"SELECT key, bytes FROM (SELECT toString({column}) AS key, sum({src.bytes}) AS bytes FROM {src.sql} "
        f"GROUP BY key){cond} ORDER BY key = '', bytes DESC, key LIMIT {int(limit)}",
        v.context(),
    )


def findings_sql(database: str, view: View, limit: int = 100) -> str:
    """Findings in the range, newest first (the compliance dashboard's source)."""
    ctx = Context(view.start, view.end, 60, {"severity": ALL})
    return render(
        "SELECT id, detector, severity, score, window_start, window_end, entities, summary "
        f"FROM {compliance._findings(database)} ORDER BY window_start DESC LIMIT {int(limit)}",
        ctx,
    )


VIOLATION_ENTITIES = tuple(
    f"{end}_{a}"
    for end in ("src", "dst")
    for a in ("tenant", "namespace", "workload", "zone", "center", "site")
)


def violations_sql(database: str, view: View, limit: int = 100) -> str:
    """Open policy violations in the range, the latest traffic first (the compliance dashboard's
    source). ``first_seen`` .. ``last_seen`` is when the violating flows happened; the evaluation
    window (``window_start`` .. ``window_end``) only says which run found them."""
    ctx = Context(view.start, view.end, 60, {"policy": ALL, "severity": ALL})
    cols = ", ".join(VIOLATION_ENTITIES)
    return render(
        f"SELECT id, policy, rule, severity, window_start, window_end, first_seen, last_seen, {cols}, "
        f"bytes, flows FROM {compliance._violations(database)} ORDER BY last_seen DESC, id LIMIT {int(limit)}",
        ctx,
    )


def finding_filters(entities: dict[str, str]) -> list[dict[str, object]]:
    """The explorer filters that show a finding's traffic: its entities that name a column."""
    out: list[dict[str, object]] = []
    for key, value in sorted(entities.items()):
        col = key if key in DIMENSIONS else _ENTITY_COLUMN.get(key)
        if col and value:
            out.append({"column": col, "values": [value]})
    return out


__all__ = [
    "DIMENSIONS",
    "METRICS",
    "Filter",
    "View",
    "ViewError",
    "finding_filters",
    "findings_sql",
    "sankey_sql",
    "series_sql",
    "top_sql",
    "values_sql",
    "violations_sql",
    "where",
]
