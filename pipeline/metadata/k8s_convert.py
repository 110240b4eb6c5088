"""Kubernetes and Kube-OVN objects (wire-format dicts) → metadata model objects.

Tenant, zone and center are not Kubernetes concepts: they come from labels on the
objects (``netobs.io/tenant``, ``netobs.io/zone``, ``netobs.io/center``; a node's center
falls back to ``topology.kubernetes.io/zone``). A pod that no longer holds its address
(finished, or on the host network, whose address is the node's) converts to ``None``:
it is removed from the address index.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pipeline.metadata.model import (
    Eip,
    IPAddress,
    Namespace,
    NatGateway,
    NatRule,
    Network,
    Node,
    Obj,
    Pod,
    ProviderNetwork,
    QosPolicy,
    QosRule,
    Service,
    Vlan,
    Vpc,
)

TENANT, ZONE, CENTER = "netobs.io/tenant", "netobs.io/zone", "netobs.io/center"
#: A subnet's plane label (business, management, storage, backup, ...).
PLANE = "netobs.io/plane"
#: Multus: every attachment of a pod, with its interface and addresses (a JSON list).
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
#: Kube-OVN pod bandwidth limits, Mbit/s.
INGRESS_RATE, EGRESS_RATE = "ovn.kubernetes.io/ingress_rate", "ovn.kubernetes.io/egress_rate"


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _labels(obj: dict) -> dict[str, str]:
    return dict(_meta(obj).get("labels") or {})


def workload_of(meta: dict) -> str:
    """The owning workload: a ReplicaSet's Deployment (hash suffix stripped), else the owner."""
    owners = meta.get("ownerReferences") or []
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if not owner:
        return ""
    name = owner.get("name", "")
    hash_ = (meta.get("labels") or {}).get("pod-template-hash")
    if owner.get("kind") == "ReplicaSet" and hash_ and name.endswith("-" + hash_):
        return name[: -len(hash_) - 1]
    return name


def pod(obj: dict) -> Obj | None:
    meta, spec, status = _meta(obj), obj.get("spec") or {}, obj.get("status") or {}
    if spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    ips = [p.get("ip") for p in status.get("podIPs") or [] if p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    if not ips:
        return None  # not scheduled / no address yet: nothing to name
    notes = meta.get("annotations") or {}
    return Pod(
        name=meta.get("name"),
        namespace=meta.get("namespace"),
        ip=ips[0],
        ips=ips[1:],
        node=spec.get("nodeName") or "",
        workload=workload_of(meta),
        labels=_labels(obj),
        ports=_container_ports(spec),
        planes=network_status(notes.get(NETWORK_STATUS)),
        ingress_rate_mbps=_rate(notes.get(INGRESS_RATE)),
        egress_rate_mbps=_rate(notes.get(EGRESS_RATE)),
        start=meta.get("creationTimestamp"),
    )


def network_status(text: str | None) -> dict[str, str]:
    """Address → attachment from Multus's ``network-status`` annotation.

    A JSON list of ``{"name": "<namespace>/<attachment>", "interface": "net1", "ips": [...],
    "mac": ..., "default": bool}``; the default network (``"default": true``, e.g. ``kube-ovn``)
    is left to its subnet. A malformed annotation raises (the pod is reported, not guessed at).
    """
    if not text:
        return {}
    items = json.loads(text)
    if not isinstance(items, list):
        raise ValueError(f"{NETWORK_STATUS}: a JSON list is expected")
    out: dict[str, str] = {}
    for it in items:
        if not isinstance(it, dict) or it.get("default"):
            continue
        for ip in it.get("ips") or []:
            out[str(ip)] = str(it.get("name") or it.get("interface") or "")
    return out


def _rate(v: Any) -> float:
    return float(v) if v not in (None, "") else 0.0


def plane_of_provider(provider: str) -> str:
    """``<attachment>.<namespace>[.ovn]`` → ``<namespace>/<attachment>`` (Multus's name); ovn → ''."""
    parts = (provider or "").split(".")
    if len(parts) >= 2 and provider != "ovn":
        return f"{parts[1]}/{parts[0]}"
    return ""


def _container_ports(spec: dict) -> tuple[int, ...]:
    ports = {
        int(p["containerPort"])
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
        for p in c.get("ports") or []
        if isinstance(p, dict) and str(p.get("containerPort", "")).isdigit()
    }
    return tuple(sorted(ports))


def service(obj: dict) -> Obj | None:
    """A Service's listening ports; ``targetPort`` names (not numbers) are left to container ports."""
    meta, spec = _meta(obj), obj.get("spec") or {}
    ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if ip and ip != "None"]
    ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
    targets = [int(p["targetPort"]) for p in ports if str(p.get("targetPort", "")).isdigit()]
    return Service(
        name=meta.get("name"),
        namespace=meta.get("namespace"),
        cluster_ips=ips,
        ports=tuple(int(p["port"]) for p in ports if str(p.get("port", "")).isdigit()),
        target_ports=tuple(targets),
        selector=dict(spec.get("selector") or {}),
    )


