"""What a compliance report says, gathered as plain data (renderers only lay it out).

Everything is ordered deterministically; the only time that is not the data's is the generation
time (``generated``, shown and in the PDF's CreationDate), so the same data rendered at the same
time gives the same bytes. One counting method throughout: records counted by the counting model
(:mod:`netobs.counting`); violations are conversations (client, server, port, protocol) per rule.
Scope shows what was NOT counted and why (duplicates, unnamed ends, outside retention, not yet
final), and what was NOT observed: exporter coverage per bucket and the gaps, including
exporters seen just before the period and silent in it. The evidence is limited (the largest
conversations per rule); the full list goes into a CSV whose SHA-256 the manifest records.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from analytics.coverage import coverage
from analytics.policy.model import PROTOCOL_NAMES, Policy
from analytics.policy.results import Query, _iso, conversations, stored
from analytics.policy.sql import ts
from netobs import counting

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


def scope(
    query: Query,
    db: str,
    start: datetime,
    end: datetime,
    generated: datetime | None = None,
    retention_days: int = 0,
    rollups: tuple[tuple[str, int], ...] = (),
) -> dict[str, Any]:
    """Centers, exporters, sampling rates, what was counted and what not, and collection gaps.

    ``rollups``: the traffic rollups and their retention days, finest first (what outside the raw
    records' retention can still be counted from)."""
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
        # a record between two ends of one center counts once there (and once in each of two centers)
        f"SELECT c AS center, count() AS flows FROM `{db}`.flows "
        f"ARRAY JOIN arrayDistinct([src_center, dst_center]) AS c "
        f"WHERE {counting.in_event_range(ts(start), ts(end))} AND {counting.COUNTED} AND c != '' "
        f"GROUP BY c ORDER BY c"
    ).to_pylist()
    cov = coverage(query, db, start, end)
    n_counted = cov["counted"]
    n_named = n_counted - cov["counted_unnamed"]
    return {
        "categories": categories(query, db, start, end, cov, generated, retention_days, rollups),
        "bucket_seconds": step,
        "buckets": len(buckets),
        "centers": centers,
        "exporters": exporters,
        "flows": n_counted,
        # A pod, a node or a named network on at least one end of the counted records.
        "enriched_share": round(n_named / n_counted, 4) if n_counted else 0.0,
        "counting": cov,
    }


def categories(
    query: Query,
    db: str,
    start: datetime,
    end: datetime,
    cov: dict[str, Any],
    generated: datetime | None,
    retention_days: int,
    rollups: tuple[tuple[str, int], ...] = (),
) -> list[dict[str, Any]]:
    """Every record of the period in one category, with the count and the reason (the coverage table)."""
    rows = [
        {
            "category": "counted",
            "records": cov["counted"] - cov["counted_unnamed"],
            "reason": "counted once, at the first observation point that saw the packets; a pod, node or "
            "named network on at least one end",
        },
        {
            "category": "counted, unnamed",
            "records": cov["counted_unnamed"],
            "reason": "counted, but neither end is a known pod, node or network: rules about zones cannot "
            "place it",
        },
    ]
    for r in cov["not_counted"]:
        rows.append({"category": f"excluded: {r['reason']}", "records": r["records"], "reason": r["why"]})
    if retention_days and generated is not None:
        kept_from = generated - timedelta(days=retention_days)
        if start < kept_from:
            rows.append(
                outside_retention(query, db, start, min(end, kept_from), generated, retention_days, rollups)
            )
    if generated is not None:
        final = generated - timedelta(seconds=counting.ALLOWED_LATENESS_S)
        if end > final:
            late = query(
                f"SELECT count() AS n, countIf({counting.NAMED}) AS named FROM `{db}`.flows "
                f"WHERE {counting.in_event_range(ts(max(start, final)), ts(end))} AND {counting.COUNTED}"
            ).to_pylist()[0]
            n = late["n"]
            # in this category only, not also in the counted ones (every record in one category)
            rows[0]["records"] -= late["named"]
            rows[1]["records"] -= n - late["named"]
            rows.append({
                "category": "not evaluated (not final)",
                "records": n,
                "reason": f"event time after {_iso(final)}: late records may still arrive; evaluate again "
                "after the watermark",
            })  # fmt: skip
    rows.append({
        "category": "total",
        "records": cov["records"],
        "reason": "records received with an event time in the period: the sum of the categories above"
        + (" (outside retention is not in it: those records are no longer stored)"
           if any(r["category"] == "outside retention" for r in rows) else ""),
    })  # fmt: skip
    return rows


