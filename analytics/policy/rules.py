"""Each rule kind → the SQL condition a violating flow row satisfies (pure functions).

Rows are oriented client → server (``src_*`` opened the conversation, :func:`netobs.counting.oriented`).
Exemptions in force at a flow's own time are folded into the rule's condition, so exempted
traffic never reaches the violations table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analytics.policy.l7_rules import L7_RULE_SQL
from analytics.policy.model import (
    AllowRule,
    CrossCenterRule,
    DenyRule,
    Exemption,
    GatewayRule,
    ManagementAccessRule,
    NetworkPolicyRule,
    OnlyFromRule,
    PlaintextRule,
    PlaneSeparationRule,
    Policy,
    ResidencyRule,
    SameRule,
    SeparationRule,
    TenantIsolationRule,
)
from analytics.policy.qos import qos_marking_sql
from analytics.policy.sql import (
    FALSE,
    TRUE,
    and_,
    not_,
    or_,
    pair_sql,
    ports_sql,
    quote,
    ts,
    values_in,
    zone_sql,
)


def deny_sql(p: Policy, r: DenyRule) -> str:
    return and_([pair_sql(p, r.from_, r.to), ports_sql(r.ports, r.protocols)])


def allow_sql(p: Policy, r: AllowRule) -> str:
    return and_([pair_sql(p, r.from_, r.to), not_(ports_sql(r.ports, r.protocols))])


def tenant_isolation_sql(p: Policy, r: TenantIsolationRule) -> str:
    parts = [
        "src_tenant != ''",
        "dst_tenant != ''",
        "src_tenant != dst_tenant",
        ports_sql(r.ports, r.protocols),
    ]
    if r.tenants:
        parts.append(or_([values_in("src_tenant", r.tenants), values_in("dst_tenant", r.tenants)]))
    if r.shared:
        parts += [not_(values_in("src_tenant", r.shared)), not_(values_in("dst_tenant", r.shared))]
    parts += [not_(zone_sql(p, z, "dst")) for z in r.shared_services]
    for a, b in r.allowed_pairs:
        parts.append(not_(and_([f"src_tenant = {quote(a)}", f"dst_tenant = {quote(b)}"])))
    return and_(parts)


def separation_sql(p: Policy, r: SeparationRule) -> str:
    a, b = r.between
    return and_([or_([pair_sql(p, a, b), pair_sql(p, b, a)]), ports_sql(r.ports, r.protocols)])


def _plane_index(p: Policy, planes: tuple[str, ...], end: str) -> str:
    args = ", ".join(f"{zone_sql(p, z, end)}, {i + 1}" for i, z in enumerate(planes))
    return f"multiIf({args}, 0)"


def _crossings(p: Policy, allow) -> str:
    return or_(and_([pair_sql(p, c.from_, c.to), ports_sql(c.ports, c.protocols)]) for c in allow)


def plane_separation_sql(p: Policy, r: PlaneSeparationRule) -> str:
    src, dst = _plane_index(p, r.planes, "src"), _plane_index(p, r.planes, "dst")
    return and_([f"{src} != 0", f"{dst} != 0", f"{src} != {dst}", not_(_crossings(p, r.allow))])


def gateway_sql(p: Policy, r: GatewayRule) -> str:
    s_in, d_in = zone_sql(p, r.inside, "src"), zone_sql(p, r.inside, "dst")
    via_gw = or_([zone_sql(p, r.gateways, "src"), zone_sql(p, r.gateways, "dst")])
    out = []
    if r.direction in ("egress", "both"):
        out.append(and_([s_in, not_(d_in)]))
    if r.direction in ("ingress", "both"):
        out.append(and_([d_in, not_(s_in)]))
    return and_([or_(out), not_(via_gw), ports_sql(r.ports, r.protocols)])


def management_access_sql(p: Policy, r: ManagementAccessRule) -> str:
    bastion = or_(zone_sql(p, z, "src") for z in r.bastions)
    ports = r.ports or p.management_ports
    return and_([zone_sql(p, r.to, "dst"), ports_sql(ports, r.protocols), not_(bastion)])


def plaintext_sql(p: Policy, r: PlaintextRule) -> str:
    sensitive = or_(zone_sql(p, z, "dst") for z in r.to)
    return and_(
        [zone_sql(p, r.from_, "src"), sensitive, ports_sql(r.ports or p.plaintext_ports, r.protocols)]
    )


def residency_sql(p: Policy, r: ResidencyRule) -> str:
    col = r.within
    tenant = (
        or_([values_in("src_tenant", r.tenants), values_in("dst_tenant", r.tenants)]) if r.tenants else TRUE
    )
    unnamed = "violation" if r.include_external else r.unnamed_ends
    if r.allowed:
        ends = [not_(values_in(f"{e}_{col}", r.allowed)) for e in ("src", "dst")]
        if unnamed == "ignore":
            ends = [and_([f"{e}_{col} != ''", x]) for e, x in zip(("src", "dst"), ends, strict=True)]
        leaves = or_(ends)
    else:
        leaves = f"src_{col} != dst_{col}"
        if unnamed == "ignore":
            leaves = and_([leaves, f"src_{col} != ''", f"dst_{col} != ''"])
    return and_([tenant, leaves, ports_sql(r.ports, r.protocols), not_(_crossings(p, r.allow))])


def only_from_sql(p: Policy, r: OnlyFromRule) -> str:
    allowed = or_(zone_sql(p, z, "src") for z in r.from_)
    return and_([zone_sql(p, r.to, "dst"), ports_sql(r.ports, r.protocols), not_(allowed)])


def same_sql(p: Policy, r: SameRule) -> str:
    differs = or_(or_([f"src_{a} != dst_{a}", f"src_{a} = ''"]) for a in r.attributes)
    return and_([pair_sql(p, r.from_, r.to), ports_sql(r.ports, r.protocols), differs])


def cross_center_sql(p: Policy, r: CrossCenterRule) -> str:
    scope = or_([zone_sql(p, r.scope, "src"), zone_sql(p, r.scope, "dst")])
    # Flows are oriented client → server: a service's answers are judged as the service itself.
    services = [and_([pair_sql(p, s.from_, s.to), ports_sql(s.ports, s.protocols)]) for s in r.services]
    crossing = and_(["src_center != ''", "dst_center != ''", "src_center != dst_center"])
    return and_([crossing, scope, not_(or_(services))])


class UnresolvedRule(RuntimeError):
    """A rule needs outside data (NetworkPolicies, the pod inventory) that was not loaded."""


def networkpolicy_sql(p: Policy, r: NetworkPolicyRule) -> str:
    """Resolved beforehand from the NetworkPolicies and the pod inventory (``conformance.resolve``)."""
    if r.id not in p._resolved:
        raise UnresolvedRule(
            f"rule {r.id}: NetworkPolicies not loaded (analytics.policy.conformance.resolve)"
        )
    return p._resolved[r.id][0]


#: Rule type → condition builder.
RULE_SQL: dict[str, Callable[[Policy, Any], str]] = {
    "deny": deny_sql,
    "allow": allow_sql,
    "tenant_isolation": tenant_isolation_sql,
    "separation": separation_sql,
    "plane_separation": plane_separation_sql,
    "gateway": gateway_sql,
    "management_access": management_access_sql,
    "plaintext": plaintext_sql,
    "residency": residency_sql,
    "only_from": only_from_sql,
    "same": same_sql,
    "cross_center": cross_center_sql,
    "networkpolicy_conformance": networkpolicy_sql,
    **L7_RULE_SQL,
    "qos_marking": qos_marking_sql,
}


def exemption_match(p: Policy, e: Exemption) -> str:
    """Conversations the exemption names (both ends, server ports, protocols), whenever they happen."""
    pairs = [pair_sql(p, e.from_, e.to)]
    if e.direction == "either":
        pairs.append(pair_sql(p, e.to, e.from_))
    return and_([or_(pairs), ports_sql(e.ports, e.protocols)])


def exemption_time(e: Exemption) -> str:
    """Flows whose own time is within the exemption's [starts, expires)."""
    time = [] if e.expires is None else [f"event_end < {ts(e.expires)}"]
    if e.starts is not None:
        time.insert(0, f"event_end >= {ts(e.starts)}")
    return and_(time)


