"""What a compliance report says, gathered as plain data (renderers only lay it out).

Everything is ordered deterministically and contains no generation time, so the same data
gives the same report bytes. Scope shows what was NOT observed too: exporter coverage per
bucket and the gaps, including exporters seen just before the period and silent in it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from analytics.coverage import coverage
from analytics.policy.model import Policy
from analytics.policy.results import Query, _iso, stored
from analytics.policy.sql import ts

SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")


def bucket_seconds(start: datetime, end: datetime) -> int:
    """Trend/coverage bucket: hours up to three days, days beyond."""
    return 3600 if end - start <= timedelta(days=3) else 86400


def _buckets(start: datetime, end: datetime, step: int) -> list[datetime]:
    first = int(start.timestamp()) // step * step
    return [datetime.fromtimestamp(t, UTC) for t in range(first, int(end.timestamp()), step)]


def _gaps(present: set[datetime], buckets: list[datetime], step: int) -> list[list[str]]:
    """Runs of buckets without data, as [start, end) ISO pairs."""
    out, run = [], None
    for b in buckets:
        if b not in present:
            run = run or b
        elif run:
            out.append([_iso(run), _iso(b)])
            run = None
    if run:
        out.append([_iso(run), _iso(buckets[-1] + timedelta(seconds=step))])
    return out


def scope(query: Query, db: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Centers, exporters, sampling rates, coverage and collection gaps of the period."""
    step = bucket_seconds(start, end)
    lookback = start - (end - start)
    rows = query(
        f"SELECT IPv6NumToString(exporter) AS exporter, type, "
        f"toDateTime64(toStartOfInterval(time_received, INTERVAL {step} SECOND), 3, 'UTC') AS bucket, "
        f"count() AS flows, arraySort(groupUniqArray(sampling_rate)) AS rates "
        f"FROM `{db}`.flows WHERE time_received >= {ts(lookback)} AND time_received < {ts(end)} "
        f"GROUP BY exporter, type, bucket ORDER BY exporter, type, bucket"
    ).to_pylist()
    buckets = _buckets(start, end, step)
    per: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["exporter"].removeprefix("::ffff:"), r["type"])
        e = per.setdefault(key, {"flows": 0, "rates": set(), "present": set()})
        if r["bucket"] >= start:
            e["flows"] += r["flows"]
            e["rates"].update(r["rates"])
            e["present"].add(r["bucket"])
    exporters = [
        {
            "exporter": ip,
            "type": typ,
            "flows": e["flows"],
            "sampling_rates": sorted(e["rates"]),
            "coverage": round(len(e["present"]) / len(buckets), 4) if buckets else 0.0,
            "gaps": _gaps(e["present"], buckets, step),
        }
        for (ip, typ), e in sorted(per.items())
    ]
    centers = query(
        f"SELECT c AS center, count() AS flows FROM `{db}`.flows ARRAY JOIN [src_center, dst_center] AS c "
        f"WHERE time_received >= {ts(start)} AND time_received < {ts(end)} AND c != '' "
        f"GROUP BY c ORDER BY c"
    ).to_pylist()
    cov = coverage(query, db, start, end)
    n_counted = cov["counted"]
    n_named = n_counted - cov["counted_unnamed"]
    return {
        "bucket_seconds": step,
        "buckets": len(buckets),
        "centers": centers,
        "exporters": exporters,
        "flows": n_counted,
        # A pod, a node or a named network on at least one end of the counted records.
        "enriched_share": round(n_named / n_counted, 4) if n_counted else 0.0,
        "counting": cov,
    }


def _rollup(violations: list[dict], key) -> list[dict[str, Any]]:
    acc: dict[str, dict[str, Any]] = defaultdict(lambda: {"violations": 0, "bytes": 0, "flows": 0})
    for v in violations:
        a = acc[key(v)]
        a["violations"] += 1
        a["bytes"] += v["bytes"]
        a["flows"] += v["flows"]
    return [{"name": k, **a} for k, a in sorted(acc.items())]


