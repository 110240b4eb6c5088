"""The policy as code: zones, rules, exemptions as pydantic models (what the YAML file holds).

A zone is a set of flow endpoints named by matchers on the enrichment columns and addresses;
a rule names zones and says which traffic between them violates the policy; an exemption
suspends a rule for some traffic until it expires. Cross-references (zone names, rule ids)
are checked by :func:`references`, which returns locations so errors point at the YAML key.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

SEVERITIES = ("info", "low", "medium", "high", "critical")
#: Clear-text protocols by default. 1433 (TDS) is left out: TLS is negotiated inside the protocol,
#: so a flow record cannot tell; add it in the policy when the bank forbids unencrypted TDS.
DEFAULT_PLAINTEXT_PORTS = (21, 23, 80, 389, 3306, 5432, 6379, 9092)
DEFAULT_MANAGEMENT_PORTS = (22, 3389, 5985, 5986, 6443, 10250)
PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Matcher(_Model):
    """Endpoints matching ALL given fields; each field lists accepted values ('*' globs allowed)."""

    cidr: tuple[str, ...] = ()
    namespace: tuple[str, ...] = ()
    namespace_labels: dict[str, str] = Field(default_factory=dict)
    pod: tuple[str, ...] = ()
    workload: tuple[str, ...] = ()
    node: tuple[str, ...] = ()
    tenant: tuple[str, ...] = ()
    subnet: tuple[str, ...] = ()
    vpc: tuple[str, ...] = ()
    zone: tuple[str, ...] = ()
    center: tuple[str, ...] = ()
    site: tuple[str, ...] = ()
    plane: tuple[str, ...] = ()
    cluster: tuple[str, ...] = ()
    host: tuple[str, ...] = ()

    @field_validator("cidr")
    @classmethod
    def _cidrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for c in v:
            ipaddress.ip_network(c, strict=False)  # ValueError names the bad network
        return v


class Zone(_Model):
    """A named set of endpoints: the union of its matchers."""

    description: str = ""
    match: tuple[Matcher, ...] = Field(min_length=1)


class _Rule(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    description: str = ""
    severity: Literal["info", "low", "medium", "high", "critical"] = "high"
    owner: str = ""
    regulations: tuple[str, ...] = ()


class Ports(_Model):
    """Ports/protocols clause; empty means any."""

    ports: tuple[int, ...] = ()
    protocols: tuple[str | int, ...] = ()


class DenyRule(_Rule, Ports):
    """Traffic from ``from`` to ``to`` on the ports/protocols is forbidden."""

    type: Literal["deny"]
    from_: str = Field("*", alias="from")
    to: str = "*"


class AllowRule(_Rule, Ports):
    """Traffic from ``from`` to ``to`` is allowed only on the ports/protocols; anything else violates."""

    type: Literal["allow"]
    from_: str = Field(alias="from")
    to: str


class TenantIsolationRule(_Rule):
    """Different (known) tenants must not talk, except shared tenants and listed pairs."""

    type: Literal["tenant_isolation"]
    tenants: tuple[str, ...] = ()
    shared: tuple[str, ...] = ()
    allowed_pairs: tuple[tuple[str, str], ...] = ()


class SeparationRule(_Rule):
    """No traffic in either direction between two zones (production ↔ non-production)."""

    type: Literal["separation"]
    between: tuple[str, str]


class Crossing(Ports):
    from_: str = Field(alias="from")
    to: str


class PlaneSeparationRule(_Rule):
    """Network planes (zones) must not talk to each other, except the allowed crossings."""

    type: Literal["plane_separation"]
    planes: tuple[str, ...] = Field(min_length=2)
    allow: tuple[Crossing, ...] = ()


class GatewayRule(_Rule):
    """Traffic crosses the boundary of ``inside`` only through the ``gateways`` zone."""

    type: Literal["gateway"]
    inside: str
    gateways: str
    direction: Literal["egress", "ingress", "both"] = "both"


class ManagementAccessRule(_Rule):
    """Management ports of ``to`` reachable only from the bastion zones."""

    type: Literal["management_access"]
    to: str = "*"
    bastions: tuple[str, ...] = Field(min_length=1)
    ports: tuple[int, ...] = ()  # empty: the policy's management_ports
    protocols: tuple[str | int, ...] = ("tcp",)


class PlaintextRule(_Rule):
    """No clear-text protocols into the sensitive zones."""

    type: Literal["plaintext"]
    to: tuple[str, ...] = Field(min_length=1)
    ports: tuple[int, ...] = ()  # empty: the policy's plaintext_ports
    protocols: tuple[str | int, ...] = ("tcp",)


class ResidencyRule(_Rule):
    """A tenant's traffic stays within a site/center (the allowed ones, or its own)."""

    type: Literal["residency"]
    tenants: tuple[str, ...] = Field(min_length=1)
    within: Literal["site", "center"] = "site"
    allowed: tuple[str, ...] = ()
    include_external: bool = Field(True, description="Traffic to unknown/external addresses leaves too.")