def exemption_sql(p: Policy, e: Exemption) -> str:
    """Flows the exemption covers: its conversations, while it was in force (flow time)."""
    return and_([exemption_match(p, e), exemption_time(e)])


def rule_condition(p: Policy, rule) -> str:
    """The full condition of a rule: its kind's predicate minus its exemptions."""
    cond = RULE_SQL[rule.type](p, rule)
    for e in p.exemptions:
        if e.rule == rule.id and cond != FALSE:
            cond = and_([cond, not_(exemption_sql(p, e))])
    return cond


def exemption_note(p: Policy, rule) -> str | None:
    """SQL text naming the rule's exemptions that match a violating conversation but were not in
    force at the flow's time (expired, not yet started), or None when the rule has none."""
    notes = []
    for e in p.exemptions:
        if e.rule != rule.id:
            continue
        when = []
        if e.starts is not None:
            when.append(f"from {e.starts:%Y-%m-%dT%H:%M:%SZ}")
        if e.expires is not None:
            when.append(f"until {e.expires:%Y-%m-%dT%H:%M:%SZ}")
        text = f"{e.id} ({' '.join(when)}; review {e.review.isoformat()}): not in force at the flow's time"
        match = exemption_match(p, e)
        if match != FALSE:
            notes.append(f"if({match}, {quote(text)}, '')")
    if not notes:
        return None
    return f"arrayStringConcat(arrayFilter(x -> x != '', [{', '.join(notes)}]), '; ')"


def rule_detail(p: Policy, rule) -> str | None:
    """SQL text explaining a violating flow row (the NetworkPolicies that isolate its ends), if any."""
    resolved = p._resolved.get(rule.id)
    return resolved[1] if resolved and resolved[1] != "''" else None
