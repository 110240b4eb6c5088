"""What a principal may run: an allowlist checked on a real SQL parse, plus engine settings.

Two layers, because neither is enough alone (tests/netobs/test_sqlguard.py shows each gap):

- The parse (sqlglot, ClickHouse dialect) admits for a ``viewer`` one ``SELECT`` (``UNION``,
  ``WITH``) whose every table is a table of netobs's database or a CTE of the statement: no
  table functions (``file``, ``url``, ``remote``, ``s3``, ``mysql``, ...), no ``system`` tables,
  no other database, no ``INTO OUTFILE`` / ``FORMAT`` / ``SETTINGS`` clause, no function that
  reaches outside the query (``file()`` as a scalar function reads host files even in readonly
  mode; ``dictGet``, ``joinGet``, host introspection). A statement the parser does not
  understand is refused, never passed through.
- The engine runs the viewer's statement with ``readonly=1`` (no writes, no DDL, no table
  functions, no changing settings) and a ``max_execution_time``; on a ClickHouse server also as
  a read-only user when one is configured. ``readonly=1`` does not stop ``INTO OUTFILE`` or the
  scalar ``file()``: the parse does.

A tenant-bound viewer's every table must have ``src_tenant``/``dst_tenant`` columns; each is
replaced by a subquery keeping the rows where either end is one of its tenants, and the embedded
engine also gets the same predicate as ``additional_table_filters`` (an engine-side row filter).

An ``operator`` may also write netobs's tables and read ``system`` tables; ``admin`` is not
checked (its statements are audited like everyone's).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from netobs.auth import Principal

#: Functions that read or reach beyond the query's tables, or stall the engine.
DENIED_FUNCTIONS = frozenset(
    {
        "file",
        "url",
        "s3",
        "hdfs",
        "remote",
        "remotesecure",
        "cluster",
        "clusterallreplicas",
        "input",
        "jdbc",
        "odbc",
        "mysql",
        "postgresql",
        "mongodb",
        "redis",
        "sqlite",
        "azureblobstorage",
        "joinget",
        "joingetornull",
        "getsetting",
        "getserversetting",
        "getmacro",
        "hostname",
        "fqdn",
        "filesystemavailable",
        "filesystemcapacity",
        "filesystemunreserved",
        "uptime",
        "serveruuid",
        "addresstoline",
        "addresstolinewithinlines",
        "addresstosymbol",
        "demangle",
        "getclienthttpheader",
        "sleep",
        "sleepeachrow",
        "currentprofiles",
        "currentroles",
        "enabledprofiles",
        "enabledroles",
        "defaultprofiles",
        "defaultroles",
        "displayname",
        "tcpport",
        "getosversion",
        "shardnum",
        "shardcount",
        "globalvariable",
        "executable",
        "currentuser",
        "buildid",
        "zookeeperSessionUptime",
        "catboostevaluate",
        "modelevaluate",
        "transactionid",
        "transactionlatestsnapshot",
        "hasthreadfuzzer",
        "initialqueryid",
        "queryid",
        "getsubcolumn",
        "generaterandomstructure",
    }
)
DENIED_PREFIXES = ("dictget", "dicthas", "dictisin", "s3", "hdfs", "azure", "iceberg", "deltalake", "hudi")
#: Tables of netobs's database a viewer may not read (the audit log is the operators').
HIDDEN_TABLES = frozenset({"query_audit"})
READ_ONLY = (exp.Select, exp.Union, exp.Intersect, exp.Except)
WRITES = (exp.Insert, exp.Create, exp.Drop, exp.Alter, exp.Delete, exp.Update, exp.TruncateTable)


class Refused(ValueError):
    """The statement is outside the principal's grant; the message says which part."""


@dataclass(frozen=True)
class Guarded:
    """A statement cleared to run, with the engine settings it must run under."""

    sql: str
    settings: dict[str, Any] = field(default_factory=dict)
    #: table (``db.name``) → row filter, for engines with ``additional_table_filters``.
    table_filters: dict[str, str] = field(default_factory=dict)
    read_only: bool = False


def tenant_predicate(tenants: Collection[str]) -> str:
    values = ", ".join(_literal(t) for t in sorted(tenants))
    return f"(src_tenant IN ({values}) OR dst_tenant IN ({values}))"


