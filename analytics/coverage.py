"""What the counts behind a result are made of: every consumer (analyze, policy check, reports) says
how many records it counted, how many it left out and why, and how many name neither end."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from netobs import counting

NAMED = counting.NAMED


def _ts(t: datetime) -> str:
    t = t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)
    return f"toDateTime64('{t.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}', 3, 'UTC')"


def coverage(query: Callable[[str], pa.Table], db: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Records whose event time is in [start, end): received, counted, not counted by reason, unnamed."""
    rows = query(
        f"SELECT count_reason AS reason, counted, count() AS records, countIf({NAMED}) AS named "
        f"FROM `{db}`.flows WHERE {counting.in_event_range(_ts(start), _ts(end))} "
        "GROUP BY reason, counted ORDER BY counted DESC, reason"
    ).to_pylist()
    counted = [r for r in rows if r["counted"]]
    n_counted = sum(r["records"] for r in counted)
    return {
        "records": sum(r["records"] for r in rows),
        "counted": n_counted,
        "counted_unnamed": n_counted - sum(r["named"] for r in counted),
        "not_counted": [
            {"reason": r["reason"], "records": r["records"], "why": counting.REASONS.get(r["reason"], "")}
            for r in rows
            if not r["counted"]
        ],
        "method": "netobs.counting: each packet counted once, at the first covered observation point",
    }


def line(c: dict[str, Any]) -> str:
    """One line for a terminal."""
    left = ", ".join(f"{r['records']} {r['reason']}" for r in c["not_counted"]) or "none"
    return (
        f"counted {c['counted']} of {c['records']} flow records ({c['counted_unnamed']} counted ones name "
        f"neither end); not counted: {left}"
    )