def _trend(violations: list[dict], buckets: list[datetime], step: int, key) -> dict[str, list[int]]:
    index = {_iso(b): i for i, b in enumerate(buckets)}
    out: dict[str, list[int]] = {}
    for v in violations:
        t = datetime.fromisoformat(v["window"]["start"].replace("Z", "+00:00"))
        slot = index.get(_iso(datetime.fromtimestamp(int(t.timestamp()) // step * step, UTC)))
        if slot is not None:
            out.setdefault(key(v), [0] * len(buckets))[slot] += 1
    return dict(sorted(out.items()))


def posture(policy: Policy, violations: list[dict], start: datetime, end: datetime) -> dict[str, Any]:
    """Summary, breakdowns by rule / tenant / center, and trends."""
    step = bucket_seconds(start, end)
    buckets = _buckets(start, end, step)
    by_rule = {r["name"]: r for r in _rollup(violations, lambda v: v["rule"])}
    rules = []
    for r in policy.rules:
        counts = by_rule.get(r.id, {"violations": 0, "bytes": 0, "flows": 0})
        rules.append(
            {
                "id": r.id,
                "type": r.type,
                "severity": r.severity,
                "owner": r.owner,
                "regulations": list(r.regulations),
                "violations": counts["violations"],
                "bytes": counts["bytes"],
                "flows": counts["flows"],
            }
        )
    severities = {s: sum(1 for v in violations if v["severity"] == s) for s in SEVERITY_ORDER}
    return {
        "violations": len(violations),
        "by_severity": severities,
        "rules_total": len(rules),
        "rules_compliant": sum(1 for r in rules if r["violations"] == 0),
        "rules": rules,
        "by_tenant": _rollup(violations, lambda v: v["src"].get("tenant", "(unknown)")),
        "by_center": _rollup(
            violations,
            lambda v: f"{v['src'].get('center', '(external)')} -> {v['dst'].get('center', '(external)')}",
        ),
        "trend_buckets": [_iso(b) for b in buckets],
        "trend_by_rule": _trend(violations, buckets, step, lambda v: v["rule"]),
        "trend_by_severity": _trend(violations, buckets, step, lambda v: v["severity"]),
    }


def exemptions(policy: Policy, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Exemptions in force for some of the period (expired ones are not)."""
    return [
        {
            "id": e.id,
            "rule": e.rule,
            "from": e.from_,
            "to": e.to,
            "ports": list(e.ports),
            "approver": e.approver,
            "reason": e.reason,
            "ticket": e.ticket,
            "starts": _iso(e.starts) if e.starts else "",
            "expires": _iso(e.expires),
        }
        for e in sorted(policy.exemptions, key=lambda e: e.id)
        if e.in_force(start, end)
    ]


def gather(
    query: Query,
    db: str,
    policy: Policy,
    policy_text: str,
    start: datetime,
    end: datetime,
    *,
    evidence_limit: int = 50,
) -> dict[str, Any]:
    """The whole report as data, from stored violations of ``policy`` and the flows table."""
    violations = stored(query, db, policy.name, start, end)
    top = sorted(violations, key=lambda v: (-v["bytes"], v["id"]))[:evidence_limit]
    return {
        "title": f"Network compliance report: {policy.name}",
        "period": {"start": _iso(start), "end": _iso(end)},
        "policy": {
            "name": policy.name,
            "description": policy.description,
            "sha256": hashlib.sha256(policy_text.encode()).hexdigest(),
        },
        "scope": scope(query, db, start, end),
        "posture": posture(policy, violations, start, end),
        "exemptions": exemptions(policy, start, end),
        "violations": [{k: v[k] for k in v if k != "evidence"} for v in violations],
        "evidence": [{"id": v["id"], "rule": v["rule"], "flows": v["evidence"]} for v in top],
    }


#: The evidence appendix's columns, shared by the HTML and PDF layouts.
EVIDENCE_HEADER = [
    "source",
    "destination",
    "sport",
    "dport",
    "proto",
    "flows",
    "packets",
    "bytes",
    "first seen",
    "detail",
]
_EVIDENCE_KEYS = (
    "src_addr",
    "dst_addr",
    "src_port",
    "dst_port",
    "proto",
    "flows",
    "packets",
    "bytes",
    "first_seen",
    "detail",  # e.g. the NetworkPolicies isolating the pod; '' for most rule types
)


def evidence_rows(evidence: dict) -> list[list]:
    """One row per evidence flow of a violation, in :data:`EVIDENCE_HEADER` order."""
    return [[f.get(k, "") for k in _EVIDENCE_KEYS] for f in evidence["flows"]]


#: The violations-by-rule table's columns, shared by the HTML and PDF layouts.
RULE_HEADER = ["rule", "type", "severity", "owner", "regulations", "violations", "flows", "bytes"]
_RULE_KEYS = ("id", "type", "severity", "owner", "regulations", "violations", "flows", "bytes")


def rule_rows(posture: dict) -> list[list]:
    """One row per rule of the posture summary, in :data:`RULE_HEADER` order."""
    return [[r[k] for k in _RULE_KEYS] for r in posture["rules"]]


#: The scope section's exporter table, shared by the HTML and PDF layouts.
EXPORTER_HEADER = ["exporter", "type", "flows", "sampling rates", "coverage", "collection gaps"]


def exporter_rows(scope: dict[str, Any]) -> list[list[Any]]:
    """One row per exporter under :data:`EXPORTER_HEADER` (``none`` where nothing is known)."""
    return [
        [
            e["exporter"],
            e["type"],
            e["flows"],
            e["sampling_rates"] or ["none"],
            f"{e['coverage']:.1%}",
            "; ".join(f"{a} – {b}" for a, b in e["gaps"]) or "none",
        ]
        for e in scope["exporters"]
    ]


def entity_name(e: dict[str, str]) -> str:
    """A violation's end as one name: tenant/namespace/workload/ip/zone/center, those known."""
    keys = ("tenant", "namespace", "workload", "ip", "zone", "center")
    return "/".join(e[k] for k in keys if e.get(k)) or "(unknown)"