def guard_sql(
    principal: Principal,
    sql: str,
    *,
    database: str,
    tables: Collection[str],
    tenant_tables: Collection[str] = (),
    timeout_s: int = 300,
    explain: Callable[[str], str] | None = None,
) -> Guarded:
    """Clear ``sql`` for ``principal`` or raise :class:`Refused`.

    ``tables`` are the tables and views of ``database`` (the only ones a viewer may name);
    ``tenant_tables`` those of them with ``src_tenant``/``dst_tenant`` columns; ``explain``
    returns the engine's ``EXPLAIN AST`` of a statement (operators' statements sqlglot cannot
    parse are checked on it; without it they are refused).
    """
    text = sql.strip().rstrip(";").rstrip()
    if principal.role == "admin":
        return Guarded(text)
    if principal.role == "operator":
        try:
            tree = _parse_one(text)
        except Refused:
            if explain is None:
                raise
            # sqlglot does not know every ClickHouse statement netobs writes: the engine's own
            # parse (EXPLAIN AST) decides instead, with the same rules.
            check_engine_ast(explain(text), database, _with_names(text))
            return Guarded(text)
        _check_operator(tree, database)
        return Guarded(text)
    tree = _parse_one(text)
    if not isinstance(tree, READ_ONLY):
        raise Refused(f"a viewer may run SELECT only, not {_kind(tree)}")
    for key in ("format", "settings"):
        for node in [tree, *tree.find_all(exp.Select)]:
            if node.args.get(key):
                raise Refused(f"a viewer's query may not carry a {key.upper()} clause")
    ctes = _cte_names(tree)
    _check_functions(tree)
    _check_in_table(tree)
    allowed = set(tables) - HIDDEN_TABLES
    filters: dict[str, str] = {}
    for table in list(tree.find_all(exp.Table)):
        name = _table_name(table, database, ctes, allowed)
        if name is None or not principal.tenants:
            continue
        if not isinstance(table.this, exp.Identifier):
            raise Refused(f"parameterized view {database}.{name} is not visible to a tenant-bound viewer")
        if name not in tenant_tables:
            raise Refused(
                f"table {database}.{name} has no tenant columns: not visible to a tenant-bound viewer"
            )
        filters[f"{database}.{name}"] = tenant_predicate(principal.tenants)
        _scope_to_tenants(table, database, name, principal.tenants)
    settings: dict[str, Any] = {"max_execution_time": timeout_s, "readonly": 1}
    out = tree.sql(dialect="clickhouse") if filters else text
    return Guarded(out, settings, filters, read_only=True)


def _parse_one(text: str) -> exp.Expression:
    if not text:
        raise Refused("empty statement")
    try:
        trees = sqlglot.parse(text, read="clickhouse", error_level=sqlglot.ErrorLevel.RAISE)
    except SqlglotError as e:
        raise Refused(f"statement not understood by the SQL guard: {str(e).splitlines()[0][:200]}") from None
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        raise Refused("exactly one statement per request")
    tree = trees[0]
    if not isinstance(tree, exp.Expression):
        raise Refused("statement not understood by the SQL guard")
    if isinstance(tree, exp.Command):
        raise Refused(f"{tree.name.upper()} statements need the admin role")
    return tree


def _kind(tree: exp.Expression) -> str:
    return type(tree).__name__.upper()


def _cte_names(tree: exp.Expression) -> set[str]:
    return {cte.alias_or_name for cte in tree.find_all(exp.CTE)}


def _names_cte(table: exp.Table) -> bool:
    """Whether the unqualified ``table`` names a CTE visible where it stands.

    Stricter than the engine, never looser: inside a CTE's body only the CTEs defined before it
    count (the engine resolves a CTE's own name, or a later CTE's, inside its body to a real
    table of the session's database: ``WITH flows AS (SELECT * FROM flows)`` would read it
    unscoped); a WITH of a UNION counts for its first SELECT only (servers with
    ``enable_global_with_statement = 0`` resolve the name to a table in the other branches).
    """
    name = table.name
    child: Any = table
    node: Any = table.parent
    passed: Any = None  # the WITH whose CTE body ``child`` is in
    while node is not None:
        if isinstance(node, exp.CTE) and isinstance(node.parent, exp.With):
            ctes = node.parent.expressions
            if name in {c.alias_or_name for c in ctes[: ctes.index(node)]}:
                return True
            passed = node.parent
        elif isinstance(node, exp.Query):
            with_ = node.args.get("with") or node.args.get("with_")
            if isinstance(with_, exp.With) and with_ is not passed and child is not with_:
                first: Any = node
                while isinstance(first, exp.SetOperation):
                    first = first.this
                if (first is node or _within(table, first)) and name in {
                    c.alias_or_name for c in with_.expressions
                }:
                    return True
        child, node = node, node.parent
    return False