def category_count(row: dict[str, Any]) -> str | int:
    """A coverage category's count as shown: the number, "at least N" or "unknown"."""
    if row["records"] is None:
        return "unknown"
    return f"at least {row['records']:,}" if row.get("at_least") else row["records"]


def outside_retention(
    query: Query,
    db: str,
    start: datetime,
    upto: datetime,
    generated: datetime,
    retention_days: int,
    rollups: tuple[tuple[str, int], ...],
) -> dict[str, Any]:
    """The counted records of [start, upto) whose raw records the store has deleted (TTL), counted
    from the traffic rollups (``rollups``: (table, retention days), finest first), which keep the
    counted records' number per bucket but not the ends, ports and names the rules judge.

    Each part of the range is taken from the finest rollup still covering it; raw records the TTL
    has not removed yet are subtracted (they were counted above). A part no rollup covers any more
    makes the count a lower bound ("at least"), and no covering rollup at all makes it unknown."""
    pieces, lo_known, hi = [], upto, upto
    for table, days in rollups:
        covered_from = max(start, generated - timedelta(days=days)) if days else start
        if covered_from >= hi:
            continue
        pieces.append((table, days, covered_from, hi))
        lo_known, hi = covered_from, covered_from
        if covered_from == start:
            break
    head = f"the store keeps raw records {retention_days} days: records before {_iso(upto)} are deleted"
    n, used = 0.0, []
    try:
        for table, days, lo, hi in pieces:
            n += (
                query(
                    f"SELECT sum(flows) AS n FROM `{db}`.`{table}` WHERE time >= {ts(lo)} AND time < {ts(hi)}"
                )
                .column("n")[0]
                .as_py()
                or 0.0
            )
            used.append(f"{table} (kept {days or 'forever'} days)" if days else f"{table} (kept forever)")
        left = (
            query(
                f"SELECT count() AS n FROM `{db}`.flows WHERE {counting.in_event_range(ts(start), ts(upto))} "
                f"AND {counting.COUNTED}"
            )
            .column("n")[0]
            .as_py()
        )
    except Exception as e:  # a store without rollups (pre-19 server): nothing left to count from
        return {"category": "outside retention", "records": None,
                "reason": f"{head}; no rollup to count them from ({str(e).splitlines()[0][:80]}): count unknown"}  # fmt: skip
    if not pieces:
        names = ", ".join(f"{t} {d} days" for t, d in rollups) or "none configured"
        return {"category": "outside retention", "records": None,
                "reason": f"{head}, and the rollups ({names}) no longer reach back to {_iso(start)}: "
                "count unknown"}  # fmt: skip
    count = max(0, round(n) - int(left))
    partial = lo_known > start
    return {
        "category": "outside retention",
        "records": count,
        "at_least": partial,
        "reason": f"{head} and could not be evaluated; {'at least ' if partial else ''}this many counted "
        f"records, from {' and '.join(used)}, which keeps totals but not the ends and ports rules judge"
        + (f"; before {_iso(lo_known)} no rollup reaches: not counted" if partial else ""),
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


def posture(
    policy: Policy, violations: list[dict], start: datetime, end: datetime, windows: list[dict] | None = None
) -> dict[str, Any]:
    """Summary, breakdowns by rule / client tenant / center pair (violating conversations), and trends
    (conversations violating in each bucket, from the per-window rows)."""
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
        "by_tenant": _rollup(violations, lambda v: v["client"].get("tenant", "(no tenant)")),
        "by_center": _rollup(
            violations,
            lambda v: f"{v['client'].get('center', '(outside)')} -> {v['server'].get('center', '(outside)')}",
        ),
        "trend_buckets": [_iso(b) for b in buckets],
        "trend_by_rule": _trend(windows or [], buckets, step, lambda v: v["rule"]),
        "trend_by_severity": _trend(windows or [], buckets, step, lambda v: v["severity"]),
    }