def namespace(obj: dict) -> Obj:
    labels = _labels(obj)
    return Namespace(
        name=_meta(obj).get("name"), tenant=labels.get(TENANT, ""), zone=labels.get(ZONE, ""), labels=labels
    )


def node(obj: dict) -> Obj:
    labels = _labels(obj)
    addrs = [
        a["address"]
        for a in (obj.get("status") or {}).get("addresses") or []
        if a.get("type") == "InternalIP"
    ]
    return Node(
        name=_meta(obj).get("name"),
        ip=addrs[0] if addrs else None,
        ips=addrs[1:],
        center=labels.get(CENTER) or labels.get("topology.kubernetes.io/zone", ""),
        labels=labels,
    )


def subnet(obj: dict) -> Obj:
    labels, spec = _labels(obj), obj.get("spec") or {}
    return Network(
        name=_meta(obj).get("name"),
        cidr=spec.get("cidrBlock"),
        kind_="subnet",
        vpc=spec.get("vpc") or "",
        tenant=labels.get(TENANT, ""),
        zone=labels.get(ZONE, ""),
        center=labels.get(CENTER, ""),
        plane=labels.get(PLANE) or plane_of_provider(spec.get("provider") or ""),
        provider=spec.get("provider") or "",
        vlan=spec.get("vlan") or "",
    )


def vpc(obj: dict) -> Obj:
    spec = obj.get("spec") or {}
    return Vpc(
        name=_meta(obj).get("name"),
        tenant=_labels(obj).get(TENANT, ""),
        namespaces=tuple(spec.get("namespaces") or ()),
    )


def ip(obj: dict) -> Obj:
    spec = obj.get("spec") or {}
    addrs = [a for a in (spec.get("v4IpAddress"), spec.get("v6IpAddress")) if a]
    return IPAddress(
        name=_meta(obj).get("name"),
        ips=addrs or spec.get("ipAddress"),
        pod=spec.get("podName") or "",
        namespace=spec.get("namespace") or "",
        node=spec.get("nodeName") or "",
        subnet=spec.get("subnet") or "",
        plane=_labels(obj).get(PLANE, ""),
    )


def vlan(obj: dict) -> Obj:
    spec = obj.get("spec") or {}
    return Vlan(name=_meta(obj).get("name"), id=int(spec.get("id") or 0), provider=spec.get("provider") or "")


def provider_network(obj: dict) -> Obj:
    spec = obj.get("spec") or {}
    return ProviderNetwork(name=_meta(obj).get("name"), default_interface=spec.get("defaultInterface") or "")


def _eip(flavour: str, v4: str, v6: str) -> Callable[[dict], Obj | None]:
    def convert(obj: dict) -> Obj | None:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        ips = [a for a in (spec.get(v4) or status.get(v4), spec.get(v6) or status.get(v6)) if a]
        if flavour == "iptables" and not ips and status.get("ip"):
            ips = [status["ip"]]
        if not ips:
            return None  # not allocated yet
        return Eip(
            name=_meta(obj).get("name"),
            ips=ips,
            flavour=flavour,
            external_subnet=spec.get("externalSubnet") or "",
            qos_policy=spec.get("qosPolicy") or status.get("qosPolicy") or "",
            nat_gw=spec.get("natGwDp") or "",
        )

    return convert


