"""The policy language (version 2) as pydantic models: what the YAML file holds, and its reference.

A **zone** is a set of conversation ends named by selectors on the enrichment columns,
addresses, Kubernetes labels and the kind of end (``is: pod | node | network | external``).
A **rule** judges conversations *client → server*: ``from`` is the end that opened the
conversation, ``to`` the end that accepted it (:mod:`netobs.counting`; replies are never judged
as requests). An **exemption** suspends a rule for some conversations, until it expires (on
the flow's own time), and must name a review date.

Every class docstring and field description here is the language reference: ``docs/policy.md``
is generated from this module (:mod:`analytics.policy.reference`), and a test keeps it in sync.
Rule kinds are registered in :data:`RULE_KINDS` (model) and ``rules.RULE_SQL`` (SQL): a new kind
is one model class with an ``explain`` method and one SQL builder.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

VERSION = 2
SEVERITIES = ("info", "low", "medium", "high", "critical")
#: Clear-text protocols by default. 1433 (TDS) is left out: TLS is negotiated inside the protocol,
#: so a flow record cannot tell; add it in the policy when the bank forbids unencrypted TDS.
DEFAULT_PLAINTEXT_PORTS = (21, 23, 80, 389, 3306, 5432, 6379, 9092)
DEFAULT_MANAGEMENT_PORTS = (22, 3389, 5985, 5986, 6443, 10250)
PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132, "gre": 47, "esp": 50}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOLS.items()}
#: Named service ports a rule may use instead of numbers (a name stands for its port or range).
SERVICE_PORTS: dict[str, str] = {
    "ftp": "21", "ssh": "22", "telnet": "23", "smtp": "25", "dns": "53", "http": "80",
    "kerberos": "88", "ntp": "123", "snmp": "161", "ldap": "389", "https": "443", "smb": "445",
    "syslog": "514", "ldaps": "636", "mssql": "1433", "oracle": "1521", "nfs": "2049",
    "etcd": "2379-2380", "iscsi": "3260", "mysql": "3306", "rdp": "3389", "postgres": "5432",
    "amqp": "5672", "winrm": "5985", "winrm-https": "5986", "redis": "6379", "kube-api": "6443",
    "http-alt": "8080", "https-alt": "8443", "kafka": "9092", "elasticsearch": "9200",
    "kubelet": "10250", "nodeport": "30000-32767", "mongodb": "27017",
}  # fmt: skip
ENDS = ("pod", "node", "network", "external")
_PORT = re.compile(r"^(\d+)(?:\s*-\s*(\d+))?$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---- ports and protocols -----------------------------------------------------------------------
def port_ranges(ports: tuple[int | str, ...]) -> list[tuple[int, int]]:
    """Port items (443, "10000-10100", "https") → sorted, merged (lo, hi) ranges."""
    out: list[tuple[int, int]] = []
    for p in ports:
        text = SERVICE_PORTS.get(str(p).lower(), str(p))
        m = _PORT.match(text.strip())
        if not m:
            raise ValueError(
                f"not a port, range or service name: {p!r} (names: {', '.join(sorted(SERVICE_PORTS))})"
            )
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 0 <= lo <= hi <= 65535:
            raise ValueError(f"port range {p!r} is not within 0-65535 with low <= high")
        out.append((lo, hi))
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(out):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


PortList = Annotated[
    tuple[int | str, ...],
    Field(
        description="Server ports: numbers, ranges ('10000-10100') or service names ('https', 'postgres')."
    ),
]
ProtocolList = Annotated[
    tuple[str | int, ...],
    Field(description="Protocols by name (tcp, udp, icmp, sctp, ...) or number; empty: any protocol."),
]


def _check_ports(v: tuple[int | str, ...]) -> tuple[int | str, ...]:
    port_ranges(v)  # ValueError names the bad item
    return v


def _check_protocols(v: tuple[str | int, ...]) -> tuple[str | int, ...]:
    for p in v:
        if isinstance(p, str) and p.lower() not in PROTOCOLS:
            raise ValueError(f"unknown protocol {p!r} (known: {', '.join(PROTOCOLS)}, or a number)")
        if isinstance(p, int) and not 0 <= p <= 255:
            raise ValueError(f"protocol number {p} is not within 0-255")
    return v


class Ports(_Model):
    """Server ports and protocols; empty lists mean any."""

    ports: PortList = ()
    protocols: ProtocolList = ()

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: tuple[int | str, ...]) -> tuple[int | str, ...]:
        return _check_ports(v)

    @field_validator("protocols")
    @classmethod
    def _protocols(cls, v: tuple[str | int, ...]) -> tuple[str | int, ...]:
        return _check_protocols(v)


# ---- selectors ---------------------------------------------------------------------------------
class Expression(_Model):
    """One ``matchExpressions`` item, as in Kubernetes label selectors."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _values(self) -> Expression:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"{self.operator} needs values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"{self.operator} takes no values")
        return self


