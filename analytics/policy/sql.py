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

from analytics.policy.model import PROTOCOLS, Matcher, Policy
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
    """``column IN (...)``; values with ``*`` become LIKE patterns."""
    values = list(values)
    exact = [v for v in values if "*" not in v]
    globs = [v for v in values if "*" in v]
    parts = [f"{column} IN ({', '.join(quote(v) for v in exact)})"] if exact else []
    for g in globs:
        like = g.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")
        parts.append(f"{column} LIKE {quote(like)}")
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


def matcher_sql(m: Matcher, end: str, labels: dict[str, dict[str, str]] | None = None) -> str:
    """All fields of a matcher, for the ``src`` or ``dst`` end."""
    parts = []
    if m.cidr:
        parts.append(cidr_in(end, m.cidr))
    for field in _FIELDS:
        values = getattr(m, field)
        if values:
            parts.append(values_in(f"{end}_{field}", values))
    if m.namespace_labels:
        names = sorted(
            ns
            for ns, lab in (labels or {}).items()
            if all(fnmatch.fnmatchcase(lab.get(k, ""), v) for k, v in m.namespace_labels.items())
        )
        parts.append(values_in(f"{end}_namespace", names) if names else FALSE)
    return and_(parts)


def zone_sql(policy: Policy, zone: str, end: str) -> str:
    """Whether the ``end`` of a flow is in the zone ('*': any endpoint)."""
    if zone == "*":
        return TRUE
    return or_(matcher_sql(m, end, policy.namespace_labels) for m in policy.zones[zone].match)


def protocols_in(protocols: Iterable[str | int]) -> str:
    nums = sorted({PROTOCOLS[p.lower()] if isinstance(p, str) else int(p) for p in protocols})
    return TRUE if not nums else f"proto IN ({', '.join(map(str, nums))})"


def ports_sql(ports: Iterable[int], protocols: Iterable[str | int], port_col: str = "dst_port") -> str:
    ports = sorted(set(ports))
    port = f"{port_col} IN ({', '.join(map(str, ports))})" if ports else TRUE
    return and_([port, protocols_in(protocols)])


def pair_sql(policy: Policy, src: str, dst: str) -> str:
    """Source end in zone ``src`` and destination end in zone ``dst``."""
    return and_([zone_sql(policy, src, "src"), zone_sql(policy, dst, "dst")])
