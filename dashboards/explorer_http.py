"""The flow explorer's HTTP side: the page, its vendored chart library, and a JSON API.

Routes under ``/explorer/`` of the control endpoint (added by the composition root, behind
its one authentication hook). Every answer is read through ``query`` (the store's
``query_arrow``), from the SQL of :mod:`dashboards.explorer`; an empty range or a fresh store
answers empty lists (the page shows "no data"), an unknown column or a bad range a 400.
"""

from __future__ import annotations

import datetime as dt
import json
import mimetypes
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import pyarrow as pa

from dashboards import explorer as ex
from netobs.control import Request, Response, Route
from netobs.queryservice import QueryService
from netobs.sqlguard import Refused

PREFIX = "/explorer"
#: IANA protocol numbers the page names.
PROTOCOLS = {
    1: "icmp",
    2: "igmp",
    6: "tcp",
    17: "udp",
    47: "gre",
    50: "esp",
    58: "icmpv6",
    89: "ospf",
    132: "sctp",
}
#: Service names of common ports (IANA's, as /etc/services has them; kept here so names do not
#: depend on the host).
PORTS = {
    22: "ssh", 25: "smtp", 53: "domain", 80: "http", 88: "kerberos", 123: "ntp", 179: "bgp", 389: "ldap",
    443: "https", 445: "microsoft-ds", 636: "ldaps", 1433: "ms-sql-s", 1521: "oracle", 2379: "etcd-client",
    3306: "mysql", 5432: "postgresql", 5672: "amqp", 6379: "redis", 6443: "kube-apiserver", 8080: "http-alt",
    8443: "https-alt", 9092: "kafka", 9200: "elasticsearch", 11211: "memcache", 27017: "mongodb",
}  # fmt: skip
DEFAULT_RANGE_S = 3600
#: An event's "traffic" link opens the time its traffic happened, this much either side.
EVENT_PAD = dt.timedelta(minutes=5)
LEGACY_NOTE = (
    "this ClickHouse server is older than 19.x: it has no rollups, so every view reads the raw flows "
    "(slower over long ranges)"
)
EVENTS_UNSUPPORTED = (
    "findings and violations need ClickHouse 19 or later: this server is older, and netobs keeps no "
    "findings or violations tables on it"
)
MAX_RANGE_DAYS = 400


def label(column: str, value: str) -> str:
    """A value as a person reads it: protocol and port names next to the numbers."""
    if column == "proto" and value.isdigit():
        name = PROTOCOLS.get(int(value))
        return f"{name} ({value})" if name else value
    if column in ("dst_port", "src_port") and value.isdigit():
        name = PORTS.get(int(value))
        return f"{value} {name}" if name else value
    return value if value != "" else "(none)"


def _time(text: str | None, default: dt.datetime) -> dt.datetime:
    if not text:
        return default
    try:
        if text.lstrip("-").isdigit():
            return dt.datetime.fromtimestamp(int(text) / 1000, dt.UTC)
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise ex.ViewError(f"cannot read the time {text!r}: epoch milliseconds or ISO 8601") from None


def view_of(params: Mapping[str, str], now: dt.datetime | None = None, dialect: str = "modern") -> ex.View:
    """The View a request's parameters describe (from, to, metric, by, limit, filters as JSON)."""
    now = now or dt.datetime.now(dt.UTC)
    end = _time(params.get("to"), now)
    start = _time(params.get("from"), end - dt.timedelta(seconds=DEFAULT_RANGE_S))
    if end - start > dt.timedelta(days=MAX_RANGE_DAYS):
        raise ex.ViewError(f"the time range is longer than {MAX_RANGE_DAYS} days")
    try:
        raw = json.loads(params.get("filters") or "[]")
        filters = tuple(
            ex.Filter(str(f["column"]), tuple(str(v) for v in f.get("values", ())), bool(f.get("negate")))
            for f in raw
        )
        limit = int(params.get("limit") or 10)
    except (ValueError, TypeError, KeyError) as e:
        raise ex.ViewError(f"bad parameter: {e}") from None
    metric = params.get("metric") or "bps"
    return ex.View(start, end, filters, metric, params.get("by") or "", limit, dialect=dialect)  # type: ignore[arg-type]


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows, with every time column as an aware datetime (the engine may hand DateTime over as epoch seconds)."""
    rows = table.to_pylist()
    times = [f.name for f in table.schema if pa.types.is_timestamp(f.type) or f.name in _TIME_COLUMNS]
    for r in rows:
        for name in times:
            r[name] = _when(r[name])
    return rows


#: Columns the explorer's queries name that hold times.
_TIME_COLUMNS = frozenset({"t", "window_start", "window_end", "first_seen", "last_seen"})


def _when(v: Any) -> dt.datetime | None:
    if v is None or isinstance(v, dt.datetime):
        return v if v is None or v.tzinfo else v.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(float(v), dt.UTC)


def _around(
    start: dt.datetime | None, end: dt.datetime | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The range an event's "traffic" link opens: its own times, padded by :data:`EVENT_PAD`."""
    if start is None or end is None:
        return None, None
    return start - EVENT_PAD, max(end, start) + EVENT_PAD


