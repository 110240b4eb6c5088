"""Expand the ClickHouse plugin's macros and Grafana's template variables into plain ClickHouse SQL.

This is what Grafana and the plugin (grafana-clickhouse-datasource v4) do to a panel's
``rawSql`` before it reaches ClickHouse, in the same order:

1. ``$__conditionalAll(condition, $var)`` (the plugin, on the raw text): ``1=1`` when the
   variable is All, else the condition;
2. template variables (Grafana): ``${var:singlequote}`` → ``'a','b'``, ``${var:csv}``,
   ``${var}`` / ``$var`` (one value as is; several as Grafana's default glob ``{a,b}``); All
   stands for every value of the variable's options;
3. the plugin's macros (its backend, ``pkg/macros``): ``$__timeFilter(col)``,
   ``$__timeFilter_ms(col)``, ``$__dateFilter(col)``, ``$__fromTime``/``$__toTime`` (and
   ``_ms``), ``$__timeInterval(col)``, ``$__timeInterval_ms(col)``, ``$__interval_s``.

Anything left that looks like a macro or a variable is an error, not silently sent on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

ALL = "$__all"
#: Grafana's rounded intervals (seconds): the panel interval snaps up to one of these.
NICE_INTERVALS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800,
                  21600, 43200, 86400, 604800, 2592000)  # fmt: skip
MAX_DATA_POINTS = 1000
_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(?!__)(\w+)")


class RenderError(ValueError):
    """A query that cannot be rendered: unknown variable or macro, bad macro arguments."""


Value = str | Sequence[str]


@dataclass(frozen=True)
class Context:
    """What a panel query is rendered for: the time range, the interval and the variables."""

    start: datetime
    end: datetime
    interval_s: int = 0  # 0: from the range, as Grafana does
    variables: Mapping[str, Value] = field(default_factory=dict)
    #: Every value of each variable, what All stands for.
    options: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: ``legacy``: expand the macros for a ClickHouse server before 19 (DateTime columns, no
    #: ``toStartOfInterval`` or ``fromUnixTimestamp64Milli``), as the flow explorer needs on
    #: Debian's 18.16. Grafana's plugin knows no such mode: its panels need a modern server.
    dialect: str = "modern"

    def interval(self) -> int:
        if self.interval_s:
            return max(int(self.interval_s), 1)
        return interval_for(self.start, self.end)


def interval_for(start: datetime, end: datetime, max_data_points: int = MAX_DATA_POINTS) -> int:
    """Grafana's panel interval: the range over the data points, snapped up to a round interval."""
    raw = (end - start).total_seconds() / max_data_points
    return next((n for n in NICE_INTERVALS if n >= raw), NICE_INTERVALS[-1])


