"""Reads findings and violations that are new or changed since a cursor, by SQL only.

The cursor of a source is (position, id) of the last row read: ``analyzed_at`` in milliseconds for
findings, ``version`` for violations (2 × milliseconds + 1 of the evaluation; tombstones 2 × ms).
Rows are read in (position, id) order, at most ``limit`` per call, so a cut inside a batch that
shares one position is resumed exactly where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from alerts import metrics
from alerts.config import SEVERITY_RANK, LinksConfig
from alerts.model import Alert, from_finding, from_violation

log = logging.getLogger(__name__)

Query = Callable[[str], pa.Table]
FINDINGS, VIOLATIONS = "findings", "violations"


@dataclass(frozen=True)
class Cursor:
    position: int
    last_id: str = ""


def quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def start_cursor(source: str, since: datetime) -> Cursor:
    """The cursor just before everything written at or after ``since``."""
    ms = int(since.timestamp() * 1000)
    return Cursor(ms - 1 if source == FINDINGS else 2 * ms - 1, "\uffff")


def _severities(min_severity: str) -> str:
    floor = SEVERITY_RANK[min_severity]
    return ", ".join(quote(s) for s, r in sorted(SEVERITY_RANK.items()) if r >= floor)


def findings_sql(db: str, cursor: Cursor, min_severity: str, limit: int) -> str:
    pos = "toUnixTimestamp64Milli(analyzed_at)"
    return (
        f"SELECT id, detector, type, severity, planned, confidence, score, toUnixTimestamp(window_start) * 1000 AS window_start_ms, "
        f"toUnixTimestamp(window_end) * 1000 AS window_end_ms, mapKeys(entities) AS entity_keys, "
        f"mapValues(entities) AS entity_values, summary, evidence, {pos} AS position "
        f"FROM (SELECT * FROM `{db}`.`{FINDINGS}` FINAL "
        f"WHERE analyzed_at >= fromUnixTimestamp64Milli(toInt64({cursor.position}), 'UTC')) "
        f"WHERE ({pos}, id) > ({cursor.position}, {quote(cursor.last_id)}) "
        f"AND severity IN ({_severities(min_severity)}) ORDER BY position, id LIMIT {int(limit)}"
    )


def violations_sql(db: str, cursor: Cursor, min_severity: str, limit: int) -> str:
    ends = ", ".join(f"{e}_{a}" for e in ("src", "dst") for a in ("tenant", "namespace", "workload", "zone"))
    ends += ", " + ", ".join(f"{e}_{a}" for e in ("src", "dst") for a in ("center", "site", "ip"))
    times = ", ".join(
        f"toUnixTimestamp64Milli({c}) AS {c}_ms"
        for c in ("window_start", "window_end", "first_seen", "last_seen")
    )
    return (
        f"SELECT id, policy, rule, rule_type, severity, owner, regulations, {ends}, bytes, packets, flows, "
        f"{times}, deleted, version AS position "
        f"FROM (SELECT * FROM `{db}`.`{VIOLATIONS}` FINAL WHERE version >= {cursor.position}) "
        f"WHERE (version, id) > ({cursor.position}, {quote(cursor.last_id)}) "
        f"AND severity IN ({_severities(min_severity)}) ORDER BY position, id LIMIT {int(limit)}"
    )


def existing_tables(query: Query, db: str) -> set[str]:
    t = query(
        f"SELECT name FROM system.tables WHERE database = {quote(db)} AND name IN ({quote(FINDINGS)}, "
        f"{quote(VIOLATIONS)})"
    )
    return set(t.column("name").to_pylist()) if t.num_rows else set()


_BUILD: dict[str, tuple[Callable[..., str], Callable[[dict[str, Any], LinksConfig], Alert]]] = {
    FINDINGS: (findings_sql, from_finding),
    VIOLATIONS: (violations_sql, from_violation),
}


def read(
    query: Query, db: str, source: str, cursor: Cursor, min_severity: str, limit: int, links: LinksConfig
) -> tuple[list[Alert], Cursor]:
    """Alerts of the rows after ``cursor`` (oldest first) and the cursor after them.

    A row that cannot be made into an alert is logged and counted, and the cursor moves past it.
    """
    sql, build = _BUILD[source]
    rows = query(sql(db, cursor, min_severity, limit)).to_pylist()
    out = []
    for row in rows:
        try:
            out.append(build(row, links))
        except (KeyError, TypeError, ValueError) as e:
            metrics.dropped_rows.labels(source, "malformed").inc()
            log.warning("%s row %r dropped: %s", source, row.get("id"), e)
    metrics.read_rows.labels(source).inc(len(rows))
    if rows:
        cursor = Cursor(int(rows[-1]["position"]), str(rows[-1]["id"]))
    return out, cursor


__all__ = ["FINDINGS", "VIOLATIONS", "Cursor", "existing_tables", "read", "start_cursor"]
