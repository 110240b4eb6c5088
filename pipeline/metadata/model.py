"""The metadata model: what names a flow's ends.

Sites hold centers (production or disaster-recovery), centers hold nodes; networks are
Kube-OVN subnets, legacy/underlay networks and external systems (CIDR → name, tenant,
zone, center); namespaces give pods their tenant and zone; pods carry IPs, node,
workload, labels and a lifetime. Every object has a ``kind`` and a ``key`` under which
the time-versioned store keeps its history.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Separates a cluster's name from an object's own key (``cluster::namespace/name``).
CLUSTER_SEP = "::"


class Obj(BaseModel):
    """Base of every metadata object: unknown keys rejected, immutable.

    ``cluster`` names the Kubernetes cluster an object belongs to ('' : no cluster, or the
    only one: the inventory, the CMDB). Two clusters may hold a pod of the same name with the
    same address: the key carries the cluster, so their histories stay apart.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str] = ""
    cluster: str = Field("", description="Kubernetes cluster of the object ('' : none, or the only one).")

    @property
    def local_key(self) -> str:
        """The key within its cluster."""
        return getattr(self, "name")  # noqa: B009 - every kind has a name

    @property
    def key(self) -> str:
        return f"{self.cluster}{CLUSTER_SEP}{self.local_key}" if self.cluster else self.local_key

    def attrs(self) -> dict[str, Any]:
        """JSON-ready attributes, as stored in a version row."""
        return self.model_dump(mode="json", exclude_defaults=True)


def _ip(value: str) -> str:
    return str(ipaddress.ip_address(str(value).strip()))


