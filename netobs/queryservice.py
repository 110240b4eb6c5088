"""SQL on the store for authenticated principals: guard, run with the role's engine settings, audit.

The control server's ``/query`` route is built from it; any other route that runs SQL for a
caller (an explorer, a ClickHouse-compatible endpoint) calls :meth:`QueryService.run` so that
the same grant, tenant scope and audit apply.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pyarrow as pa

from netobs import metrics
from netobs.audit import AuditLog
from netobs.auth import Principal
from netobs.config import ControlAuthConfig
from netobs.control import Request, Response, Route, arrow_response, text
from netobs.sqlguard import Refused, guard_sql

log = logging.getLogger(__name__)
logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its fallback warnings are our refusals

TABLES_TTL_S = 30.0


class QueryService:
    def __init__(self, store: Any, database: str, auth: ControlAuthConfig, audit: AuditLog | None = None):
        self.store, self.database, self.auth, self.audit = store, database, auth, audit
        self._lock = threading.Lock()
        self._tables: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        self._loaded = 0.0

    def tables(self, refresh: bool = False) -> tuple[frozenset[str], frozenset[str]]:
        """(every table and view of the database, those with src_tenant and dst_tenant)."""
        with self._lock:
            if refresh or time.monotonic() - self._loaded > TABLES_TTL_S:
                db = self.database.replace("'", "")
                t = self.store.query_arrow(
                    f"SELECT table, countIf(name IN ('src_tenant', 'dst_tenant')) AS tenant_columns "
                    f"FROM system.columns WHERE database = '{db}' GROUP BY table"
                )
                rows = t.to_pylist()
                # parameterized views (the dashboards' interface_counter_rates) have no columns there
                views = self.store.query_arrow(f"SELECT name FROM system.tables WHERE database = '{db}'")
                self._tables = (
                    frozenset(r["table"] for r in rows) | frozenset(views.column("name").to_pylist()),
                    frozenset(r["table"] for r in rows if r["tenant_columns"] == 2),
                )
                self._loaded = time.monotonic()
            return self._tables

    def run(self, principal: Principal, sql: str, *, peer: str = "", route: str = "/query") -> pa.Table:
        """Run ``sql`` as ``principal``; raises :class:`Refused` outside its grant, the store's
        error when the engine fails. Every call leaves an audit row."""
        table: pa.Table = self._execute(principal, sql, peer, route, self.store.query_arrow, len)
        return table

    def run_format(
        self, principal: Principal, sql: str, fmt: str, *, peer: str = "", route: str = "/clickhouse"
    ) -> bytes:
        """As :meth:`run`, the result in the ClickHouse output format ``fmt`` (the store's
        ``query_format``; embedded store only). ``sql`` carries no FORMAT clause (the guard
        refuses one). The audit row's ``rows`` is 0: the engine's bytes are not counted."""
        out: bytes = self._execute(principal, sql, peer, route, partial(self._formatted, fmt), lambda _: 0)
        return out

    def _formatted(self, fmt: str, sql: str, settings: dict[str, Any] | None = None) -> bytes:
        return bytes(self.store.query_format(sql, fmt, settings))

    def _execute(
        self,
        principal: Principal,
        sql: str,
        peer: str,
        route: str,
        runner: Callable[..., Any],
        count: Callable[[Any], int],
    ) -> Any:
        audit = {"principal": principal.name, "role": principal.role, "via": principal.via}
        audit |= {"peer": peer, "route": route, "sql": sql}
        try:
            guarded = self._guard(principal, sql)
        except Refused as e:
            metrics.queries_refused.labels(principal.role).inc()
            self._audit(audit, "refused", str(e), 0)
            raise
        try:
            if guarded.read_only:
                settings = dict(guarded.settings)
                if guarded.table_filters:
                    settings["additional_table_filters"] = guarded.table_filters
                result = runner(guarded.sql, settings)
            else:
                result = runner(guarded.sql)
        except Exception as e:
            self._audit(audit, "error", str(e).splitlines()[0][:500] if str(e) else type(e).__name__, 0)
            raise
        self._audit(audit, "ok", "", count(result))
        return result

    def _guard(self, principal: Principal, sql: str) -> Any:
        def attempt(refresh: bool) -> Any:
            tables, tenant = (
                self.tables(refresh) if principal.role == "viewer" else (frozenset(), frozenset())
            )
            return guard_sql(
                principal,
                sql,
                database=self.database,
                tables=tables,
                tenant_tables=tenant,
                timeout_s=self.auth.query_timeout_s,
                explain=self._explain,
            )

        try:
            return attempt(False)
        except Refused as e:
            if "is not a netobs table" not in str(e):
                raise
            return attempt(True)  # a table made since the list was read

    def _explain(self, sql: str) -> str:
        explain = getattr(self.store, "explain_ast", None)
        if explain is None:
            raise Refused("statement not understood by the SQL guard, and the store has no EXPLAIN AST")
        try:
            return str(explain(sql))
        except Refused:
            raise
        except Exception as e:  # the engine cannot parse it either: it would not run
            raise Refused(f"statement not understood: {str(e).splitlines()[0][:300]}") from None

    def _audit(self, fields: dict[str, Any], outcome: str, error: str, rows: int) -> None:
        if self.audit is not None:
            self.audit.record(**fields, outcome=outcome, error=error, rows=rows)

    def route(self) -> Route:
        def handle(req: Request) -> Response:
            assert req.principal is not None
            sql = req.body.decode("utf-8", "replace")
            if not sql.strip():
                return text(400, "expected a SQL statement in the body")
            try:
                table = self.run(req.principal, sql, peer=req.peer, route=req.path)
            except Refused as e:
                return text(403, f"refused: {e}")
            except Exception as e:  # the engine's error goes back to the caller, the server lives on
                return text(400, str(e))
            return arrow_response(table)

        return Route("POST", "/query", handle, role="viewer")


__all__ = ["QueryService"]
