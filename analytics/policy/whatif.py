"""What-if: replay a candidate policy over history and compare with the current one.

Violations are compared by id (rule, window, entities): a candidate rule that keeps its id
and flags the same traffic is "unchanged"; otherwise a violation is "added" or "removed".
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from analytics.policy.model import Policy
from analytics.policy.results import Query, computed


def compare(current: list[dict[str, Any]], candidate: list[dict[str, Any]]) -> dict[str, Any]:
    """Added / removed / unchanged violations (pure), with per-rule counts."""
    cur = {r["id"]: r for r in current}
    cand = {r["id"]: r for r in candidate}
    added = [cand[i] for i in sorted(cand.keys() - cur.keys())]
    removed = [cur[i] for i in sorted(cur.keys() - cand.keys())]
    rules = sorted({r["rule"] for r in current} | {r["rule"] for r in candidate})
    per_rule = {
        rule: {
            "current": Counter(r["rule"] for r in current)[rule],
            "candidate": Counter(r["rule"] for r in candidate)[rule],
        }
        for rule in rules
    }
    return {
        "added": added,
        "removed": removed,
        "unchanged": len(cur.keys() & cand.keys()),
        "per_rule": per_rule,
    }


def whatif(
    query: Query,
    database: str,
    current: Policy,
    candidate: Policy,
    start: datetime,
    end: datetime,
    *,
    window_s: int = 3600,
) -> dict[str, Any]:
    """Evaluate both policies over [start, end) without storing anything, and compare."""
    a = computed(query, database, current, start, end, window_s=window_s, evidence=1)
    b = computed(query, database, candidate, start, end, window_s=window_s, evidence=1)
    return compare(a, b)


def render(diff: dict[str, Any]) -> str:
    lines = [f"{'rule':<32} {'current':>8} {'candidate':>10}"]
    for rule, n in diff["per_rule"].items():
        lines.append(f"{rule:<32} {n['current']:>8} {n['candidate']:>10}")
    lines.append(f"added {len(diff['added'])}, removed {len(diff['removed'])}, unchanged {diff['unchanged']}")
    for tag, rows in (("+", diff["added"]), ("-", diff["removed"])):
        for r in rows:
            client = r.get("client", r.get("src")) or {}
            server = r.get("server", r.get("dst")) or {}
            src = "/".join(str(v) for v in client.values() if v) or "?"
            dst = "/".join(str(v) for v in server.values() if v) or "?"
            lines.append(f"{tag} {r['window']['start']} {r['rule']} {src} -> {dst} bytes={r['bytes']}")
    return "\n".join(lines) + "\n"
