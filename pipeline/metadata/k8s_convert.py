"""Kubernetes and Kube-OVN objects (wire-format dicts) → metadata model objects.

Tenant, zone and center are not Kubernetes concepts: they come from labels on the
objects (``netobs.io/tenant``, ``netobs.io/zone``, ``netobs.io/center``; a node's center
falls back to ``topology.kubernetes.io/zone``). A pod that no longer holds its address
(finished, or on the host network, whose address is the node's) converts to ``None``:
it is removed from the address index.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.metadata.model import IPAddress, Namespace, Network, Node, Obj, Pod, Service, Vpc

TENANT, ZONE, CENTER = "netobs.io/tenant", "netobs.io/zone", "netobs.io/center"


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
    return Pod(
        name=meta.get("name"),
        namespace=meta.get("namespace"),
        ip=ips[0],
        ips=ips[1:],
        node=spec.get("nodeName") or "",
        workload=workload_of(meta),
        labels=_labels(obj),
        ports=_container_ports(spec),
        start=meta.get("creationTimestamp"),
    )


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
    )


def key_of(kind: str, obj: dict) -> str:
    """The store key of a wire object (to delete it even when it no longer converts)."""
    meta = _meta(obj)
    namespaced = kind in ("pod", "service")
    return f"{meta.get('namespace')}/{meta.get('name')}" if namespaced else str(meta.get("name"))


#: Metadata kind and converter of each watched resource.
CONVERTERS: dict[str, tuple[str, Callable[[dict], Any]]] = {
    "pods": ("pod", pod),
    "namespaces": ("namespace", namespace),
    "nodes": ("node", node),
    "services": ("service", service),
    "subnets": ("network", subnet),
    "vpcs": ("vpc", vpc),
    "ips": ("ip", ip),
}
