"""``netobs dashboards check``: every panel's SQL, rendered for a time range, run on the store.

Variable queries run first; their values are the options (what All stands for), multi-valued
variables are set to All and single-valued ones to their configured default or first value,
as a freshly opened dashboard is. Each panel then gives a :class:`Result`: its rows and
columns, or the error ClickHouse returned. Nothing stops at the first error: the report
names every broken panel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from dashboards.catalog import Query, panel_queries, variable_queries
from dashboards.render import ALL, Context, RenderError, render


@dataclass
class Result:
    query: Query
    sql: str = ""
    table: pa.Table | None = None
    error: str = ""

    @property
    def rows(self) -> int:
        return self.table.num_rows if self.table is not None else 0

    def line(self) -> str:
        head = f"{self.query.dashboard} {self.query.where}"
        if self.error:
            return f"ERROR {head}: {self.error}"
        cols = ", ".join(self.table.column_names) if self.table is not None else ""
        return f"ok    {head}: {self.rows} rows ({cols})"


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)

    @property
    def errors(self) -> list[Result]:
        return [r for r in self.results if r.error]


def _run(q: Query, ctx: Context, query: Callable[[str], pa.Table]) -> Result:
    res = Result(q)
    try:
        res.sql = render(q.sql, ctx)
        res.table = query(res.sql)
    except RenderError as e:
        res.error = f"render: {e}"
    except Exception as e:  # the store's error, reported per panel (StoreError, RemoteError, ...)
        res.error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return res


def context(
    model: dict[str, Any],
    query: Callable[[str], pa.Table],
    start: datetime,
    end: datetime,
    values: Mapping[str, Any] | None = None,
    report: Report | None = None,
) -> Context:
    """The dashboard's variables resolved as Grafana opens it (``values`` override)."""
    bare = Context(start, end)
    options: dict[str, list[str]] = {}
    for q in variable_queries(model):
        res = _run(q, bare, query)
        if report is not None:
            report.results.append(res)
        name = q.where.split(" ", 1)[1]
        table = res.table
        options[name] = (
            [str(v) for v in table.column(0).to_pylist()] if table is not None and table.num_columns else []
        )
    chosen: dict[str, Any] = {}
    for var in model["templating"]["list"]:
        name = var["name"]
        current = (var.get("current") or {}).get("value")
        if var.get("multi"):
            chosen[name] = ALL
        elif current not in (None, "", ALL, [ALL]):
            chosen[name] = current
        else:
            chosen[name] = options.get(name, [""])[0] if options.get(name) else ""
    chosen.update(values or {})
    return Context(start, end, variables=chosen, options=options)


def check(
    models: Mapping[str, dict[str, Any]],
    query: Callable[[str], pa.Table],
    start: datetime,
    end: datetime,
    values: Mapping[str, Any] | None = None,
) -> Report:
    """Run every variable and panel query of ``models`` for [start, end]."""
    report = Report()
    for model in models.values():
        ctx = context(model, query, start, end, values, report)
        report.results.extend(_run(q, ctx, query) for q in panel_queries(model))
    return report


__all__ = ["Report", "Result", "check", "context"]
