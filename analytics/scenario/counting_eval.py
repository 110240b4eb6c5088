"""Scores the counting model against the truth of :mod:`analytics.scenario.conventions`.

Per conversation and direction, the scaled packets and bytes of the records the model counts
must equal the truth within the sampling error, and the roles it gives (who opened it) must
match. The bound, for a direction of ``n`` packets of ``s`` bytes counted at an observation
point sampling 1 in ``N`` (each packet kept with probability 1/N, the estimate N·k):

    σ = sqrt(n · (N − 1)) packets;  |estimate − n| ≤ 5σ + 3N packets

(exact when N = 1), and the same for bytes with σ·s (sFlow reports frame lengths: up to
18 bytes a packet more). Per-conversation bounds are loose when sampling is heavy; a
convention that counts some packets twice is caught by the totals per kind of path, whose
bound is 4.5 · sqrt(Σ σ²). Conversations that no observation point of a convention can see
(intra-node traffic under routers) are reported as unobservable, not scored.
"""

from __future__ import annotations

import ipaddress
import math
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from analytics.scenario.conventions import SFLOW_FRAME_OVERHEAD, Conversation, Exported, exemption_expiry

Query = Callable[[str], pa.Table]


def _text(ip: str) -> str:
    return str(ipaddress.ip_address(ip))


def _kind(c: Conversation) -> str:
    if not c.client.is_pod or not c.server.is_pod:
        return "external"
    if c.client.node == c.server.node:
        return "intra_node"
    return "cross_center" if c.client.center != c.server.center else "cross_node"


def measured(query: Query, database: str) -> dict[tuple, dict[str, Any]]:
    """Counted, scaled packets and bytes per (src, dst, sport, dport, proto), with the initiator."""
    rows = query(
        "SELECT replaceRegexpOne(IPv6NumToString(src_addr), '^::ffff:', '') AS src, "
        "replaceRegexpOne(IPv6NumToString(dst_addr), '^::ffff:', '') AS dst, src_port, dst_port, proto, "
        "sum(packets * greatest(sampling_rate, 1)) AS packets, sum(bytes * greatest(sampling_rate, 1)) AS bytes, "
        "max(greatest(sampling_rate, 1)) AS rate, groupUniqArray(initiator) AS initiators, "
        "groupUniqArray(count_reason) AS reasons "
        f"FROM `{database}`.flows WHERE counted = 1 GROUP BY src, dst, src_port, dst_port, proto"
    ).to_pylist()
    return {(r["src"], r["dst"], r["src_port"], r["dst_port"], r["proto"]): r for r in rows}


def score(query: Query, database: str, convs: list[Conversation], exp: Exported) -> dict[str, Any]:
    """The convention's figures: bound violations, totals per kind, role accuracy, reasons."""
    got = measured(query, database)
    reasons = query(
        f"SELECT count_reason AS reason, counted, count() AS n FROM `{database}`.flows "
        "GROUP BY reason, counted ORDER BY reason"
    ).to_pylist()
    outside: list[dict[str, Any]] = []
    kinds: dict[str, dict[str, float]] = defaultdict(lambda: {"truth": 0.0, "estimate": 0.0, "var": 0.0})
    roles = {"right": 0, "wrong": 0, "unknown": 0}
    scored = 0
    for c in convs:
        if c.cid in exp.unobservable:
            continue
        scored += 1
        for fwd in (True, False):
            src, dst = (c.client, c.server) if fwd else (c.server, c.client)
            sport, dport = (c.sport, c.dport) if fwd else (c.dport, c.sport)
            n = c.fwd_packets if fwd else c.rev_packets
            size = c.fwd_size if fwd else c.rev_size
            row = got.get((_text(src.ip), _text(dst.ip), sport, dport, c.proto))
            est = row["packets"] if row else 0
            rate = row["rate"] if row else max(exp.rates or {1})  # nothing counted: the sparsest sampling
            sigma = math.sqrt(n * (rate - 1))
            k = kinds[_kind(c)]
            k["truth"] += n
            k["estimate"] += est
            k["var"] += n * (rate - 1)
            if abs(est - n) > 5 * sigma + 3 * (rate - 1):
                outside.append({"cid": c.cid, "kind": _kind(c), "fwd": fwd, "truth": n, "estimate": est,
                                "rate": rate, "reasons": row["reasons"] if row else []})  # fmt: skip
            elif row:
                b = row["bytes"]
                slack = 5 * sigma * size + 3 * (rate - 1) * size
                if not (n * size - slack <= b <= n * (size + SFLOW_FRAME_OVERHEAD) + slack):
                    outside.append({"cid": c.cid, "kind": _kind(c), "fwd": fwd, "truth_bytes": n * size,
                                    "estimate_bytes": b, "rate": rate})  # fmt: skip
            if row:
                inits = set(row["initiators"])
                want = "src" if fwd else "dst"
                if inits == {want}:
                    roles["right"] += 1
                elif inits <= {"", want}:
                    roles["unknown"] += 1
                else:
                    roles["wrong"] += 1
    totals = {}
    for name, k in sorted(kinds.items()):
        bound = 4.5 * math.sqrt(k["var"])
        totals[name] = {
            "truth_packets": int(k["truth"]),
            "estimate_packets": round(k["estimate"]),
            "ratio": round(k["estimate"] / k["truth"], 4) if k["truth"] else None,
            "within_bound": abs(k["estimate"] - k["truth"]) <= bound,
        }
    judged = sum(roles.values())
    return {
        "convention": exp.convention,
        "sampling": exp.sampling,
        "conversations": len(convs),
        "scored": scored,
        "unobservable": len(exp.unobservable),
        "outside_bound": outside,
        "totals": totals,
        "roles_right": round(roles["right"] / judged, 4) if judged else None,
        "roles_wrong": round(roles["wrong"] / judged, 4) if judged else None,
        "roles_unknown": round(roles["unknown"] / judged, 4) if judged else None,
        "records_by_reason": {
            f"{r['reason']}{'' if r['counted'] else ' (not counted)'}": r["n"] for r in reasons
        },
    }