def in_force_text(e: Any, start: datetime, end: datetime) -> str:
    """When in the period an exemption was in force (an auditor asks: the whole period, or until
    it expired part way through?)."""
    since = e.starts if e.starts is not None and e.starts > start else None
    until = e.expires if e.expires is not None and e.expires < end else None
    if since is None and until is None:
        return "whole period"
    parts = [f"from {_iso(since)[:16].replace('T', ' ')}" if since else "",
             f"until {_iso(until)[:16].replace('T', ' ')} (expired in the period)" if until else ""]  # fmt: skip
    return " ".join(x for x in parts if x)


def review_text(e: Any, generated: datetime | None) -> str:
    """The review date, marked overdue when it passed before the report was generated."""
    overdue = generated is not None and e.review < generated.date()
    return f"{e.review.isoformat()} (overdue)" if overdue else e.review.isoformat()


def exemptions(
    policy: Policy, start: datetime, end: datetime, generated: datetime | None = None
) -> list[dict[str, Any]]:
    """Exemptions in force for some of the period (expired ones are not), with when they were."""
    return [
        {
            "id": e.id,
            "rule": e.rule,
            "from": e.from_ if isinstance(e.from_, str) else _selector_text(e.from_),
            "to": e.to if isinstance(e.to, str) else _selector_text(e.to),
            "ports": [str(x) for x in e.ports] + [str(x) for x in e.protocols] or ["any"],
            "approver": e.approver,
            "reason": e.reason,
            "ticket": e.ticket,
            "starts": _iso(e.starts) if e.starts else "not set",
            "expires": _iso(e.expires) if e.expires else "never",
            "review": review_text(e, generated),
            "in_force": in_force_text(e, start, end),
        }
        for e in sorted(policy.exemptions, key=lambda e: e.id)
        if e.in_force(start, end)
    ]


def _selector_text(m: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in m.model_dump(exclude_defaults=True, by_alias=True).items())


#: The full list's columns (the CSV attached to the report).
CSV_COLUMNS = (
    "rule", "severity", "client_ip", "client_tenant", "client_namespace", "client_pod", "client_workload",
    "server_ip", "server_tenant", "server_namespace", "server_pod", "server_workload", "server_node",
    "server_subnet", "port", "proto", "client_ports", "flows", "packets", "bytes", "first_seen", "last_seen",
    "windows", "exemptions_considered", "id",
)  # fmt: skip


