"""Policy → ClickHouse SQL: pure builder functions, one predicate per zone, rule and exemption.

A rule's condition is a boolean expression over one row of ``flows`` (both ends' enrichment
columns, addresses, ports, protocol, time). Addresses are IPv6 (IPv4 mapped into ``::ffff:``),
so a CIDR becomes a sargable ``BETWEEN`` on the mapped range.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable
from datetime import UTC, datetime

from analytics.policy.model import PROTOCOLS, Matcher, Policy, port_ranges
from netobs import counting

TRUE, FALSE = "1", "0"
#: Each packet counted once, whatever the exporters' conventions (netobs.counting).
DEDUP = counting.COUNTED
_FIELDS = (
    "namespace", "pod", "workload", "node", "tenant", "subnet", "vpc", "zone", "center", "site",
    "plane", "cluster", "host",
)  # fmt: skip


def quote(s: str) -> str:
    """A ClickHouse string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ts(t: datetime) -> str:
    """A DateTime64(3, 'UTC') literal."""
    t = t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)
    return f"toDateTime64('{t.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}', 3, 'UTC')"


def and_(parts: Iterable[str]) -> str:
    parts = [p for p in parts if p != TRUE]
    if FALSE in parts:
        return FALSE
    return TRUE if not parts else parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"


def or_(parts: Iterable[str]) -> str:
    parts = [p for p in parts if p != FALSE]
    if TRUE in parts:
        return TRUE
    return FALSE if not parts else parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def not_(expr: str) -> str:
    return FALSE if expr == TRUE else TRUE if expr == FALSE else f"NOT ({expr})"


def values_in(column: str, values: Iterable[str]) -> str:
    """``column IN (...)``; values with ``*`` become LIKE patterns that match non-empty values only."""
    values = list(values)
    exact = [v for v in values if "*" not in v]
    globs = [v for v in values if "*" in v]
    parts = [f"{column} IN ({', '.join(quote(v) for v in exact)})"] if exact else []
    for g in globs:
        like = g.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")
        parts.append(f"({column} != '' AND {column} LIKE {quote(like)})")
    return or_(parts)


def cidr_range(cidr: str) -> tuple[str, str]:
    """First and last address of a network, in the IPv6 form the flows table stores."""
    net = ipaddress.ip_network(cidr, strict=False)
    lo, hi = net.network_address, net.broadcast_address
    if net.version == 4:
        return f"::ffff:{lo}", f"::ffff:{hi}"
    return str(lo), str(hi)


def cidr_in(end: str, cidrs: Iterable[str]) -> str:
    parts = []
    for c in cidrs:
        lo, hi = cidr_range(c)
        parts.append(f"{end}_addr BETWEEN toIPv6('{lo}') AND toIPv6('{hi}')")
    return or_(parts)


#: What each ``is:`` kind of end means, over the end's naming columns.
IS_SQL = {
    "pod": "{e}_pod != ''",
    "node": "({e}_pod = '' AND {e}_node != '')",
    "network": "({e}_pod = '' AND {e}_namespace = '' AND {e}_node = '' AND {e}_subnet != '')",
    "external": "({e}_pod = '' AND {e}_namespace = '' AND {e}_node = '' AND {e}_subnet = '')",
}


def _labels(policy: Policy | None) -> dict:
    if policy is None:
        return {"pods": [], "namespaces": {}}
    return policy._labels or {"pods": [], "namespaces": dict(policy.namespace_labels)}


def _selected_namespaces(m: Matcher, policy: Policy | None) -> list[str]:
    namespaces = _labels(policy)["namespaces"]
    out = []
    for ns, lab in namespaces.items():
        lab = {**lab, "kubernetes.io/metadata.name": ns}
        if m.namespace_selector is not None and not m.namespace_selector.matches(lab):
            continue
        if m.namespace_labels and not all(
            fnmatch.fnmatchcase(lab.get(k, ""), v) for k, v in m.namespace_labels.items()
        ):
            continue
        out.append(ns)
    return sorted(out)


def matcher_sql(m: Matcher, end: str, policy: Policy | None = None) -> str:
    """All fields of a selector, for the ``src`` (client) or ``dst`` (server) end."""
    parts = []
    if m.is_:
        parts.append(or_(IS_SQL[k].format(e=end) for k in m.is_))
    if m.cidr:
        parts.append(cidr_in(end, m.cidr))
    for field in _FIELDS:
        values = getattr(m, field)
        if values:
            parts.append(values_in(f"{end}_{field}", values))
    if m.namespace_labels or m.namespace_selector is not None:
        names = _selected_namespaces(m, policy)
        parts.append(values_in(f"{end}_namespace", names) if names else FALSE)
    if m.pod_selector is not None:
        pods = sorted({(ns, pod) for ns, pod, lab in _labels(policy)["pods"] if m.pod_selector.matches(lab)})
        if pods:
            items = ", ".join(f"({quote(ns)}, {quote(pod)})" for ns, pod in pods)
            parts.append(f"({end}_namespace, {end}_pod) IN ({items})")
        else:
            parts.append(FALSE)
    if m.not_ is not None:
        parts.append(not_(matcher_sql(m.not_, end, policy)))
    return and_(parts)


def zone_sql(policy: Policy, zone: str | Matcher, end: str) -> str:
    """Whether the ``end`` of a flow is in the zone ('*': any end; '!name': outside the zone;
    an inline selector: the ends it matches)."""
    if isinstance(zone, Matcher):
        return matcher_sql(zone, end, policy)
    if zone == "*":
        return TRUE
    if zone.startswith("!"):
        return not_(zone_sql(policy, zone[1:], end))
    z = policy.zones[zone]
    inside = or_(matcher_sql(m, end, policy) for m in z.match)
    return and_([inside, *(not_(matcher_sql(m, end, policy)) for m in z.except_)])


def protocols_in(protocols: Iterable[str | int]) -> str:
    nums = sorted({PROTOCOLS[p.lower()] if isinstance(p, str) else int(p) for p in protocols})
    return TRUE if not nums else f"proto IN ({', '.join(map(str, nums))})"


def ports_in(ports: Iterable[int | str], port_col: str = "dst_port") -> str:
    """The port column in the ports (numbers, ranges, service names); TRUE when none are given."""
    ranges = port_ranges(tuple(ports))
    if not ranges:
        return TRUE
    singles = [lo for lo, hi in ranges if lo == hi]
    parts = [f"{port_col} IN ({', '.join(map(str, singles))})"] if singles else []
    parts += [f"{port_col} BETWEEN {lo} AND {hi}" for lo, hi in ranges if lo != hi]
    return or_(parts)


def ports_sql(ports: Iterable[int | str], protocols: Iterable[str | int], port_col: str = "dst_port") -> str:
    return and_([ports_in(ports, port_col), protocols_in(protocols)])


def pair_sql(policy: Policy, src: str | Matcher, dst: str | Matcher) -> str:
    """Client end in zone ``src`` and server end in zone ``dst`` (flows are oriented client → server)."""
    return and_([zone_sql(policy, src, "src"), zone_sql(policy, dst, "dst")])