def _ips(value: Any) -> tuple[str, ...]:
    """One address, a comma-separated list, or a list of them (dual stack)."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(_ip(v) for v in items if str(v).strip())


class Site(Obj):
    kind: ClassVar[str] = "site"
    name: str = Field(min_length=1, description="Site (a city).")


class Center(Obj):
    kind: ClassVar[str] = "center"
    name: str = Field(min_length=1)
    role: Literal["production", "disaster-recovery"] = "production"
    site: str = Field("", description="Filled from the enclosing site in the inventory.")


class Node(Obj):
    """A Kubernetes or OVS node; its addresses are also the exporter addresses it sends from."""

    kind: ClassVar[str] = "node"
    name: str = Field(min_length=1)
    ip: str | None = Field(None, description="Primary address (the exporter address).")
    ips: tuple[str, ...] = Field((), description="Further addresses (dual stack, other NICs).")
    center: str = Field("", description="Filled from the enclosing center in the inventory.")
    labels: dict[str, str] = Field(default_factory=dict)

    _v_ip = field_validator("ip", mode="before")(lambda v: None if v in (None, "") else _ip(v))
    _v_ips = field_validator("ips", mode="before")(_ips)

    def addresses(self) -> tuple[str, ...]:
        return ((self.ip,) if self.ip else ()) + tuple(a for a in self.ips if a != self.ip)


class Network(Obj):
    """A Kube-OVN subnet, a legacy/underlay network or an external system, by CIDR."""

    kind: ClassVar[str] = "network"
    name: str = Field(min_length=1)
    cidr: tuple[str, ...] = Field(description="CIDR, or several (comma-separated or a list).")
    kind_: Literal["subnet", "legacy", "external"] = Field("subnet", alias="kind")
    vpc: str = ""
    tenant: str = ""
    zone: str = ""
    center: str = ""
    plane: str = Field("", description="Plane (business, management, storage, backup, ...) of the network.")
    provider: str = Field("", description="Kube-OVN subnet provider: ovn, or <attachment>.<namespace>[.ovn].")
    vlan: str = Field("", description="Kube-OVN Vlan of an underlay subnet.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("cidr", mode="before")
    @classmethod
    def _cidrs(cls, v: Any) -> tuple[str, ...]:
        items = v.split(",") if isinstance(v, str) else list(v or ())
        nets = tuple(str(ipaddress.ip_network(str(c).strip(), strict=False)) for c in items if str(c).strip())
        if not nets:
            raise ValueError("at least one CIDR is needed")
        return nets

    def attrs(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True, by_alias=True)


class Namespace(Obj):
    kind: ClassVar[str] = "namespace"
    name: str = Field(min_length=1)
    tenant: str = ""
    zone: str = ""
    labels: dict[str, str] = Field(default_factory=dict)


class Pod(Obj):
    """A pod with its addresses; ``start``/``end`` bound its life when known (static pods)."""

    kind: ClassVar[str] = "pod"
    name: str = Field(min_length=1)
    namespace: str = Field(min_length=1)
    ip: str | None = None
    ips: tuple[str, ...] = ()
    node: str = ""
    workload: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    ports: tuple[int, ...] = Field((), description="Ports its containers listen on (containerPorts).")
    planes: dict[str, str] = Field(
        default_factory=dict,
        description="Address → the network attachment (plane) it is on, for pods with several NICs "
        "(Multus network-status, Kube-OVN IP objects per provider); addresses not listed are named "
        "by their subnet's plane.",
    )
    ingress_rate_mbps: float = Field(
        0, ge=0, description="Kube-OVN ovn.kubernetes.io/ingress_rate (0: none)."
    )
    egress_rate_mbps: float = Field(0, ge=0, description="Kube-OVN ovn.kubernetes.io/egress_rate (0: none).")
    start: datetime | None = Field(None, description="Start of life (default: when it was applied).")
    end: datetime | None = Field(None, description="End of life (default: still alive).")

    _v_ip = field_validator("ip", mode="before")(lambda v: None if v in (None, "") else _ip(v))
    _v_ips = field_validator("ips", mode="before")(_ips)

    @field_validator("planes", mode="before")
    @classmethod
    def _planes(cls, v: Any) -> dict[str, str]:
        return {_ip(a): str(p) for a, p in dict(v or {}).items()}

    @model_validator(mode="after")
    def _ordered(self) -> Pod:
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    @property
    def local_key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def addresses(self) -> tuple[str, ...]:
        own = ((self.ip,) if self.ip else ()) + tuple(a for a in self.ips if a != self.ip)
        return own + tuple(a for a in self.planes if a not in own)

    def attrs(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True, exclude={"start", "end"})


class IPAddress(Obj):
    """A Kube-OVN ``ips.kubeovn.io`` allocation: names an address when no Pod object does."""

    kind: ClassVar[str] = "ip"
    name: str = Field(min_length=1)
    ips: tuple[str, ...] = Field(min_length=1)
    pod: str = ""
    namespace: str = ""
    node: str = ""
    subnet: str = ""
    plane: str = Field("", description="Attachment (provider) the address is on, for a pod's further NICs.")

    _v_ips = field_validator("ips", mode="before")(_ips)

    def addresses(self) -> tuple[str, ...]:
        return self.ips


class Service(Obj):
    """A Kubernetes Service: who listens where, so that the counting model knows which end of a
    conversation is the server (``ports`` on its cluster IPs, ``target_ports`` on the pods it selects)."""

    kind: ClassVar[str] = "service"
    name: str = Field(min_length=1)
    namespace: str = Field(min_length=1)
    cluster_ips: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    target_ports: tuple[int, ...] = Field((), description="Pod ports (default: the same as ports).")
    selector: dict[str, str] = Field(default_factory=dict)

    _v_ips = field_validator("cluster_ips", mode="before")(_ips)

    @property
    def local_key(self) -> str:
        return f"{self.namespace}/{self.name}"


class Vpc(Obj):
    """A Kube-OVN VPC; recorded for history and SQL joins."""

    kind: ClassVar[str] = "vpc"
    name: str = Field(min_length=1)
    tenant: str = ""
    namespaces: tuple[str, ...] = ()


class Host(Obj):
    """A legacy host or VM on the underlay, from the CMDB: named beside the pods by its addresses."""

    kind: ClassVar[str] = "host"
    name: str = Field(min_length=1)
    addresses_: tuple[str, ...] = Field(min_length=1, alias="addresses")
    application: str = ""
    tenant: str = ""
    zone: str = ""
    center: str = ""
    owner: str = ""
    plane: str = ""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    _v_ips = field_validator("addresses_", mode="before")(_ips)

    def addresses(self) -> tuple[str, ...]:
        return self.addresses_

    def attrs(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True, by_alias=True)


class Eip(Obj):
    """A Kube-OVN external address: ``OvnEip`` (flavour ovn) or ``IptablesEIP`` (flavour iptables)."""

    kind: ClassVar[str] = "eip"
    name: str = Field(min_length=1)
    ips: tuple[str, ...] = Field(min_length=1)
    flavour: Literal["ovn", "iptables"] = "ovn"
    external_subnet: str = ""
    qos_policy: str = ""
    nat_gw: str = Field("", description="The VpcNatGateway an IptablesEIP lives on (natGwDp).")

    _v_ips = field_validator("ips", mode="before")(_ips)


class NatRule(Obj):
    """A Kube-OVN NAT rule: what hides behind an EIP.

    ``internal`` is what the rule translates: one address (a FIP, a DNAT target, an SNAT rule for
    one pod) or a CIDR (an SNAT rule for a subnet). OVN rules may name it only through an IP object
    (``ip_name``) or a subnet (``vpc_subnet``); the enricher resolves those from the same history.
    """

    kind: ClassVar[str] = "nat"
    name: str = Field(min_length=1)
    type: Literal["fip", "snat", "dnat"]
    flavour: Literal["ovn", "iptables"] = "ovn"
    eip: str = Field(min_length=1, description="Name of the Eip object.")
    internal: str = Field("", description="Internal address or CIDR.")
    ip_name: str = ""
    vpc_subnet: str = ""
    internal_port: int = Field(0, ge=0, le=65535)
    external_port: int = Field(0, ge=0, le=65535)
    protocol: str = ""

    @field_validator("internal", mode="before")
    @classmethod
    def _internal(cls, v: Any) -> str:
        v = str(v or "").strip()
        return str(ipaddress.ip_network(v, strict=False)) if "/" in v else (_ip(v) if v else "")

    @field_validator("internal_port", "external_port", mode="before")
    @classmethod
    def _port(cls, v: Any) -> int:
        return int(v) if str(v or "").strip() else 0


class Vlan(Obj):
    """A Kube-OVN ``Vlan``: the tag of an underlay, on a provider network."""

    kind: ClassVar[str] = "vlan"
    name: str = Field(min_length=1)
    id: int = Field(0, ge=0, le=4096)
    provider: str = ""


class ProviderNetwork(Obj):
    """A Kube-OVN ``ProviderNetwork``: the bridge and NIC an underlay leaves the nodes by."""

    kind: ClassVar[str] = "provider_network"
    name: str = Field(min_length=1)
    default_interface: str = ""


class QosRule(BaseModel):
    """One bandwidth limit rule of a Kube-OVN ``QoSPolicy``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = ""
    direction: str = ""
    rate_max_mbps: float = Field(0, ge=0)
    burst_max_mbps: float = Field(0, ge=0)
    match_type: str = ""
    match_value: str = ""
    priority: int = 0