def _within(node: Any, ancestor: Any) -> bool:
    while node is not None:
        if node is ancestor:
            return True
        node = node.parent
    return False


def _function_name(node: exp.Func) -> str:
    return str(node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()


def _check_functions(tree: exp.Expression) -> None:
    for node in tree.find_all(exp.Func):
        name = _function_name(node)
        if name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES):
            raise Refused(f"function {name}() is not allowed")


def _check_in_table(tree: exp.Expression) -> None:
    """``x IN db.t`` reads a table through a bare name; only subqueries and lists are allowed."""
    for node in tree.find_all(exp.In):
        if node.args.get("field") is not None:
            raise Refused("IN <table> is not allowed; use IN (SELECT ...)")


def _table_name(table: exp.Table, database: str, ctes: set[str], allowed: set[str]) -> str | None:
    """The netobs table ``table`` names (None for a CTE); refuses everything else."""
    if isinstance(table.this, exp.Anonymous) and table.db == database and table.args.get("catalog") is None:
        # A parameterized view of netobs's own database (``netobs.v(start = ..., end = ...)``, what
        # the dashboards read); its arguments are expressions checked like the rest of the query.
        name = str(table.this.name)
        if name in allowed and all(isinstance(a, exp.EQ) for a in table.this.expressions):
            return name
    if not isinstance(table.this, exp.Identifier):
        raise Refused(f"table function {table.this.sql(dialect='clickhouse')[:80]} is not allowed")
    if table.args.get("catalog") is not None:
        raise Refused(f"table {table.sql(dialect='clickhouse')} is not allowed")
    db = table.db
    if not db:
        if table.name in ctes and _names_cte(table):
            return None
        if table.name in ctes:
            raise Refused(
                f"{table.name} names a CTE where it is not visible (its own body, a later CTE, or "
                "another branch of a UNION): qualify the table or define the CTE before it"
            )
        raise Refused(f"table {table.name} must be qualified as {database}.{table.name}")
    if db != database:
        raise Refused(f"database {db} is not readable (only {database})")
    if table.name not in allowed:
        raise Refused(f"{database}.{table.name} is not a netobs table a viewer may read")
    return table.name


def _scope_to_tenants(table: exp.Table, database: str, name: str, tenants: Collection[str]) -> None:
    """Replace ``table`` (with its FINAL) by a subquery keeping the tenants' rows, same alias."""
    target: exp.Expression = table.parent if isinstance(table.parent, exp.Final) else table
    final = " FINAL" if target is not table else ""
    alias = table.alias or name
    inner = sqlglot.parse_one(
        f"SELECT * FROM `{database}`.`{name}`{final} WHERE {tenant_predicate(tenants)}", read="clickhouse"
    )
    target.replace(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias))))


def _check_operator(tree: exp.Expression, database: str) -> None:
    if not isinstance(tree, (*READ_ONLY, *WRITES)):
        raise Refused(f"{_kind(tree)} statements need the admin role")
    if isinstance(tree, exp.Insert) and tree.args.get("is_function"):
        raise Refused("INSERT INTO FUNCTION is not allowed")
    _check_functions(tree)
    _check_in_table(tree)
    for prop in tree.find_all(exp.EngineProperty):
        engine = prop.this.name if isinstance(prop.this, exp.Func | exp.Identifier) else prop.this.sql()
        if not _engine_allowed(str(engine).split("(")[0]):
            raise Refused(f"table engine {engine} is not allowed")
    ctes = _cte_names(tree)
    reads_only = isinstance(tree, READ_ONLY)
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise Refused(f"table function {table.this.sql(dialect='clickhouse')[:80]} is not allowed")
        db = table.db
        if not db and table.name in ctes and _names_cte(table):
            continue
        if db == "system" and reads_only:
            continue
        if db != database:
            raise Refused(f"an operator works in database {database} only, not {db or '(unqualified)'}")