def passed(result: dict[str, Any], min_roles: float = 0.95) -> bool:
    """Every direction within its bound, every total within its bound, roles right ≥ ``min_roles``."""
    return (
        not result["outside_bound"]
        and all(t["within_bound"] for t in result["totals"].values())
        and (result["roles_right"] or 0) >= min_roles
    )


# ---- policy verdicts on the same conversations ----------------------------------------------------------
SHARED_TENANT = "tenant03"  # the bank's last tenant (Bank(tenants=3)) serves the others: shared services


def policy(start_ms: int, span_ms: int) -> dict[str, Any]:
    """Rules about who opens a conversation, in the version 2 language, with near-misses that
    must not be flagged: replies (internet clients of web pods), the shared tenant's services,
    the declared replication pair, and a cross-center exemption that expires mid-scenario."""
    expires = datetime.fromtimestamp(exemption_expiry(start_ms, span_ms) / 1000, UTC)
    return {
        "version": 2,
        "name": "convention-bank",
        "zones": {
            "pods": {"match": [{"is": "pod"}]},
            "internet": {"match": [{"is": "external"}]},
            "web": {"match": [{"workload": ["web"]}]},
            "cache": {"match": [{"workload": ["cache"]}]},
            "api-dc1": {"match": [{"workload": ["api"], "center": ["dc1"]}]},
            "db-dc2": {"match": [{"workload": ["db"], "center": ["dc2"]}]},
            "db-site-a": {"match": [{"workload": ["db"], "site": ["site-a"]}]},
            "db-dr": {"match": [{"workload": ["db"], "center": ["dc3"]}]},
        },
        "rules": [
            {"id": "no-pod-to-internet", "type": "deny", "from": "pods", "to": "internet", "severity": "high"},
            {"id": "web-not-to-cache", "type": "deny", "from": "web", "to": "cache", "severity": "medium"},
            {"id": "api-dc1-not-to-db-dc2", "type": "deny", "from": "api-dc1", "to": "db-dc2",
             "ports": ["postgres"], "protocols": ["tcp"], "severity": "medium"},
            {"id": "tenant-isolation", "type": "tenant_isolation", "shared": [SHARED_TENANT]},
            {"id": "residency-site-a", "type": "residency", "within": "site", "allowed": ["site-a"],
             "allow": [{"from": "db-site-a", "to": "db-dr", "ports": ["postgres"]}]},
        ],
        "exemptions": [
            {"id": "cutover", "rule": "api-dc1-not-to-db-dc2", "from": "api-dc1", "to": "db-dc2",
             "ports": ["postgres"], "protocols": ["tcp"], "expires": expires.isoformat(),
             "review": expires.date().isoformat(), "approver": "CISO", "reason": "database cutover"},
        ],
    }  # fmt: skip