class Service(Ports):
    name: str
    from_: str = Field("*", alias="from")
    to: str = "*"


class CrossCenterRule(_Rule):
    """Traffic between centers only for the listed services (either direction of a service)."""

    type: Literal["cross_center"]
    scope: str = "*"
    services: tuple[Service, ...] = ()


class KubernetesApi(_Model):
    """Where to read NetworkPolicies from a Kubernetes API server (the official client)."""

    in_cluster: bool = Field(False, description="Use the pod's service account.")
    kubeconfig: str | None = Field(None, description="Kubeconfig file (default: ~/.kube/config).")
    context: str | None = None


class NetworkPolicyRule(_Rule):
    """Observed flows that the declared Kubernetes NetworkPolicies would deny: an enforcement gap."""

    type: Literal["networkpolicy_conformance"]
    files: tuple[str, ...] = Field((), description="NetworkPolicy YAML files or directories.")
    kubernetes: KubernetesApi | None = Field(None, description="Read them from the API server.")
    replies: Literal["infer", "none"] = Field(
        "infer",
        description="infer: a flow from a lower to a higher port whose reverse is allowed is a reply.",
    )

    @model_validator(mode="after")
    def _source(self) -> NetworkPolicyRule:
        if not self.files and self.kubernetes is None:
            raise ValueError("give files and/or kubernetes as the NetworkPolicy source")
        return self