def _nat(
    typ: str, flavour: str, eip: str, internal: tuple[str, ...], ip_name: str = "", subnet: str = ""
) -> Callable[[dict], Obj]:
    def convert(obj: dict) -> Obj:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        addr = next((spec.get(f) or status.get(f) for f in internal if spec.get(f) or status.get(f)), "")
        return NatRule(
            name=_meta(obj).get("name"),
            type=typ,
            flavour=flavour,
            eip=spec.get(eip) or "",
            internal=addr,
            ip_name=spec.get(ip_name) or "" if ip_name else "",
            vpc_subnet=spec.get(subnet) or "" if subnet else "",
            internal_port=spec.get("internalPort") or 0,
            external_port=spec.get("externalPort") or 0,
            protocol=(spec.get("protocol") or "").lower(),
        )

    return convert


def qos_policy(obj: dict) -> Obj:
    spec = obj.get("spec") or {}
    rules = [
        QosRule(
            name=r.get("name") or "",
            direction=r.get("direction") or "",
            rate_max_mbps=_rate(r.get("rateMax")),
            burst_max_mbps=_rate(r.get("burstMax")),
            match_type=r.get("matchType") or "",
            match_value=r.get("matchValue") or "",
            priority=int(r.get("priority") or 0),
        )
        for r in spec.get("bandwidthLimitRules") or []
    ]
    return QosPolicy(
        name=_meta(obj).get("name"),
        binding_type=spec.get("bindingType") or "",
        shared=bool(spec.get("shared")),
        rules=tuple(rules),
    )


def nat_gateway(obj: dict) -> Obj:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return NatGateway(
        name=_meta(obj).get("name"),
        vpc=spec.get("vpc") or "",
        subnet=spec.get("subnet") or "",
        lan_ip=spec.get("lanIp") or "",
        external_subnets=tuple(spec.get("externalSubnets") or status.get("externalSubnets") or ()),
        qos_policy=spec.get("qosPolicy") or status.get("qosPolicy") or "",
    )


def key_of(kind: str, obj: dict, cluster: str = "") -> str:
    """The store key of a wire object (to delete it even when it no longer converts)."""
    meta = _meta(obj)
    namespaced = kind in ("pod", "service")
    key = f"{meta.get('namespace')}/{meta.get('name')}" if namespaced else str(meta.get("name"))
    return f"{cluster}::{key}" if cluster else key


#: Metadata kind and converter of each watched resource.
CONVERTERS: dict[str, tuple[str, Callable[[dict], Any]]] = {
    "pods": ("pod", pod),
    "namespaces": ("namespace", namespace),
    "nodes": ("node", node),
    "services": ("service", service),
    "subnets": ("network", subnet),
    "vpcs": ("vpc", vpc),
    "ips": ("ip", ip),
    "vlans": ("vlan", vlan),
    "provider-networks": ("provider_network", provider_network),
    "ovn-eips": ("eip", _eip("ovn", "v4Ip", "v6Ip")),
    "iptables-eips": ("eip", _eip("iptables", "v4ip", "v6ip")),
    "ovn-fips": ("nat", _nat("fip", "ovn", "ovnEip", ("v4Ip", "v6Ip"), ip_name="ipName")),
    "ovn-snat-rules": (
        "nat",
        _nat("snat", "ovn", "ovnEip", ("v4IpCidr", "v6IpCidr"), ip_name="ipName", subnet="vpcSubnet"),
    ),
    "ovn-dnat-rules": ("nat", _nat("dnat", "ovn", "ovnEip", ("v4Ip", "v6Ip"), ip_name="ipName")),
    "iptables-fip-rules": ("nat", _nat("fip", "iptables", "eip", ("internalIp",))),
    "iptables-snat-rules": ("nat", _nat("snat", "iptables", "eip", ("internalCIDR",))),
    "iptables-dnat-rules": ("nat", _nat("dnat", "iptables", "eip", ("internalIp",))),
    "qos-policies": ("qos_policy", qos_policy),
    "vpc-nat-gateways": ("nat_gateway", nat_gateway),
}

#: Kube-OVN resources beyond subnets/vpcs/ips: underlay, NAT and EIP, QoS (kubeovn.io/v1).
KUBE_OVN_NETWORK = tuple(r for r in CONVERTERS if r not in ("pods", "namespaces", "nodes", "services"))