def _args(sql: str, open_at: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose '(' is at ``open_at``, and the index after ')'."""
    depth, quote = 0, False
    args: list[str] = []
    cur: list[str] = []
    for i in range(open_at, len(sql)):
        ch = sql[i]
        if ch == "'" and (i == 0 or sql[i - 1] != "\\"):
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
            if depth == 1:
                continue
        elif not quote and ch == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(cur).strip())
                return args, i + 1
        elif not quote and ch == "," and depth == 1:
            args.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    raise RenderError(f"unbalanced parentheses after position {open_at}")


def _functions(sql: str, name: str, expand: Callable[[list[str]], str]) -> str:
    token = f"$__{name}("
    while (at := sql.find(token)) >= 0:
        args, after = _args(sql, at + len(token) - 1)
        sql = sql[:at] + expand(args) + sql[after:]
    return sql


def _is_all(value: Value) -> bool:
    return value == ALL or (not isinstance(value, str) and ALL in value)


def conditional_all(sql: str, ctx: Context) -> str:
    def expand(args: list[str]) -> str:
        if len(args) != 2:
            raise RenderError(f"$__conditionalAll takes 2 arguments, got {len(args)}")
        m = _VAR.fullmatch(args[1])
        name = m and (m.group(1) or m.group(3))
        if not name or name not in ctx.variables:
            raise RenderError(f"$__conditionalAll: unknown variable {args[1]!r}")
        return "1=1" if _is_all(ctx.variables[name]) else args[0]

    return _functions(sql, "conditionalAll", expand)


def _values(name: str, ctx: Context) -> list[str]:
    if name not in ctx.variables:
        raise RenderError(f"unknown variable ${name}")
    value = ctx.variables[name]
    if _is_all(value):
        if name not in ctx.options:
            raise RenderError(f"${name} is All but its options are not known")
        return list(ctx.options[name])
    return [value] if isinstance(value, str) else list(value)


def _format(values: list[str], fmt: str | None, name: str) -> str:
    if fmt == "singlequote":
        return ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt == "csv":
        return ",".join(values)
    if fmt in (None, "raw", "text"):
        return values[0] if len(values) == 1 else "{" + ",".join(values) + "}"
    raise RenderError(f"${{{name}:{fmt}}}: unknown format")


def variables(sql: str, ctx: Context) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        return _format(_values(name, ctx), m.group(2), name)

    return _VAR.sub(one, sql)


def macros(sql: str, ctx: Context) -> str:
    frm, to = int(ctx.start.timestamp()), int(ctx.end.timestamp())
    frm_ms, to_ms = int(ctx.start.timestamp() * 1000), int(ctx.end.timestamp() * 1000)
    sec = ctx.interval()

    def one_arg(name: str, fmt: Callable[[str], str]) -> Callable[[list[str]], str]:
        def expand(args: list[str]) -> str:
            if len(args) != 1 or not args[0]:
                raise RenderError(f"$__{name} takes 1 argument, got {args}")
            return fmt(args[0])

        return expand

    table: dict[str, Callable[[str], str]] = {
        "timeFilter_ms": lambda c: f"{c} >= fromUnixTimestamp64Milli({frm_ms}) AND {c} <= fromUnixTimestamp64Milli({to_ms})",
        "timeFilter": lambda c: f"{c} >= toDateTime({frm}) AND {c} <= toDateTime({to})",
        "dateFilter": lambda c: f"{c} >= toDate('{_day(ctx.start)}') AND {c} <= toDate('{_day(ctx.end)}')",
        "timeInterval_ms": lambda c: f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {sec * 1000} millisecond)",
        "timeInterval": lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {sec} second)",
    }  # fmt: skip
    from_text, to_text = f"fromUnixTimestamp64Milli({frm_ms})", f"fromUnixTimestamp64Milli({to_ms})"
    if ctx.dialect == "legacy":  # second-resolution DateTime columns, intDiv buckets
        bucket = f"toDateTime(intDiv(toUInt32({{}}), {sec}) * {sec})"
        table |= {
            "timeFilter_ms": table["timeFilter"],
            "timeInterval_ms": bucket.format,
            "timeInterval": bucket.format,
        }
        from_text, to_text = f"toDateTime({frm})", f"toDateTime({to})"
    for name, fmt in table.items():
        sql = _functions(sql, name, one_arg(name, fmt))
    for name, text in (
        ("fromTime_ms", from_text),
        ("toTime_ms", to_text),
        ("fromTime", f"toDateTime({frm})"),
        ("toTime", f"toDateTime({to})"),
        ("interval_s", str(sec)),
    ):
        sql = re.sub(rf"\$__{name}\b", text, sql)
    if (left := re.search(r"\$__\w+", sql)) is not None:
        raise RenderError(f"unknown macro {left.group(0)}")
    return sql


def _day(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d")


def render(sql: str, ctx: Context) -> str:
    """``sql`` as ClickHouse receives it from Grafana for ``ctx``."""
    return macros(variables(conditional_all(sql, ctx), ctx), ctx)


__all__ = [
    "ALL",
    "Context",
    "RenderError",
    "conditional_all",
    "interval_for",
    "macros",
    "render",
    "variables",
]
