"""Enough of the ClickHouse HTTP interface, read-only, for Grafana and ClickHouse clients to read chdb.

An embedded store has no server: the process that owns the chdb directory answers
``/clickhouse/`` like a ClickHouse server's HTTP port (``GET /clickhouse/ping``; the SQL in the
``query`` parameter and/or the body; ``default_format``; a trailing ``FORMAT`` clause wins; errors
as ``Code: N. DB::Exception: ...`` with ``X-ClickHouse-Exception-Code``), which is what
grafana-clickhouse-datasource (HTTP protocol), clickhouse-connect and clickhouse-go v2 speak.

Who may ask and what runs is main's security layer, not a second guard: the routes are viewer
routes of the control server that need a token (``Authorization: Bearer <token>``, or HTTP Basic
with the token as the password, the user name empty, ``default`` or the principal's name; never
anonymous, never a client certificate alone) and every statement goes through
:meth:`netobs.queryservice.QueryService.run_format` (sqlglot allowlist, ``readonly=1``, tenant
scope, audit). Only the protocol is parsed here: the trailing ``FORMAT`` and ``;`` are taken off
before the guard sees the statement. URL settings and ``param_*`` are not applied.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable

from netobs.control import Request, Response, Route
from netobs.queryservice import QueryService
from netobs.sqlguard import Refused

PREFIX = "/clickhouse"
#: What a ClickHouse server answers without a FORMAT: tab-separated text.
DEFAULT_FORMAT = "TabSeparated"
_FORMAT_RE = re.compile(r"\bFORMAT\s+(\w+)\s*$", re.IGNORECASE)
_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"")
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/|#[^\n]*", re.DOTALL)
#: ClickHouse error codes used here.
READONLY, SYNTAX_ERROR, UNKNOWN_FORMAT, AUTHENTICATION_FAILED = 164, 62, 73, 516


def split_format(sql: str) -> tuple[str, str | None]:
    """``sql`` without its trailing ``;`` and ``FORMAT name`` clause, and that name (or None)."""
    body = sql.strip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    bare = _COMMENTS.sub(lambda m: " " * len(m.group(0)), _STRINGS.sub(lambda m: "_" * len(m.group(0)), body))
    m = _FORMAT_RE.search(bare.rstrip())
    if m is None:
        return body, None
    return body[: m.start()].rstrip().rstrip(";").rstrip(), m.group(1)


def _error(status: int, code: int, message: str) -> Response:
    text = f"Code: {code}. DB::Exception: {message}. (netobs)\n"
    return Response(
        status, text.encode(), "text/plain; charset=UTF-8", {"X-ClickHouse-Exception-Code": str(code)}
    )


def _code(message: str) -> int:
    m = re.search(r"Code:\s*(\d+)", message)
    return int(m.group(1)) if m else 1000


def routes(queries: QueryService, server_name: str = "netobs") -> list[Route]:
    """The viewer routes of ``/clickhouse`` (``GET``/``POST`` of ``/clickhouse`` and ``/clickhouse/``,
    ``GET /clickhouse/ping``), token-only, Basic accepted."""
    handle = handler(queries, server_name)
    out = []
    for path in (PREFIX, PREFIX + "/"):
        for method in ("GET", "POST"):
            out.append(Route(method, path, handle, role="viewer", basic_auth=True, token_only=True))
    out.append(Route("GET", PREFIX + "/ping", handle, role="viewer", basic_auth=True, token_only=True))
    return out


def handler(queries: QueryService, server_name: str = "netobs") -> Callable[[Request], Response]:
    def one(req: Request, name: str) -> str:
        values = req.query.get(name)
        return values[-1] if values else ""

    def route(req: Request) -> Response:
        assert req.principal is not None
        sub = req.path[len(PREFIX) :].strip("/")
        if sub == "ping" or (req.method == "GET" and not sub and "query" not in req.query):
            return Response(200, b"Ok.\n", "text/plain; charset=UTF-8")
        sql = one(req, "query")
        if req.body:
            text = req.body.decode("utf-8", "replace")
            sql = f"{sql}\n{text}" if sql else text
        if any(k.startswith("param_") for k in req.query):
            return _error(400, 456, "Query parameters (param_*) are not supported by this endpoint")
        body, fmt = split_format(sql)
        if not body:
            return _error(400, SYNTAX_ERROR, "Empty query")
        fmt = fmt or one(req, "default_format") or DEFAULT_FORMAT
        query_id = one(req, "query_id") or str(uuid.uuid4())

        def run(statement: str, out_format: str) -> bytes:
            return queries.run_format(req.principal, statement, out_format, peer=req.peer, route=req.path)  # type: ignore[arg-type]

        try:
            if _is_hello(body) and fmt == "Native":
                out = _hello(run, int(one(req, "client_protocol_version") or 0), server_name)
            elif _normal(body) in BOOTSTRAP:
                out = queries.store.query_format(_normal(body), fmt, {"readonly": 1})
            else:
                out = run(body, fmt)
        except Refused as e:
            return _error(403, READONLY, f"refused: {e}")
        except Exception as e:  # the engine's error goes back as ClickHouse sends it
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            message = re.sub(r"^Code:\s*\d+\.\s*(DB::Exception:\s*)?", "", message)
            return _error(500, _code(str(e)), message)
        summary = {"read_rows": "0", "read_bytes": "0", "written_rows": "0", "written_bytes": "0",
                   "total_rows_to_read": "0", "result_rows": "0", "result_bytes": str(len(out))}  # fmt: skip
        headers = {
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Server-Display-Name": server_name,
            "X-ClickHouse-Summary": json.dumps(summary),
        }
        return Response(200, out, _content_type(fmt), headers)

    return route


#: clickhouse-go's first query over HTTP; the revision it answers is the one its Native blocks are read with.
HELLO = "SELECT displayName(), version(), revision(), timezone()"
#: ClickHouse's DBMS_MIN_REVISION_WITH_CUSTOM_SERIALIZATION: a flag byte after each column's type.
_CUSTOM_SERIALIZATION = 54454


#: Statements clients send when they connect, outside a viewer's grant (system tables): answered
#: as these exact constant strings (no caller text reaches the engine), with readonly=1. What they
#: show (setting names and values) any user of a ClickHouse server may read.
BOOTSTRAP = frozenset({"SELECT name, value, readonly FROM system.settings LIMIT 10000"})


def _normal(sql: str) -> str:
    return " ".join(sql.split()).rstrip(";").strip()


def _is_hello(sql: str) -> bool:
    return " ".join(sql.split()).rstrip(";") == HELLO


def _hello(query_format: Callable[[str, str], bytes], revision: int, server_name: str) -> bytes:
    """The hello row as a Native block of the client's ``revision``, stating revision 0.

    The engine writes Native the way a server does for a client of revision 0 (no block info,
    no custom-serialization flags, whatever ``client_protocol_version`` asks), so 0 is the
    revision this endpoint speaks: clickhouse-go then reads every later block that way.
    """
    row = query_format("SELECT version(), timezone()", "TabSeparated").decode().strip().split("\t")
    cols = (("displayName()", "String", server_name), ("version()", "String", row[0]),
            ("revision()", "UInt32", 0), ("timezone()", "String", row[1]))  # fmt: skip
    out = bytearray(b"\x01\x00\x02\xff\xff\xff\xff\x00" if revision > 0 else b"")  # BlockInfo
    out += _uvarint(len(cols)) + _uvarint(1)
    for name, typ, value in cols:
        out += _str(name) + _str(typ)
        if revision >= _CUSTOM_SERIALIZATION:
            out += b"\x00"
        out += int(value).to_bytes(4, "little") if typ == "UInt32" else _str(str(value))
    return bytes(out)


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    data = s.encode()
    return _uvarint(len(data)) + data


def _content_type(fmt: str) -> str:
    f = fmt.lower()
    if f.startswith("json"):
        return "application/json; charset=UTF-8"
    if f.startswith(("tabseparated", "tsv", "csv", "pretty", "values", "vertical", "markdown")):
        return "text/plain; charset=UTF-8"
    return "application/octet-stream"


__all__ = ["DEFAULT_FORMAT", "PREFIX", "handler", "routes", "split_format"]