def policy_truth(c: Conversation, pods: dict[str, Any], expiry_ms: int) -> set[str]:
    """The rules ``c`` violates (its client opened it); ``pods``: address → bank Pod."""
    out = set()
    cp, sp = pods.get(c.client.ip), pods.get(c.server.ip)
    client_w, server_w = (cp.service if cp else ""), (sp.service if sp else "")
    if c.client.is_pod and not c.server.is_pod:
        out.add("no-pod-to-internet")
    if client_w == "web" and server_w == "cache":
        out.add("web-not-to-cache")
    if client_w == "api" and c.client.center == 1 and server_w == "db" and c.server.center == 2:
        if c.start_ms >= expiry_ms:  # the exemption covers the conversations that ended before it expired
            out.add("api-dc1-not-to-db-dc2")
    if cp and sp and cp.tenant != sp.tenant and SHARED_TENANT not in (cp.tenant, sp.tenant):
        out.add("tenant-isolation")
    if cp and sp and 3 in (cp.center, sp.center):  # an end in site-b
        pair = client_w == "db" and cp.center != 3 and server_w == "db" and sp.center == 3 and c.dport == 5432
        if not pair:
            out.add("residency-site-a")
    return out


def near_miss(c: Conversation, pods: dict[str, Any], expiry_ms: int) -> str:
    """The near-miss class of a conversation that must not be flagged by the rule it resembles."""
    cp, sp = pods.get(c.client.ip), pods.get(c.server.ip)
    if c.kind == "inbound":
        return "reply_of_pod_to_internet_client"
    if c.kind == "shared" and cp and sp and cp.tenant != sp.tenant:
        return "shared_service_across_tenants"
    if c.kind == "replication" and sp and sp.center == 3:
        return "declared_replication_pair"
    if c.kind == "cross_center" and c.start_ms + c.duration_ms < expiry_ms:
        return "exempt_before_expiry"
    return ""


def policy_score(
    query: Query,
    database: str,
    convs: list[Conversation],
    exp: Exported,
    pods: dict[str, Any],
    expiry_ms: int,
) -> dict[str, Any]:
    """Precision and recall of each rule over the conversations the convention let anyone see, and
    the near-misses seen (each must be flagged by no rule it resembles)."""
    rows = query(
        f"SELECT rule, evidence FROM `{database}`.violations FINAL WHERE deleted = 0 AND policy = 'convention-bank'"
    ).to_pylist()
    flagged: dict[str, set[tuple]] = defaultdict(set)
    for r in rows:
        for e in r["evidence"]:
            flagged[r["rule"]].add((_text(e["src_addr"]), e["src_port"], _text(e["dst_addr"]), e["dst_port"]))
    seen = measured(query, database)
    rules = [x["id"] for x in policy(0, 0)["rules"]]
    out: dict[str, Any] = {}
    misses: dict[str, dict[str, int]] = defaultdict(lambda: {"seen": 0, "flagged": 0})
    after_expiry = {"seen": 0, "flagged": 0}
    for rule in rules:
        tp = fp = fn = 0
        for c in convs:
            observed = any(
                k in seen
                for k in (
                    (_text(c.client.ip), _text(c.server.ip), c.sport, c.dport, c.proto),
                    (_text(c.server.ip), _text(c.client.ip), c.dport, c.sport, c.proto),
                )
            )
            if not observed:
                continue
            key = (_text(c.client.ip), c.sport, _text(c.server.ip), c.dport)
            hit = key in flagged[rule]
            want = rule in policy_truth(c, pods, expiry_ms)
            tp += hit and want
            fp += hit and not want
            fn += want and not hit
            nm = near_miss(c, pods, expiry_ms)
            if nm and not want:
                misses[nm]["seen"] += rule == rules[0]
                misses[nm]["flagged"] += hit
            if rule == "api-dc1-not-to-db-dc2" and c.kind == "cross_center" and c.start_ms >= expiry_ms:
                after_expiry["seen"] += 1
                after_expiry["flagged"] += hit
        reversed_hits = sum(
            1 for c in convs if (_text(c.server.ip), c.dport, _text(c.client.ip), c.sport) in flagged[rule]
        )
        out[rule] = {
            "violations": tp + fn,
            "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
            "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
            "replies_flagged": reversed_hits,
        }
    out["near_misses"] = {**dict(misses), "flagged_after_expiry": after_expiry}
    return out
