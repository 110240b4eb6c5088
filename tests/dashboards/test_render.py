"""Macros and template variables → the SQL the ClickHouse plugin sends, input → expected output."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dashboards.render import ALL, Context, RenderError, interval_for, render

START = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)  # 1780293600
END = datetime(2026, 6, 1, 9, 0, 0, 500_000, tzinfo=UTC)  # 1780304400.5
VARS = {"tenant": ["retail", "o'hare"], "center": ALL, "one": "dc-x", "none": []}
OPTIONS = {"center": ["c1", "c2"]}
CTX = Context(START, END, 20, VARS, OPTIONS)

CASES = [
    ("$__timeFilter(time)", "time >= toDateTime(1780293600) AND time <= toDateTime(1780304400)"),
    (
        "$__timeFilter_ms(time_received)",
        "time_received >= fromUnixTimestamp64Milli(1780293600000) "
        "AND time_received <= fromUnixTimestamp64Milli(1780304400500)",
    ),
    ("$__dateFilter(d)", "d >= toDate('2026-06-01') AND d <= toDate('2026-06-01')"),
    ("$__fromTime, $__toTime", "toDateTime(1780293600), toDateTime(1780304400)"),
    ("$__fromTime_ms/$__toTime_ms", "fromUnixTimestamp64Milli(1780293600000)/fromUnixTimestamp64Milli(1780304400500)"),
    ("$__timeInterval(time)", "toStartOfInterval(toDateTime(time), INTERVAL 20 second)"),
    ("$__timeInterval_ms(t)", "toStartOfInterval(toDateTime64(t, 3), INTERVAL 20000 millisecond)"),
    ("sum(b) / $__interval_s", "sum(b) / 20"),
    ("$__timeInterval(toDateTime(t, 'UTC'))", "toStartOfInterval(toDateTime(toDateTime(t, 'UTC')), INTERVAL 20 second)"),
    ("x IN (${tenant:singlequote})", "x IN ('retail','o\\'hare')"),
    ("x IN (${tenant:sqlstring})", "x IN ('retail','o''hare')"),
    ("x IN (${center:singlequote})", "x IN ('c1','c2')"),
    ("'${one}' = '$one'", "'dc-x' = 'dc-x'"),
    ("${tenant:csv}", "retail,o'hare"),
    ("${tenant}", "{retail,o'hare}"),
    ("x IN (${none:singlequote})", "x IN ()"),
    ("$__conditionalAll(c IN (${center:singlequote}), $center)", "1=1"),
    ("$__conditionalAll((a IN (${tenant:singlequote}) OR b IN (${tenant:singlequote})), ${tenant})",
     "(a IN ('retail','o\\'hare') OR b IN ('retail','o\\'hare'))"),
    ("$__conditionalAll(x = ',)', $one) AND $__conditionalAll(y, $center)", "x = ',)' AND 1=1"),
]  # fmt: skip


@pytest.mark.parametrize("sql,expected", CASES, ids=[c[0] for c in CASES])
def test_render(sql, expected):
    assert render(sql, CTX) == expected


ERRORS = [
    ("$__timeFilter(a, b)", "takes 1 argument"),
    ("$__timeFilter()", "takes 1 argument"),
    ("$__timeFilter(a", "unbalanced"),
    ("$__timeFiltr(a)", "unknown macro"),
    ("$missing", "unknown variable"),
    ("${tenant:weird}", "unknown format"),
    ("$__conditionalAll(x)", "takes 2 arguments"),
    ("$__conditionalAll(x, $nope)", "unknown variable"),
]


@pytest.mark.parametrize("sql,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_render_errors(sql, message):
    with pytest.raises(RenderError, match=message):
        render(sql, CTX)


def test_all_without_options_is_an_error():
    with pytest.raises(RenderError, match="options are not known"):
        render("${center:singlequote}", Context(START, END, 20, {"center": [ALL]}))


@pytest.mark.parametrize(
    "hours,expected", [(1, 5), (3, 15), (6, 30), (24, 120), (24 * 7, 900), (24 * 30, 3600), (24 * 365, 43200)]
)
def test_interval_follows_the_range(hours, expected):
    end = datetime.fromtimestamp(START.timestamp() + hours * 3600, UTC)
    assert interval_for(START, end) == expected
    assert Context(START, end).interval() == expected
