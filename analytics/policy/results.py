"""Reading violations back: stored ones (``policy check``) or computed on the fly (``whatif``, tests).

Rows are plain dicts with JSON-friendly values; ordering is deterministic (window, rule,
id) so that outputs and reports built from them are reproducible.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from analytics.policy.conformance import resolve
from analytics.policy.evaluate import ENTITY, align, chunks, live, violations_select
from analytics.policy.model import Policy
from analytics.policy.sql import quote, ts

Query = Callable[[str], pa.Table]
_ORDER = "ORDER BY window_start, rule, id"


def _iso(v: Any) -> Any:
    if isinstance(v, datetime):
        v = v.astimezone(UTC)
        return v.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(v, list):
        return [_iso(x) for x in v]
    if isinstance(v, dict):
        return {k: _iso(x) for k, x in v.items()}
    return v


def to_record(row: dict[str, Any]) -> dict[str, Any]:
    """A violation row → the JSON line shape: entities nested under ``src``/``dst``."""
    out: dict[str, Any] = {
        "id": row["id"],
        "rule": row["rule"],
        "rule_type": row["rule_type"],
        "severity": row["severity"],
        "owner": row["owner"],
        "regulations": list(row["regulations"]),
        "window": {"start": _iso(row["window_start"]), "end": _iso(row["window_end"])},
    }
    for end in ("src", "dst"):
        out[end] = {a: row[f"{end}_{a}"] for a in ENTITY if row[f"{end}_{a}"]}
    out.update(
        bytes=int(row["bytes"]),
        packets=int(row["packets"]),
        flows=int(row["flows"]),
        first_seen=_iso(row["first_seen"]),
        last_seen=_iso(row["last_seen"]),
    )
    if "evidence" in row:
        out["evidence"] = _iso(list(row["evidence"]))
    return out


def stored(
    query: Query, database: str, policy: str, start: datetime, end: datetime, *, evidence: bool = True
) -> list[dict[str, Any]]:
    """Violations of ``policy`` stored for windows starting in [start, end)."""
    cols = "* EXCEPT (version, deleted)" if evidence else "* EXCEPT (version, deleted, evidence)"
    scope = f"policy = {quote(policy)} AND window_start >= {ts(start)} AND window_start < {ts(end)}"
    sql = f"SELECT {cols} FROM {live(database, scope)} {_ORDER}"
    try:
        return [to_record(r) for r in query(sql).to_pylist()]
    except Exception as e:  # the table does not exist before the first check
        if "UNKNOWN_TABLE" in str(e) or "doesn't exist" in str(e):
            return []
        raise


def computed(
    query: Query,
    database: str,
    policy: Policy,
    start: datetime,
    end: datetime,
    *,
    window_s: int = 3600,
    evidence: int = 5,
    table: str = "flows",
) -> list[dict[str, Any]]:
    """Violations the policy finds over [start, end), computed without storing them."""
    start, end = align(start, end, window_s)
    policy, _ = resolve(policy, query, database, start, end)
    rows: list[dict[str, Any]] = []
    for rules in chunks(policy):
        sql = violations_select(
            policy, rules, start, end, window_s=window_s, database=database, table=table, evidence=evidence
        )
        rows += query(f"SELECT * EXCEPT (version, deleted) FROM ({sql}) {_ORDER}").to_pylist()
    rows.sort(key=lambda r: (r["window_start"], r["rule"], r["id"]))
    return [to_record(r) for r in rows]


def jsonl(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)


def table(records: list[dict[str, Any]]) -> str:
    """A short human-readable listing."""
    lines = []
    for r in records:
        src = "/".join(v for v in r["src"].values()) or "?"
        dst = "/".join(v for v in r["dst"].values()) or "?"
        lines.append(
            f"{r['window']['start']}  {r['severity']:<8} {r['rule']:<24} {src} -> {dst}  "
            f"bytes={r['bytes']} packets={r['packets']} flows={r['flows']}"
        )
    return "".join(line + "\n" for line in lines)