class QosPolicy(Obj):
    """A Kube-OVN ``QoSPolicy`` (bound to EIPs or NAT gateways)."""

    kind: ClassVar[str] = "qos_policy"
    name: str = Field(min_length=1)
    binding_type: str = ""
    shared: bool = False
    rules: tuple[QosRule, ...] = ()


class NatGateway(Obj):
    """A Kube-OVN ``VpcNatGateway``: the pod a VPC leaves by; its EIPs are the ``IptablesEIP``
    objects whose ``natGwDp`` names it, ``qos_policy`` limits its external NIC (net1)."""

    kind: ClassVar[str] = "nat_gateway"
    name: str = Field(min_length=1)
    vpc: str = ""
    subnet: str = ""
    lan_ip: str = ""
    external_subnets: tuple[str, ...] = ()
    qos_policy: str = ""


class Cluster(Obj):
    """A Kubernetes cluster: the cloud it runs in, for the cross-cloud path class."""

    kind: ClassVar[str] = "cluster"
    name: str = Field(min_length=1)
    cloud: str = ""
    center: str = ""

    @property
    def key(self) -> str:
        return self.name


#: Every kind, by name: how a stored version's attributes become an object again.
KINDS: dict[str, type[Obj]] = {
    c.kind: c
    for c in (Site, Center, Node, Network, Namespace, Pod, IPAddress, Vpc, Service)
    + (Host, Eip, NatRule, Vlan, ProviderNetwork, QosPolicy, NatGateway, Cluster)
}


def from_attrs(kind: str, attrs: dict[str, Any]) -> Obj:
    """Rebuild an object from its stored attributes."""
    return KINDS[kind].model_validate(attrs)