def violations_csv(violations: list[dict[str, Any]]) -> str:
    """Every violating conversation, one row each (the report shows the largest ones)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for v in violations:
        row = []
        for c in CSV_COLUMNS:
            end, _, attr = c.partition("_")
            row.append(v[end].get(attr, "") if end in ("client", "server") else v.get(c, ""))
        w.writerow(row)
    return out.getvalue()


def gather(
    query: Query,
    db: str,
    policy: Policy,
    policy_text: str,
    start: datetime,
    end: datetime,
    *,
    evidence_limit: int = 5,
    generated: datetime | None = None,
    retention_days: int = 0,
    rollups: tuple[tuple[str, int], ...] = (),
) -> dict[str, Any]:
    """The whole report as data, from stored violations of ``policy`` and the flows table.

    ``evidence_limit``: conversations per rule shown with their sample flows (largest first)."""
    generated = generated or datetime.now(UTC)
    windows = stored(query, db, policy.name, start, end)
    violations = conversations(windows, samples=3)
    by_rule: dict[str, list[dict]] = defaultdict(list)
    for v in sorted(violations, key=lambda v: (-v["bytes"], v["id"])):
        by_rule[v["rule"]].append(v)
    top = [v for rule in sorted(by_rule) for v in by_rule[rule][:evidence_limit]]
    return {
        "title": f"Network compliance report: {policy.name}",
        "generated": _iso(generated),
        "period": {"start": _iso(start), "end": _iso(end)},
        "policy": {
            "name": policy.name,
            "description": policy.description,
            "sha256": hashlib.sha256(policy_text.encode()).hexdigest(),
        },
        "scope": scope(query, db, start, end, generated, retention_days, rollups),
        "posture": posture(policy, violations, start, end, windows),
        "exemptions": exemptions(policy, start, end, generated),
        "violations_total": len(violations),
        "violations": [{k: v[k] for k in v if k != "evidence"} for v in top],
        "evidence": [{"id": v["id"], "rule": v["rule"], "flows": v["evidence"]} for v in top],
        "csv": violations_csv(violations),
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
    """One row per sample flow of a violating conversation, in :data:`EVIDENCE_HEADER` order
    (ports as text: never with thousands separators; protocols by name; times to the second)."""
    out = []
    for f in evidence["flows"]:
        row = []
        for k in _EVIDENCE_KEYS:
            v = f.get(k, "")
            if k == "dst_port":
                v = port_text(v, f.get("proto", ""), with_proto=False)
            elif k == "src_port":
                v = str(v)
            elif k == "proto":
                v = PROTOCOL_NAMES.get(v, str(v)) if isinstance(v, int) else v
            elif k == "first_seen":
                v = short_time(v)
            row.append(v)
        out.append(row)
    return out


#: ICMP types by name (exporters put ``type * 256 + code`` in the destination port).
_ICMP_TYPES = {"icmp": {0: "echo-reply", 3: "unreachable", 8: "echo-request", 11: "time-exceeded"},
               "icmpv6": {1: "unreachable", 3: "time-exceeded", 128: "echo-request", 129: "echo-reply"}}  # fmt: skip


def port_text(port: Any, proto: Any, with_proto: bool = True) -> str:
    """A server port as a reader wants it: ``443/tcp``; ICMP's type and code by name
    (``echo-request/icmp``, ``type 5 code 1/icmp``), not the exporter's ``type * 256 + code``."""
    name = PROTOCOL_NAMES.get(proto, str(proto)) if isinstance(proto, int) else str(proto)
    if name in _ICMP_TYPES and str(port).isdigit():
        t, c = divmod(int(port), 256)
        text = _ICMP_TYPES[name].get(t, f"type {t}") + (f" code {c}" if c else "")
    else:
        text = str(port)
    return f"{text}/{name}" if with_proto else text


def short_time(iso: str) -> str:
    """'2026-06-01T10:15:00.000Z' → '2026-06-01 10:15:00' (a table cell that wraps at the space)."""
    return iso.replace("T", " ").removesuffix("Z").split(".")[0] if iso else iso


#: The violations-by-rule table's columns, shared by the HTML and PDF layouts.
RULE_HEADER = ["rule", "type", "severity", "owner", "regulations", "conversations", "flows", "bytes"]
_RULE_KEYS = ("id", "type", "severity", "owner", "regulations", "violations", "flows", "bytes")


def rule_rows(posture: dict) -> list[list]:
    """One row per rule of the posture summary, in :data:`RULE_HEADER` order."""
    return [[r[k] for k in _RULE_KEYS] for r in posture["rules"]]


#: The scope section's exporter table, shared by the HTML and PDF layouts.
EXPORTER_HEADER = ["exporter", "type", "records received", "sampling rates", "coverage", "collection gaps"]


def exporter_rows(scope: dict[str, Any]) -> list[list[Any]]:
    """One row per exporter under :data:`EXPORTER_HEADER` (``none`` where nothing is known)."""
    return [
        [
            e["exporter"],
            e["type"],
            e["flows"],
            [str(r) for r in e["sampling_rates"]] or ["none"],
            f"{e['coverage']:.1%}",
            "; ".join(f"{short_time(a)} – {short_time(b)}" for a, b in e["gaps"]) or "none",
        ]
        for e in scope["exporters"]
    ]


def entity_name(e: dict[str, str]) -> str:
    """A conversation's end in a few words that wrap between names: tenant · namespace · pod (address);
    a node or a named network for ends that are not pods."""
    names: list[str] = []
    for k in (
        ("tenant", "namespace", "pod")
        if e.get("pod")
        else ("tenant", "namespace", "workload", "node", "subnet")
    ):
        if e.get(k) and e[k] not in names:
            names.append(e[k])
    ip = e.get("ip", "")
    return (" · ".join(names) + (f" ({ip})" if ip else "")) if names else (ip or "(unknown)")
