"""Small builders of the Grafana dashboard JSON model (schemaVersion 39) for the ClickHouse plugin.

Plain dicts, no SDK: the model is what Grafana stores and what the tests check. Panels are
laid out left to right in rows of 24 grid units by :class:`Dashboard`, so ``gridPos`` never
overlaps and ids are unique by construction. Every target is a raw-SQL query of the
``grafana-clickhouse-datasource`` plugin (v4): ``editorType: "sql"``, ``rawSql``, ``format``
(0 time series, 1 table, 2 logs) and the matching ``queryType``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PLUGIN = "grafana-clickhouse-datasource"
SCHEMA_VERSION = 39
#: Plugin ``format`` values and the ``queryType`` that goes with each.
FORMATS = {"timeseries": 0, "table": 1, "logs": 2}

#: Panel kinds that draw a time axis: their first column must be the time.
TIME_PANELS = frozenset({"timeseries"})


def datasource(uid: str) -> dict[str, str]:
    return {"type": PLUGIN, "uid": uid}


def target(sql: str, uid: str, fmt: str = "table", ref: str = "A") -> dict[str, Any]:
    """One raw-SQL query of the ClickHouse plugin."""
    return {
        "refId": ref,
        "datasource": datasource(uid),
        "editorType": "sql",
        "rawSql": sql,
        "format": FORMATS[fmt],
        "queryType": "timeseries" if fmt == "timeseries" else "table",
        "pluginVersion": "4.0.0",
    }


def thresholds(*steps: tuple[float, str]) -> dict[str, Any]:
    """Absolute thresholds: green from the start, then each (value, color)."""
    return {"mode": "absolute", "steps": [{"color": "green", "value": None}] + [
        {"color": color, "value": value} for value, color in steps
    ]}  # fmt: skip


def unit_override(column: str, unit: str) -> dict[str, Any]:
    """A field override giving ``column`` its own unit."""
    return {"matcher": {"id": "byName", "options": column}, "properties": [{"id": "unit", "value": unit}]}


#: Grafana's min interval of a panel computing rates from per-minute rows.
MIN_RATE_INTERVAL = "1m"


@dataclass
class Panel:
    """A panel before layout: kind, title, SQL, size and its field config."""

    kind: str  # timeseries, table, stat, piechart, bargauge
    title: str
    sql: str
    width: int = 12
    height: int = 8
    unit: str = "short"
    description: str = ""
    steps: tuple[tuple[float, str], ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fmt(self) -> str:
        return "timeseries" if self.kind in TIME_PANELS else "table"

    def to_json(self, panel_id: int, pos: dict[str, int], uid: str) -> dict[str, Any]:
        return {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "gridPos": pos,
            "datasource": datasource(uid),
            "targets": [target(self.sql, uid, self.fmt)],
            "fieldConfig": {
                "defaults": {"unit": self.unit, "thresholds": thresholds(*self.steps), "color": {
                    "mode": "thresholds" if self.steps else "palette-classic"}},
                "overrides": self.overrides,
            },
            "options": self.options,
            # Rates divide per-bucket sums by $__interval_s; rollup rows (and flow records) are per
            # minute, so a bucket below a minute would show rates many times too high, with gaps.
            **({"interval": MIN_RATE_INTERVAL} if "$__interval_s" in self.sql else {}),
        }  # fmt: skip


def query_variable(
    name: str, label: str, sql: str, uid: str, *, multi: bool = True, current: str | None = None
) -> dict[str, Any]:
    """A variable whose values come from SQL (refreshed on time range change), with All when multi."""
    var: dict[str, Any] = {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": datasource(uid),
        "query": sql,
        "definition": sql,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "options": [],
        "hide": 0,
    }
    if current is not None:
        var["current"] = {"selected": True, "text": current, "value": current}
    elif multi:
        var["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return var


@dataclass
class Dashboard:
    """A dashboard: metadata, variables and panels in reading order."""

    uid: str
    title: str
    description: str
    tags: tuple[str, ...]
    datasource_uid: str
    variables: list[dict[str, Any]] = field(default_factory=list)
    panels: list[Panel] = field(default_factory=list)
    time_from: str = "now-6h"
    refresh: str = "1m"

    def layout(self) -> list[dict[str, int]]:
        """gridPos of each panel: left to right, a new row when 24 units are used."""
        out, x, y, row_h = [], 0, 0, 0
        for p in self.panels:
            if x + p.width > 24:
                x, y, row_h = 0, y + row_h, 0
            out.append({"x": x, "y": y, "w": p.width, "h": p.height})
            x, row_h = x + p.width, max(row_h, p.height)
        return out

    def to_json(self) -> dict[str, Any]:
        panels = [p.to_json(i + 1, pos, self.datasource_uid) for i, (p, pos) in
                  enumerate(zip(self.panels, self.layout(), strict=True))]  # fmt: skip
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "timezone": "utc",
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "time": {"from": self.time_from, "to": "now"},
            "refresh": self.refresh,
            "templating": {"list": self.variables},
            "annotations": {"list": []},
            "links": [],
            "panels": panels,
        }


__all__ = [
    "FORMATS",
    "PLUGIN",
    "SCHEMA_VERSION",
    "Dashboard",
    "Panel",
    "datasource",
    "query_variable",
    "target",
    "unit_override",
]