class LabelSelector(_Model):
    """Labels as in a Kubernetes NetworkPolicy: ``matchLabels`` and ``matchExpressions``, all ANDed."""

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: tuple[Expression, ...] = Field((), alias="matchExpressions")

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for e in self.match_expressions:
            have = e.key in labels
            ok = {
                "In": have and labels.get(e.key) in e.values,
                "NotIn": not (have and labels.get(e.key) in e.values),
                "Exists": have,
                "DoesNotExist": not have,
            }[e.operator]
            if not ok:
                return False
        return True


class Matcher(_Model):
    """One selector of conversation ends: an end matches when it satisfies ALL the fields given.

    Each name field lists accepted values; ``*`` globs match non-empty values only (an end with no
    pod never matches ``pod: ['*']``). ``not`` excludes the ends its own selector matches.
    """

    is_: tuple[Literal["pod", "node", "network", "external"], ...] = Field(
        (),
        alias="is",
        description="Kind of end: pod (a pod address), node (a node's own address), network (a named "
        "network that is neither: a legacy subnet, an office), external (no name at all: the internet).",
    )
    cidr: tuple[str, ...] = Field((), description="Address blocks (IPv4 or IPv6).")
    namespace: tuple[str, ...] = ()
    pod: tuple[str, ...] = ()
    workload: tuple[str, ...] = ()
    node: tuple[str, ...] = ()
    tenant: tuple[str, ...] = ()
    subnet: tuple[str, ...] = ()
    vpc: tuple[str, ...] = ()
    zone: tuple[str, ...] = Field((), description="The enrichment's security zone (not a policy zone).")
    center: tuple[str, ...] = ()
    site: tuple[str, ...] = ()
    plane: tuple[str, ...] = ()
    cluster: tuple[str, ...] = ()
    host: tuple[str, ...] = ()
    pod_selector: LabelSelector | None = Field(
        None,
        alias="podSelector",
        description="Pods whose labels match (the pod inventory of the evaluated period: the metadata "
        "history, which the Kubernetes watcher and `netobs ingest --inventory FILE` fill, or `policy check "
        "--inventory FILE`; `policy test` files declare pods).",
    )
    namespace_selector: LabelSelector | None = Field(
        None,
        alias="namespaceSelector",
        description="Ends in namespaces whose labels match (inventory and the policy's namespace_labels).",
    )
    namespace_labels: dict[str, str] = Field(
        default_factory=dict, description="Version 1 form of namespaceSelector.matchLabels (globs allowed)."
    )
    not_: Matcher | None = Field(None, alias="not", description="Ends that match this selector are excluded.")

    @field_validator("is_", mode="before")
    @classmethod
    def _one(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("cidr")
    @classmethod
    def _cidrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for c in v:
            ipaddress.ip_network(c, strict=False)  # ValueError names the bad network
        return v


class Zone(_Model):
    """A named set of conversation ends: the union of its ``match`` selectors minus its ``except`` ones.

    A rule may refer to a zone as ``name`` or to its complement as ``!name``; ``*`` is every end.
    """

    description: str = ""
    match: tuple[Matcher, ...] = Field(min_length=1)
    except_: tuple[Matcher, ...] = Field((), alias="except", description="Ends removed from the zone.")


class _Rule(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$", description="Unique rule id (letters, digits, _ . : -).")
    description: str = Field("", description="The rulebook's words.")
    severity: Literal["info", "low", "medium", "high", "critical"] = "high"
    owner: str = ""
    regulations: tuple[str, ...] = Field((), description="Regulation references (e.g. 'DORA art. 9').")
    if TYPE_CHECKING:
        type: str  # each kind's Literal tag

    def explain(self, p: Policy) -> str:  # pragma: no cover - every kind overrides it
        raise NotImplementedError


def _z(name: str) -> str:
    if name == "*":
        return "any end"
    return f"an end outside zone {name[1:]}" if name.startswith("!") else f"zone {name}"


def _client(name: str) -> str:
    return "any client" if name == "*" else f"a client in {_z(name)}"


def _ports_text(ports: tuple[int | str, ...], protocols: tuple[str | int, ...]) -> str:
    parts = []
    if ports:
        parts.append(
            "port " + ", ".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in port_ranges(ports))
        )
    if protocols:
        parts.append(
            "/".join(
                str(p).lower() if isinstance(p, str) else PROTOCOL_NAMES.get(p, str(p)) for p in protocols
            )
        )
    return " ".join(parts) if parts else "any port and protocol"


class DenyRule(_Rule, Ports):
    """A client in ``from`` must not open a conversation to a server in ``to`` (on the ports/protocols)."""

    type: Literal["deny"]
    from_: str = Field("*", alias="from", description="Client zone (who opens the conversation).")
    to: str = Field("*", description="Server zone.")

    def explain(self, p: Policy) -> str:
        return f"Violation: {_client(self.from_)} opens a conversation to {_z(self.to)} on {_ports_text(self.ports, self.protocols)}."


class AllowRule(_Rule, Ports):
    """Clients in ``from`` may open conversations to ``to`` only on the ports/protocols; anything else violates."""

    type: Literal["allow"]
    from_: str = Field(alias="from", description="Client zone.")
    to: str = Field(description="Server zone.")

    def explain(self, p: Policy) -> str:
        return (
            f"Violation: {_client(self.from_)} opens a conversation to {_z(self.to)} on anything but "
            f"{_ports_text(self.ports, self.protocols)}."
        )


class TenantIsolationRule(_Rule, Ports):
    """Clients of one (known) tenant must not open conversations to another tenant's ends.

    ``shared`` tenants and the ``shared_services`` zones serve every tenant; ``allowed_pairs``
    lists client → server tenant pairs that may talk.
    """

    type: Literal["tenant_isolation"]
    tenants: tuple[str, ...] = Field((), description="Tenants the rule protects (empty: every tenant).")
    shared: tuple[str, ...] = Field((), description="Tenants whose servers every tenant may use.")
    shared_services: tuple[str, ...] = Field((), description="Zones of servers every tenant may use.")
    allowed_pairs: tuple[tuple[str, str], ...] = Field(
        (), description="[client tenant, server tenant] pairs allowed."
    )

    def explain(self, p: Policy) -> str:
        which = ", ".join(self.tenants) if self.tenants else "every tenant"
        extra = []
        if self.shared:
            extra.append(f"servers of tenants {', '.join(self.shared)}")
        if self.shared_services:
            extra.append(f"servers in zones {', '.join(self.shared_services)}")
        if self.allowed_pairs:
            extra.append("pairs " + ", ".join(f"{a}→{b}" for a, b in self.allowed_pairs))
        but = f" (allowed: {'; '.join(extra)})" if extra else ""
        return f"Violation: a client of one tenant opens a conversation to another tenant's end, for {which}{but}."


class SeparationRule(_Rule, Ports):
    """No conversation between two zones, whichever of them opens it."""

    type: Literal["separation"]
    between: tuple[str, str]

    def explain(self, p: Policy) -> str:
        a, b = self.between
        return f"Violation: any conversation between {_z(a)} and {_z(b)}, either opening it, on {_ports_text(self.ports, self.protocols)}."


class Crossing(Ports):
    """An allowed conversation: clients in ``from`` to servers in ``to`` on the ports/protocols."""

    from_: str = Field(alias="from")
    to: str


class PlaneSeparationRule(_Rule):
    """Network planes (zones) must not talk to each other, except the allowed crossings."""

    type: Literal["plane_separation"]
    planes: tuple[str, ...] = Field(min_length=2)
    allow: tuple[Crossing, ...] = ()

    def explain(self, p: Policy) -> str:
        return (
            f"Violation: a conversation between two different planes of {', '.join(self.planes)}, "
            f"except {len(self.allow)} allowed crossing(s)."
        )


class GatewayRule(_Rule, Ports):
    """Conversations that cross the boundary of ``inside`` must go through the ``gateways`` zone.

    ``egress``: clients inside opening to servers outside; ``ingress``: outside clients opening to
    servers inside; ``both``. A conversation with the gateway as one of its ends passes.
    """

    type: Literal["gateway"]
    inside: str
    gateways: str
    direction: Literal["egress", "ingress", "both"] = "both"

    def explain(self, p: Policy) -> str:
        how = {
            "egress": f"a client in {_z(self.inside)} opens a conversation to a server outside it",
            "ingress": f"a client outside {_z(self.inside)} opens a conversation to a server inside it",
            "both": f"a conversation crosses the boundary of {_z(self.inside)}",
        }[self.direction]
        return f"Violation: {how} without {_z(self.gateways)} as one of its ends."


class ManagementAccessRule(_Rule, Ports):
    """Management ports of servers in ``to`` may be opened only by clients in the bastion zones."""

    type: Literal["management_access"]
    to: str = "*"
    bastions: tuple[str, ...] = Field(min_length=1)
    ports: PortList = Field((), description="Empty: the policy's management_ports.")
    protocols: ProtocolList = ("tcp",)

    def explain(self, p: Policy) -> str:
        ports = _ports_text(self.ports or p.management_ports, self.protocols)
        return f"Violation: a client not in {', '.join(self.bastions)} opens {ports} on {_z(self.to)}."


class PlaintextRule(_Rule, Ports):
    """No clear-text protocols opened to servers in the sensitive zones."""

    type: Literal["plaintext"]
    to: tuple[str, ...] = Field(min_length=1)
    from_: str = Field("*", alias="from", description="Clients the rule applies to.")
    ports: PortList = Field((), description="Empty: the policy's plaintext_ports.")
    protocols: ProtocolList = ("tcp",)

    def explain(self, p: Policy) -> str:
        ports = _ports_text(self.ports or p.plaintext_ports, self.protocols)
        return f"Violation: {_client(self.from_)} opens clear-text {ports} to {', '.join(self.to)}."


class ResidencyRule(_Rule, Ports):
    """A tenant's conversations stay within the allowed sites/centers (or within one of them).

    Only ends with a known site/center are judged (internet and office ends have none and do not
    count unless ``unnamed_ends: violation``). ``allow`` declares crossings (a replication pair).
    """

    type: Literal["residency"]
    tenants: tuple[str, ...] = Field((), description="Tenants whose conversations are judged (empty: all).")
    within: Literal["site", "center"] = "site"
    allowed: tuple[str, ...] = Field(
        (), description="Sites/centers both ends must be in (empty: both ends in the same one)."
    )
    allow: tuple[Crossing, ...] = Field((), description="Declared crossings (e.g. one replication pair).")
    unnamed_ends: Literal["ignore", "violation"] = Field(
        "ignore",
        description="An end with no site/center (internet, office): ignore it, or count it as leaving.",
    )
    include_external: bool | None = Field(
        None, description="Version 1 form of unnamed_ends (true: violation)."
    )

    def explain(self, p: Policy) -> str:
        who = ", ".join(self.tenants) if self.tenants else "every tenant"
        where = (
            f"outside {self.within}s {', '.join(self.allowed)}" if self.allowed else f"across {self.within}s"
        )
        allow = f", except {len(self.allow)} declared crossing(s)" if self.allow else ""
        return f"Violation: a conversation of {who} reaches an end {where}{allow}."


class OnlyFromRule(_Rule, Ports):
    """Servers in ``to`` (a storage or backup plane) may be opened only by clients in the ``from`` zones."""

    type: Literal["only_from"]
    to: str
    from_: tuple[str, ...] = Field(alias="from", min_length=1, description="The named client zones.")

    def explain(self, p: Policy) -> str:
        return (
            f"Violation: a client outside {', '.join(self.from_)} opens a conversation to {_z(self.to)} "
            f"on {_ports_text(self.ports, self.protocols)}."
        )


class SameRule(_Rule, Ports):
    """Servers in ``to`` may be used only by clients sharing their ``attributes`` (same tenant, site...)."""

    type: Literal["same"]
    to: str
    from_: str = Field("*", alias="from", description="Clients the rule applies to.")
    attributes: tuple[Literal["tenant", "site", "center", "namespace", "vpc", "zone"], ...] = Field(
        min_length=1
    )

    def explain(self, p: Policy) -> str:
        same = " and ".join(self.attributes)
        return (
            f"Violation: {_client(self.from_)} of another {same} (or of none) opens a conversation to "
            f"{_z(self.to)} on {_ports_text(self.ports, self.protocols)}."
        )


class Service(Ports):
    name: str
    from_: str = Field("*", alias="from")
    to: str = "*"


class CrossCenterRule(_Rule):
    """Conversations between centers only for the listed services (clients in ``from`` to servers in ``to``)."""

    type: Literal["cross_center"]
    scope: str = "*"
    services: tuple[Service, ...] = ()

    def explain(self, p: Policy) -> str:
        names = ", ".join(s.name for s in self.services) or "none"
        return f"Violation: a conversation between two centers touching {_z(self.scope)} that is not a listed service ({names})."


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

    def explain(self, p: Policy) -> str:
        return "Violation: an observed flow the declared Kubernetes NetworkPolicies would deny (an enforcement gap)."


# ---- rule types judged on the real protocol (pod packet samples: l7_conversations) ---------------
class _L7Rule(_Rule):
    """A flow violates when its conversation's L7 summary (``netobs sample``) says so; the flows and
    the summaries join on the 5-tuple, client → server. ``database``: where l7_conversations is."""

    from_: str = Field("*", alias="from")
    to: str = "*"
    database: str = Field("netobs", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    def explain(self, p: Policy) -> str:
        what = (self.__doc__ or "").strip().split("\n")[0].rstrip(".")
        return f"Violation ({_client(self.from_)} to {_z(self.to)}, from the sampled L7 summaries): {what}."


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


def check_dscp(values: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """``values`` when each is a DSCP name (EF, AF41, CS1, ...) or a number 0-63; else ValueError."""
    for d in values:
        if isinstance(d, int) and not 0 <= d <= 63 or isinstance(d, str) and d.upper() not in DSCP:
            raise ValueError(f"unknown DSCP {d!r} (a name such as EF, AF41, CS1, or 0-63)")
    return values


def dscp_codes(values: tuple[str | int, ...]) -> tuple[int, ...]:
    """The DSCP numbers of names or numbers, each once, ascending."""
    return tuple(sorted({d if isinstance(d, int) else DSCP[d.upper()] for d in values}))


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
        return check_dscp(v)

    def codes(self) -> tuple[int, ...]:
        return dscp_codes(self.dscp)


class QosMarkingRule(_Rule):
    """Each traffic class carries its DSCP: a flow of the class whose observed ``tos`` has another
    DSCP is a violation (mismarked payment traffic, backup traffic marked above its class)."""

    type: Literal["qos_marking"]
    classes: tuple[TrafficClass, ...] = Field(min_length=1)

    def explain(self, p: Policy) -> str:
        parts = [
            f"{c.name}: from {_client(c.from_)} to {_z(c.to)} on {_ports_text(c.ports, c.protocols)}"
            f"{' (and its replies)' if c.replies and c.ports else ''} must carry DSCP "
            + " or ".join(str(d) for d in c.dscp)
            for c in self.classes
        ]
        return (
            "Each traffic class keeps its marking (the DSCP of the observed TOS): " + "; ".join(parts) + "."
        )


#: Rule kind (the ``type:`` value) → model. SQL builders: ``analytics.policy.rules.RULE_SQL``.
RULE_KINDS: dict[str, type[_Rule]] = {
    "deny": DenyRule,
    "allow": AllowRule,
    "tenant_isolation": TenantIsolationRule,
    "separation": SeparationRule,
    "plane_separation": PlaneSeparationRule,
    "gateway": GatewayRule,
    "management_access": ManagementAccessRule,
    "plaintext": PlaintextRule,
    "residency": ResidencyRule,
    "only_from": OnlyFromRule,
    "same": SameRule,
    "cross_center": CrossCenterRule,
    "networkpolicy_conformance": NetworkPolicyRule,
    "l7_plaintext": L7PlaintextRule,
    "tls_minimum": TlsMinimumRule,
    "dns_resolvers": DnsResolverRule,
    "sni_allowlist": SniAllowlistRule,
    "qos_marking": QosMarkingRule,
}
if TYPE_CHECKING:
    Rule = _Rule  # any registered kind
else:
    Rule = Annotated[Union[tuple(RULE_KINDS.values())], Field(discriminator="type")]  # noqa: UP007


ZoneRef = Annotated[
    str | Matcher,
    Field(description="A zone name, '!zone', '*', or an inline selector (one conversation end)."),
]


class Exemption(Ports):
    """Suspends ``rule`` for conversations from clients in ``from`` to servers in ``to`` (ports, protocols).

    ``direction: either`` also covers conversations opened the other way. The exemption holds for
    flows whose own time is in [starts, expires) — ``expires`` is optional (a permanent exemption),
    but a ``review`` date is required: `policy lint` warns once it has passed.
    """

    id: str
    rule: str
    from_: ZoneRef = Field("*", alias="from", description="Client end: zone name or inline selector.")
    to: ZoneRef = Field("*", description="Server end: zone name or inline selector.")
    ports: PortList = ()
    protocols: ProtocolList = ()
    direction: Literal["client_to_server", "either"] = "client_to_server"
    approver: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    ticket: str = ""
    starts: datetime | None = None
    expires: datetime | None = Field(None, description="On flow time; omit for a permanent exemption.")
    review: date = Field(description="When the exemption must be reviewed (required).")

    @field_validator("starts", "expires")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v

    def in_force(self, start: datetime, end: datetime) -> bool:
        """Whether the exemption covers some of [start, end)."""
        return (self.expires is None or self.expires > start) and (self.starts is None or self.starts < end)


class Policy(_Model):
    """A policy file: ``version: 2``, zones, rules and exemptions (files without a version are version 1)."""

    version: Literal[2] = Field(2, description="Language version (files without one are read as version 1).")
    name: str = "policy"
    description: str = ""
    plaintext_ports: PortList = DEFAULT_PLAINTEXT_PORTS
    management_ports: PortList = DEFAULT_MANAGEMENT_PORTS
    namespace_labels: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Namespace → labels, for namespaceSelector (adds to the inventory)."
    )
    zones: dict[str, Zone] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    exemptions: tuple[Exemption, ...] = ()
    #: Rule id → (condition, detail) SQL of rules resolved against outside data (NetworkPolicies).
    _resolved: dict[str, tuple[str, str]] = PrivateAttr(default_factory=dict)
    #: Pod and namespace labels for label selectors: {"pods": [(ns, pod, labels)], "namespaces": {ns: labels}}.
    _labels: dict[str, Any] | None = PrivateAttr(None)
    #: Messages for the user from loading (a version 1 file read as version 2).
    _notes: list[str] = PrivateAttr(default_factory=list)

    def resolved_with(self, resolved: dict[str, tuple[str, str]]) -> Policy:
        """A copy of the policy carrying the resolved SQL of its external rules."""
        out = self.model_copy()
        out._resolved = dict(resolved)
        return out

    def with_labels(
        self, pods: list[tuple[str, str, dict[str, str]]], namespaces: dict[str, dict[str, str]]
    ) -> Policy:
        """A copy whose label selectors resolve against these pods and namespaces."""
        out = self.model_copy()
        out._labels = {"pods": list(pods), "namespaces": {**namespaces, **self.namespace_labels}}
        return out

    def uses_labels(self) -> bool:
        def walk(m: Matcher | None) -> bool:
            return m is not None and (
                m.pod_selector is not None or m.namespace_selector is not None or walk(m.not_)
            )

        zones = any(walk(m) for z in self.zones.values() for m in (*z.match, *z.except_))
        return zones or any(
            isinstance(x, Matcher) and walk(x) for e in self.exemptions for x in (e.from_, e.to)
        )

    def rule(self, rule_id: str) -> Any:
        return next(r for r in self.rules if r.id == rule_id)


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
    for key in ("between", "planes", "bastions", "shared_services"):
        out += [((key, i), z) for i, z in enumerate(getattr(rule, key, ()))]
    if isinstance(rule, CrossCenterRule):
        out.append((("scope",), rule.scope))
    for key in ("allow", "services"):
        for i, sub in enumerate(getattr(rule, key, ())):
            out += [((key, i, *loc), z) for loc, z in _zone_refs(sub)]
    return out


def zone_name(ref: str) -> str:
    return ref[1:] if ref.startswith("!") else ref


def references(policy: Policy) -> list[tuple[Loc, str]]:
    """Broken cross-references as (loc, message): unknown zones, unknown rules, duplicate ids."""
    errors: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    for i, rule in enumerate(policy.rules):
        if rule.id in seen:
            errors.append((("rules", i, "id"), f"duplicate rule id {rule.id!r}"))
        seen.add(rule.id)
        for loc, zone in _zone_refs(rule):
            if zone != "*" and zone_name(zone) not in policy.zones:
                errors.append(
                    (
                        ("rules", i, *loc),
                        f"unknown zone {zone!r} (zones: {', '.join(policy.zones) or 'none'})",
                    )
                )
    ids: set[str] = set()
    for i, ex in enumerate(policy.exemptions):
        if ex.id in ids:
            errors.append((("exemptions", i, "id"), f"duplicate exemption id {ex.id!r}"))
        ids.add(ex.id)
        if ex.rule not in seen:
            errors.append((("exemptions", i, "rule"), f"unknown rule {ex.rule!r}"))
        for loc, zone in _zone_refs(ex):
            if zone != "*" and zone_name(zone) not in policy.zones:
                errors.append((("exemptions", i, *loc), f"unknown zone {zone!r}"))
    return errors
