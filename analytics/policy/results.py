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
from analytics.policy.model import PROTOCOL_NAMES, Policy
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


def _proto_name(n: int) -> str:
    return PROTOCOL_NAMES.get(int(n), str(n))


def to_record(row: dict[str, Any]) -> dict[str, Any]:
    """A violation row → the JSON line shape: one conversation, ``client`` and ``server`` ends."""
    out: dict[str, Any] = {
        "id": row["id"],
        "rule": row["rule"],
        "rule_type": row["rule_type"],
        "severity": row["severity"],
        "owner": row["owner"],
        "regulations": list(row["regulations"]),
        "why": row.get("why", ""),
        "exemptions_considered": row.get("exemptions", ""),
        "window": {"start": _iso(row["window_start"]), "end": _iso(row["window_end"])},
    }
    for end, role in (("src", "client"), ("dst", "server")):
        out[role] = {a: row[f"{end}_{a}"] for a in ENTITY if row[f"{end}_{a}"]}
    out.update(
        port=int(row["port"]),
        proto=_proto_name(row["proto"]),
        client_ports=int(row["client_ports"]),
        bytes=int(row["bytes"]),
        packets=int(row["packets"]),
        flows=int(row["flows"]),
        first_seen=_iso(row["first_seen"]),
        last_seen=_iso(row["last_seen"]),
    )
    if "evidence" in row:
        out["evidence"] = [dict(_iso(e), proto=_proto_name(e["proto"])) for e in row["evidence"]]
    return out


def conversations(records: list[dict[str, Any]], samples: int = 5) -> list[dict[str, Any]]:
    """Window rows of the same rule and conversation merged: first/last seen over the period,
    bytes summed, the largest sample flows kept, windows counted (pure)."""
    merged: dict[tuple, dict[str, Any]] = {}
    for r in records:
        k = (r["rule"], r["client"].get("ip"), r["server"].get("ip"), r["port"], r["proto"])
        m = merged.get(k)
        if m is None:
            merged[k] = m = dict(r, windows=0, evidence=list(r.get("evidence", [])))
            m.pop("window")
            m["id"] = r["id"]
        else:
            for key in ("bytes", "packets", "flows"):
                m[key] += r[key]
            m["first_seen"] = min(m["first_seen"], r["first_seen"])
            m["last_seen"] = max(m["last_seen"], r["last_seen"])
            m["client_ports"] = max(m["client_ports"], r["client_ports"])
            notes = {x for x in (m["exemptions_considered"], r["exemptions_considered"]) if x}
            m["exemptions_considered"] = "; ".join(sorted(notes))
            m["evidence"] += r.get("evidence", [])
        m["windows"] += 1
        m["evidence"] = sorted(m["evidence"], key=lambda e: -e["bytes"])[:samples]
    return sorted(merged.values(), key=lambda r: (r["first_seen"], r["rule"], r["id"]))


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
    """A short human-readable listing, one conversation a line."""
    lines = []
    for r in records:
        client = _end_text(r["client"])
        server = _end_text(r["server"])
        lines.append(
            f"{r['first_seen']} .. {r['last_seen']}  {r['severity']:<8} {r['rule']:<24} {client} -> {server} "
            f"{r['port']}/{r['proto']}  bytes={r['bytes']} flows={r['flows']}"
            + (
                f"  [exemption considered: {r['exemptions_considered']}]"
                if r["exemptions_considered"]
                else ""
            )
        )
    return "".join(line + "\n" for line in lines)


def _end_text(e: dict[str, Any]) -> str:
    name = "/".join(e[k] for k in ("tenant", "namespace", "pod") if e.get(k)) or e.get("workload", "")
    return f"{name}({e.get('ip', '?')})" if name else e.get("ip", "?")