# ---- rule types judged on the real protocol (pod packet samples: l7_conversations) ---------------
class _L7Rule(_Rule):
    """A flow violates when its conversation's L7 summary (``netobs sample``) says so; the flows and
    the summaries join on the 5-tuple, client → server. ``database``: where l7_conversations is."""

    from_: str = Field("*", alias="from")
    to: str = "*"
    database: str = Field("netobs", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class L7PlaintextRule(_L7Rule):
    """Conversations seen in clear text (HTTP, printable payload) into the sensitive zones."""

    type: Literal["l7_plaintext"]


class TlsMinimumRule(_L7Rule):
    """TLS below ``min_version``, or a cipher of ``weak_ciphers`` (IANA numbers), or SSL."""

    type: Literal["tls_minimum"]
    min_version: Literal["TLS1.0", "TLS1.1", "TLS1.2", "TLS1.3"] = "TLS1.2"
    weak_ciphers: tuple[int, ...] = Field(
        (0x0004, 0x0005, 0x000A, 0x002F, 0x0035, 0x003C, 0x003D, 0x009C, 0x009D),
        description="RC4, 3DES, and the static-RSA (no forward secrecy) suites by default.",
    )


class DnsResolverRule(_L7Rule):
    """DNS (recognised as DNS on any port) to resolvers other than the approved ones."""

    type: Literal["dns_resolvers"]
    approved: tuple[str, ...] = Field(min_length=1, description="Resolver addresses or CIDRs.")


class SniAllowlistRule(_L7Rule):
    """TLS to server names outside the allowlist ('*' globs); names hashed by the agent never match."""

    type: Literal["sni_allowlist"]
    allowed: tuple[str, ...] = Field(min_length=1)


#: DSCP names (RFC 2474 class selectors, RFC 2597 assured forwarding, RFC 3246 expedited
#: forwarding, RFC 5865 voice-admit, RFC 8622 lower effort) → code point.
DSCP = {
    **{f"CS{i}": i * 8 for i in range(8)},
    **{f"AF{c}{d}": c * 8 + d * 2 for c in range(1, 5) for d in range(1, 4)},
    "EF": 46, "VOICE-ADMIT": 44, "LE": 1, "DF": 0, "BE": 0,
}  # fmt: skip


class TrafficClass(Ports):
    """Traffic of one class (zones and ports) and the DSCP values it must carry."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    from_: str = Field("*", alias="from")
    to: str = "*"
    dscp: tuple[str | int, ...] = Field(min_length=1, description="Names (EF, AF41, CS1) or numbers 0-63.")
    replies: bool = Field(True, description="The class's answers (source port = a class port) too.")

    @field_validator("dscp")
    @classmethod
    def _dscp(cls, v: tuple[str | int, ...]) -> tuple[str | int, ...]:
        for d in v:
            if isinstance(d, int) and not 0 <= d <= 63 or isinstance(d, str) and d.upper() not in DSCP:
                raise ValueError(f"unknown DSCP {d!r} (a name such as EF, AF41, CS1, or 0-63)")
        return v

    def codes(self) -> tuple[int, ...]:
        return tuple(sorted({d if isinstance(d, int) else DSCP[d.upper()] for d in self.dscp}))


class QosMarkingRule(_Rule):
    """Each traffic class carries its DSCP: a flow of the class whose observed ``tos`` has another
    DSCP is a violation (mismarked payment traffic, backup traffic marked above its class)."""

    type: Literal["qos_marking"]
    classes: tuple[TrafficClass, ...] = Field(min_length=1)


Rule = Annotated[
    DenyRule
    | AllowRule
    | TenantIsolationRule
    | SeparationRule
    | PlaneSeparationRule
    | GatewayRule
    | ManagementAccessRule
    | PlaintextRule
    | ResidencyRule
    | CrossCenterRule
    | NetworkPolicyRule
    | L7PlaintextRule
    | TlsMinimumRule
    | DnsResolverRule
    | SniAllowlistRule
    | QosMarkingRule,
    Field(discriminator="type"),
]


class Exemption(_Model):
    """Suspends ``rule`` for traffic from/to the zones, for flows received before ``expires``."""

    id: str
    rule: str
    from_: str = Field("*", alias="from")
    to: str = "*"
    ports: tuple[int, ...] = ()
    approver: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    ticket: str = ""
    starts: datetime | None = None
    expires: datetime

    @field_validator("starts", "expires")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v

    def in_force(self, start: datetime, end: datetime) -> bool:
        """Whether the exemption covers some of [start, end)."""
        return self.expires > start and (self.starts is None or self.starts < end)


class Policy(_Model):
    name: str = "policy"
    description: str = ""
    plaintext_ports: tuple[int, ...] = DEFAULT_PLAINTEXT_PORTS
    management_ports: tuple[int, ...] = DEFAULT_MANAGEMENT_PORTS
    namespace_labels: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Namespace → labels, for namespace_labels matchers."
    )
    zones: dict[str, Zone] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    exemptions: tuple[Exemption, ...] = ()
    #: Rule id → (condition, detail) SQL of rules resolved against outside data (NetworkPolicies).
    _resolved: dict[str, tuple[str, str]] = PrivateAttr(default_factory=dict)

    def resolved_with(self, resolved: dict[str, tuple[str, str]]) -> Policy:
        """A copy of the policy carrying the resolved SQL of its external rules."""
        out = self.model_copy()
        out._resolved = dict(resolved)
        return out


Loc = tuple[str | int, ...]


def _zone_refs(rule: BaseModel) -> list[tuple[Loc, str]]:
    """(loc inside the rule, zone name) of every zone the rule refers to."""
    out: list[tuple[Loc, str]] = []
    for key, alias in (("from_", "from"), ("to", "to"), ("inside", "inside"), ("gateways", "gateways")):
        value = getattr(rule, key, None)
        if isinstance(value, str):
            out.append(((alias,), value))
        elif isinstance(value, tuple):
            out += [((alias, i), z) for i, z in enumerate(value)]
    for key in ("between", "planes", "bastions"):
        out += [((key, i), z) for i, z in enumerate(getattr(rule, key, ()))]
    if isinstance(rule, CrossCenterRule):
        out.append((("scope",), rule.scope))
    for key in ("allow", "services"):
        for i, sub in enumerate(getattr(rule, key, ())):
            out += [((key, i, *loc), z) for loc, z in _zone_refs(sub)]
    return out


def references(policy: Policy) -> list[tuple[Loc, str]]:
    """Broken cross-references as (loc, message): unknown zones, unknown rules, duplicate ids."""
    errors: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    for i, rule in enumerate(policy.rules):
        if rule.id in seen:
            errors.append((("rules", i, "id"), f"duplicate rule id {rule.id!r}"))
        seen.add(rule.id)
        for loc, zone in _zone_refs(rule):
            if zone != "*" and zone not in policy.zones:
                errors.append((("rules", i, *loc), f"unknown zone {zone!r}"))
        for j, p in enumerate(getattr(rule, "protocols", ())):
            if isinstance(p, str) and p.lower() not in PROTOCOLS:
                errors.append((("rules", i, "protocols", j), f"unknown protocol {p!r}"))
    for i, ex in enumerate(policy.exemptions):
        if ex.rule not in seen:
            errors.append((("exemptions", i, "rule"), f"unknown rule {ex.rule!r}"))
        for loc, zone in _zone_refs(ex):
            if zone != "*" and zone not in policy.zones:
                errors.append((("exemptions", i, *loc), f"unknown zone {zone!r}"))
    return errors
