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
from typing import Any

import pyarrow as pa

from analytics.scenario.conventions import SFLOW_FRAME_OVERHEAD, Conversation, Exported

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
