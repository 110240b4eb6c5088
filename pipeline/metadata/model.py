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


class Obj(BaseModel):
    """Base of every metadata object: unknown keys rejected, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str] = ""

    @property
    def key(self) -> str:
        return getattr(self, "name")  # noqa: B009 - every kind has a name

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
    start: datetime | None = Field(None, description="Start of life (default: when it was applied).")
    end: datetime | None = Field(None, description="End of life (default: still alive).")

    _v_ip = field_validator("ip", mode="before")(lambda v: None if v in (None, "") else _ip(v))
    _v_ips = field_validator("ips", mode="before")(_ips)

    @model_validator(mode="after")
    def _ordered(self) -> Pod:
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def addresses(self) -> tuple[str, ...]:
        return ((self.ip,) if self.ip else ()) + tuple(a for a in self.ips if a != self.ip)

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
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class Vpc(Obj):
    """A Kube-OVN VPC; recorded for history and SQL joins."""

    kind: ClassVar[str] = "vpc"
    name: str = Field(min_length=1)
    tenant: str = ""
    namespaces: tuple[str, ...] = ()


#: Every kind, by name: how a stored version's attributes become an object again.
KINDS: dict[str, type[Obj]] = {
    c.kind: c for c in (Site, Center, Node, Network, Namespace, Pod, IPAddress, Vpc, Service)
}


def from_attrs(kind: str, attrs: dict[str, Any]) -> Obj:
    """Rebuild an object from its stored attributes."""
    return KINDS[kind].model_validate(attrs)