#: Table engines an operator may create: netobs's own kinds, none that reaches files, URLs or other servers.
ALLOWED_ENGINES = (
    "MergeTree",
    "ReplacingMergeTree",
    "SummingMergeTree",
    "AggregatingMergeTree",
    "Distributed",
    "Null",
    "Memory",
)
ENGINE_STATEMENTS = {
    "SelectWithUnionQuery": "read",
    "InsertQuery": "write",
    "CreateQuery": "write",
    "DropQuery": "write",
    "AlterQuery": "write",
    "OptimizeQuery": "write",
}


def _engine_allowed(name: str) -> bool:
    bare = name.removeprefix("Replicated")
    return bare in ALLOWED_ENGINES


_CHILDREN = re.compile(r"\s*\(children \d+\)")


def _with_names(sql: str) -> set[str]:
    """Names bound by ``WITH name AS (`` (the engine's AST does not print them)."""
    return (
        set(re.findall(r"[`\"]?(\w+)[`\"]?\s+AS\s*\(", sql, re.IGNORECASE))
        if re.search(r"\bWITH\b", sql, re.I)
        else set()
    )


def check_engine_ast(ast: str, database: str, ctes: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """The operator's rules on ClickHouse's own ``EXPLAIN AST`` output (one node per line,
    indented by depth): statement kind, databases named, table functions, engines, functions."""
    lines = [
        (len(line) - len(line.lstrip(" ")), _CHILDREN.sub("", line).split())
        for line in ast.splitlines()
        if line.strip()
    ]
    if not lines:
        raise Refused("the engine returned no parse")
    kind = lines[0][1][0]
    mode = ENGINE_STATEMENTS.get(kind)
    if mode is None:
        raise Refused(f"{kind} statements need the admin role")
    head = lines[0][1][1:]
    if head and kind != "SelectWithUnionQuery" and head[0] != database:
        raise Refused(f"an operator works in database {database} only, not {head[0]}")
    if not any(words[0] == "WithElement" for _, words in lines):
        ctes = set()
    parents: list[tuple[int, str]] = []
    for depth, words in lines[1:]:
        while parents and parents[-1][0] >= depth:
            parents.pop()
        node, arg = words[0], (words[1] if len(words) > 1 else "")
        parent = parents[-1][1] if parents else kind
        if depth == 1 and node == "Literal" and kind in ("SelectWithUnionQuery", "InsertQuery"):
            raise Refused("INTO OUTFILE / FROM INFILE are not allowed")
        if depth == 1 and node == "Function" and kind == "InsertQuery":
            raise Refused("INSERT INTO FUNCTION is not allowed")
        if node == "TableIdentifier":
            db, _, _name = arg.rpartition(".")
            if not db and arg in ctes:
                pass
            elif db == "system" and mode == "read":
                pass
            elif db != database:
                raise Refused(f"an operator works in database {database} only, not {db or arg}")
        elif node == "Function":
            name = arg.lower()
            if parent == "TableExpression":
                raise Refused(f"table function {arg} is not allowed")
            if parent == "Storage" and not _engine_allowed(arg):
                raise Refused(f"table engine {arg} is not allowed")
            if name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES):
                raise Refused(f"function {arg}() is not allowed")
        parents.append((depth, "Storage" if node == "Storage" else node))
    _check_in_table_ast(lines)
    if kind == "InsertQuery":
        idents = [
            words[1]
            for depth, words in lines[1:3]
            if depth == 1 and words[0] == "Identifier" and len(words) > 1
        ]
        if idents and idents[0] != database:
            raise Refused(f"an operator works in database {database} only, not {idents[0]}")


def _check_in_table_ast(lines: list[tuple[int, list[str]]]) -> None:
    """``x IN db.t``: a ``Function in`` whose second argument is a bare Identifier."""
    for i, (depth, words) in enumerate(lines):
        if (
            words[0] != "Function"
            or len(words) < 2
            or words[1].lower() not in ("in", "notin", "globalin", "globalnotin")
        ):
            continue
        stop = next((j for j, (d, _) in enumerate(lines[i + 1 :]) if d <= depth), None)
        within = lines[i + 1 : i + 1 + stop] if stop is not None else lines[i + 1 :]
        args = [w for d, w in within if d == depth + 2]
        if len(args) >= 2 and args[1][0] == "Identifier":
            raise Refused("IN <table> is not allowed; use IN (SELECT ...)")


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


__all__ = ["DENIED_FUNCTIONS", "Guarded", "Refused", "guard_sql", "tenant_predicate"]