def _json(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data, default=_default).encode(), "application/json")


def _default(o: Any) -> Any:
    if isinstance(o, dt.datetime):
        return o.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(o, bytes):
        return o.hex()
    return str(o)


class ExplorerApi:
    """The JSON answers of ``/explorer/api/<name>``."""

    def __init__(self, query: Callable[[str], pa.Table], database: str, dialect: str = "modern"):
        self.query = query
        self.database = database
        self.dialect = dialect

    def _view(self, params: Mapping[str, str]) -> ex.View:
        return view_of(params, dialect=self.dialect)

    def meta(self, _: Mapping[str, str]) -> dict[str, Any]:
        legacy = self.dialect != "modern"
        return {
            "dimensions": list(ex.DIMENSIONS),
            "rollup_dimensions": [] if legacy else sorted(ex.ROLLUP_COLUMNS),
            "metrics": ex.METRICS,
            "database": self.database,
            "dialect": self.dialect,
            "notes": [LEGACY_NOTE] if legacy else [],
            "now": dt.datetime.now(dt.UTC),
        }

    def top(self, params: Mapping[str, str]) -> dict[str, Any]:
        view = self._view(params)
        rows = _rows(self.query(ex.top_sql(self.database, view)))
        for r in rows:
            r["label"] = label(view.by, r["key"])
        return {"by": view.by, "rows": rows, "source": "rollup" if view.on_rollup else "flows"}

    def series(self, params: Mapping[str, str]) -> dict[str, Any]:
        view = self._view(params)
        keep = [r["key"] for r in _rows(self.query(ex.top_sql(self.database, view)))] if view.by else []
        rows = _rows(self.query(ex.series_sql(self.database, view, keep)))
        times = sorted({r["t"] for r in rows})
        at = {t: i for i, t in enumerate(times)}
        names = [k for k in keep if any(r["series"] == k for r in rows)] or (
            ["total"] if rows and not view.by else []
        )
        if any(r["series"] == "other" for r in rows) and "other" not in names:
            names.append("other")
        values = {n: [0.0] * len(times) for n in names}
        for r in rows:
            values.setdefault(r["series"], [0.0] * len(times))[at[r["t"]]] = float(r["value"] or 0)
        return {
            "metric": view.metric,
            "unit": ex.METRICS[view.metric],
            "from_ms": int(view.start.timestamp() * 1000),
            "to_ms": int(view.end.timestamp() * 1000),
            "times_ms": [int(t.timestamp() * 1000) for t in times],
            "interval_s": view.context().interval(),
            "series": [{"key": n, "label": label(view.by, n), "values": values[n]} for n in names],
            "source": "rollup" if view.on_rollup else "flows",
        }

    def sankey(self, params: Mapping[str, str]) -> dict[str, Any]:
        left, right = params.get("left") or "src_center", params.get("right") or "dst_center"
        view = self._view({**params, "limit": params.get("limit") or "50"})
        rows = _rows(self.query(ex.sankey_sql(self.database, view, left, right)))
        secs = max((view.end - view.start).total_seconds(), 1.0)
        for r in rows:
            r["source_label"], r["target_label"] = label(left, r["source"]), label(right, r["target"])
            r["bps"] = r["bytes"] * 8 / secs
        return {"left": left, "right": right, "links": rows, "total_bytes": sum(r["bytes"] for r in rows)}

    def values(self, params: Mapping[str, str]) -> dict[str, Any]:
        column = params.get("column") or ""
        view = self._view(params)
        if column not in ex.DIMENSIONS:
            raise ex.ViewError(f"unknown column {column!r}")
        rows = _rows(self.query(ex.values_sql(self.database, view, column, params.get("prefix", ""))))
        return {
            "column": column,
            "values": [{"value": r["key"], "label": label(column, r["key"])} for r in rows],
        }

    def events(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Findings and violations in the range, each with the filters and the range (``from``,
        ``to``: when its traffic happened, padded) that show its traffic."""
        view = self._view(params)
        if self.dialect != "modern":
            return {"findings": [], "violations": [], "unsupported": EVENTS_UNSUPPORTED}
        findings: list[dict[str, Any]] = []
        violations: list[dict[str, Any]] = []
        for r in self._optional(ex.findings_sql(self.database, view)):
            entities = dict(r.get("entities") or [])
            r["entities"] = entities
            r["filters"] = ex.finding_filters(entities)
            r["from"], r["to"] = _around(r["window_start"], r["window_end"])
            findings.append(r)
        for r in self._optional(ex.violations_sql(self.database, view)):
            r["filters"] = [{"column": c, "values": [r[c]]} for c in ex.VIOLATION_ENTITIES if r.get(c)]
            r["from"], r["to"] = _around(
                r["first_seen"] or r["window_start"], r["last_seen"] or r["window_end"]
            )
            violations.append(r)
        return {"findings": findings, "violations": violations}

    def _optional(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a table another component may not have created yet (none then)."""
        try:
            return _rows(self.query(sql))
        except Exception as e:
            if (
                "is not a netobs table" in str(e)
                or "UNKNOWN_TABLE" in str(e)
                or "doesn't exist" in str(e)
                or "Code: 60" in str(e)
            ):
                return []
            raise


def _static(name: str) -> Response:
    base = resources.files("dashboards") / "explorer_static"
    path = base / name
    if ".." in name or not path.is_file():
        return Response(404, b"not found\n", "text/plain")
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype.endswith("javascript"):
        ctype += "; charset=utf-8"
    return Response(200, path.read_bytes(), ctype)


#: The page and its assets: served without authentication (they hold no data; the page asks
#: for a token when the API answers 401, keeps it in sessionStorage and sends it as Bearer).
STATIC = ("index.html", "app.js", "vendor/echarts.min.js", "vendor/LICENSE-echarts.txt",
          "vendor/NOTICE-echarts.txt", "vendor/LICENSE-zrender.txt")  # fmt: skip


def routes(queries: QueryService, database: str) -> list[Route]:
    """The explorer's routes: the page and its assets (public), ``/explorer/api/<name>`` (viewer,
    each query as the caller through the query service: guard, readonly, tenant scope, audit)."""
    out = [
        Route("GET", PREFIX, lambda req: Response(308, b"", headers={"Location": PREFIX + "/"})),
        Route("GET", PREFIX + "/", lambda req: _static("index.html")),
    ]
    for name in STATIC:
        out.append(Route("GET", f"{PREFIX}/static/{name}", lambda req, n=name: _static(n)))  # type: ignore[misc]
    for name in ("meta", "top", "series", "sankey", "values", "events"):
        out.append(Route("GET", f"{PREFIX}/api/{name}", _api(queries, database, name), role="viewer"))
    return out


def _api(queries: QueryService, database: str, name: str) -> Callable[[Request], Response]:
    def route(req: Request) -> Response:
        assert req.principal is not None
        principal = req.principal

        def query(sql: str) -> pa.Table:
            return queries.run(principal, sql, peer=req.peer, route=req.path)

        api = ExplorerApi(query, database, str(getattr(queries.store, "dialect", "modern")))
        params = {k: v[-1] for k, v in req.query.items() if v}
        try:
            return _json(getattr(api, name)(params))
        except ex.ViewError as e:
            return _json({"error": str(e)}, 400)
        except Refused as e:
            return _json({"error": f"refused: {e}"}, 403)

    return route


__all__ = ["PORTS", "PREFIX", "PROTOCOLS", "STATIC", "ExplorerApi", "label", "routes", "view_of"]
