"""Kubernetes and Kube-OVN objects in their wire format, for tests.

Field names are Kube-OVN's (``kubeovn.io/v1``), taken from its Go API types
(``pkg/apis/kubeovn/v1``: subnet.go, ip.go, vlan.go, provider-network.go, ovn-eip.go, ovn-fip.go,
ovn-snat-rule.go, ovn-dnat-rule.go, iptables-eip.go, iptables-fip-rule.go, iptables-snat-rule.go,
iptables-dnat-rule.go, qos-policy.go, vpc-nat-gateway.go) as of Kube-OVN v1.15/v1.16 and its API reference (v1.12);
the pod annotations are Multus's ``k8s.v1.cni.cncf.io/network-status`` and Kube-OVN's
``ovn.kubernetes.io/ingress_rate``/``egress_rate``.
"""

from __future__ import annotations

import json

# kubernetes resource name → (api group path, apiVersion, kind)
RESOURCES = {
    "vlans": "Vlan",
    "provider-networks": "ProviderNetwork",
    "ovn-eips": "OvnEip",
    "ovn-fips": "OvnFip",
    "ovn-snat-rules": "OvnSnatRule",
    "ovn-dnat-rules": "OvnDnatRule",
    "iptables-eips": "IptablesEIP",
    "iptables-fip-rules": "IptablesFIPRule",
    "iptables-snat-rules": "IptablesSnatRule",
    "iptables-dnat-rules": "IptablesDnatRule",
    "qos-policies": "QoSPolicy",
    "vpc-nat-gateways": "VpcNatGateway",
}


def _meta(name: str, namespace: str | None = None, **labels: str) -> dict:
    meta: dict = {"name": name, "uid": f"uid-{namespace}-{name}", "creationTimestamp": "2023-11-14T00:00:00Z"}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = {f"netobs.io/{k}": v for k, v in labels.items()}
    return meta


def namespace(name: str, tenant: str = "") -> dict:
    return {"metadata": _meta(name, **({"tenant": tenant} if tenant else {}))}


def node(name: str, ip: str, center: str = "") -> dict:
    return {
        "metadata": _meta(name, **({"center": center} if center else {})),
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]
        },
    }


def pod(
    ns: str,
    name: str,
    ip: str,
    node: str = "",
    attachments: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    ingress_rate: str = "",
    egress_rate: str = "",
) -> dict:
    """A running pod; ``attachments``: (network ``ns/name``, interface, address) of its further NICs."""
    status = [
        {
            "name": "kube-ovn",
            "interface": "eth0",
            "ips": [ip],
            "mac": "00:00:00:aa:00:01",
            "default": True,
            "dns": {},
        }
    ]
    for net, ifname, addr in attachments:
        status.append(
            {"name": net, "interface": ifname, "ips": [addr], "mac": "00:00:00:aa:00:02", "dns": {}}
        )
    notes = {"k8s.v1.cni.cncf.io/network-status": json.dumps(status)}
    if attachments:
        notes["k8s.v1.cni.cncf.io/networks"] = ",".join(n for n, _, _ in attachments)
    if ingress_rate:
        notes["ovn.kubernetes.io/ingress_rate"] = ingress_rate
    if egress_rate:
        notes["ovn.kubernetes.io/egress_rate"] = egress_rate
    meta = _meta(name, ns)
    meta["annotations"] = notes
    return {
        "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def subnet(
    name: str, cidr: str, provider: str = "ovn", plane: str = "", vlan: str = "", vpc: str = "ovn-cluster"
) -> dict:
    spec = {
        "cidrBlock": cidr,
        "protocol": "IPv4",
        "provider": provider,
        "vpc": vpc,
        "gateway": cidr.split("/")[0][:-1] + "1",
    }
    if vlan:
        spec["vlan"] = vlan
    return {"metadata": _meta(name, **({"plane": plane} if plane else {})), "spec": spec}


def ip(name: str, address: str, pod: str, namespace: str, subnet: str, node: str = "") -> dict:
    return {
        "metadata": _meta(name),
        "spec": {"podName": pod, "namespace": namespace, "subnet": subnet, "nodeName": node,
                 "ipAddress": address, "v4IpAddress": address, "v6IpAddress": "", "macAddress": "00:00:00:aa:00:09",
                 "containerID": "c0ffee", "podType": ""},
    }  # fmt: skip


def vlan(name: str, vid: int, provider: str) -> dict:
    return {"metadata": _meta(name), "spec": {"id": vid, "provider": provider}}


def provider_network(name: str, nic: str) -> dict:
    return {"metadata": _meta(name), "spec": {"defaultInterface": nic, "excludeNodes": []}}


def ovn_eip(name: str, v4: str, subnet: str = "external") -> dict:
    return {"metadata": _meta(name), "spec": {"externalSubnet": subnet, "v4Ip": v4, "v6Ip": "", "macAddress": "", "type": "nat"},
            "status": {"ready": True, "v4Ip": v4, "nat": "fip"}}  # fmt: skip


def ovn_fip(name: str, eip: str, ip_name: str = "", v4: str = "") -> dict:
    return {
        "metadata": _meta(name),
        "spec": {"ovnEip": eip, "ipType": "", "ipName": ip_name, "vpc": "", "v4Ip": v4},
    }


def ovn_snat(name: str, eip: str, vpc_subnet: str = "", ip_name: str = "", v4_cidr: str = "") -> dict:
    return {"metadata": _meta(name),
            "spec": {"ovnEip": eip, "vpcSubnet": vpc_subnet, "ipName": ip_name, "vpc": "", "v4IpCidr": v4_cidr}}  # fmt: skip


def ovn_dnat(
    name: str, eip: str, ip_name: str, internal_port: str, external_port: str, protocol: str = "tcp"
) -> dict:
    return {"metadata": _meta(name),
            "spec": {"ovnEip": eip, "ipType": "ip", "ipName": ip_name, "internalPort": internal_port,
                     "externalPort": external_port, "protocol": protocol, "vpc": "", "v4Ip": ""}}  # fmt: skip


def iptables_eip(name: str, v4: str, nat_gw: str = "gw1", qos: str = "") -> dict:
    return {"metadata": _meta(name),
            "spec": {"v4ip": v4, "v6ip": "", "macAddress": "", "natGwDp": nat_gw, "qosPolicy": qos, "externalSubnet": "ovn-vpc-external-network"},
            "status": {"ready": True, "ip": v4, "nat": "snat"}}  # fmt: skip


def iptables_fip(name: str, eip: str, internal_ip: str) -> dict:
    return {"metadata": _meta(name), "spec": {"eip": eip, "internalIp": internal_ip}}


def iptables_snat(name: str, eip: str, internal_cidr: str) -> dict:
    return {"metadata": _meta(name), "spec": {"eip": eip, "internalCIDR": internal_cidr}}


def iptables_dnat(
    name: str, eip: str, internal_ip: str, internal_port: str, external_port: str, protocol: str = "tcp"
) -> dict:
    return {"metadata": _meta(name),
            "spec": {"eip": eip, "externalPort": external_port, "protocol": protocol, "internalIp": internal_ip,
                     "internalPort": internal_port}}  # fmt: skip


def qos_policy(name: str, rate_mbps: str, direction: str = "egress", binding: str = "EIP") -> dict:
    return {"metadata": _meta(name),
            "spec": {"shared": False, "bindingType": binding,
                     "bandwidthLimitRules": [{"name": "limit", "rateMax": rate_mbps, "burstMax": rate_mbps,
                                              "priority": 1, "direction": direction}]}}  # fmt: skip


def qos_rule(
    name: str, rate_mbps: str, direction: str, priority: int = 1, interface: str = "", match: str = ""
) -> dict:
    """One ``bandwidthLimitRules`` item (``matchValue`` e.g. ``dst 172.18.11.23/32``, ``matchType: ip``)."""
    rule = {
        "name": name,
        "rateMax": rate_mbps,
        "burstMax": rate_mbps,
        "priority": priority,
        "direction": direction,
    }
    if interface:
        rule["interface"] = interface
    if match:
        rule |= {"matchType": "ip", "matchValue": match}
    return rule


def qos_policy_rules(name: str, rules: list[dict], binding: str = "EIP", shared: bool = False) -> dict:
    spec = {"shared": shared, "bindingType": binding, "bandwidthLimitRules": rules}
    return {"metadata": _meta(name), "spec": spec, "status": dict(spec, conditions=[])}


def vpc_nat_gateway(name: str, vpc: str, subnet: str, lan_ip: str, qos: str = "") -> dict:
    return {"metadata": _meta(name),
            "spec": {"vpc": vpc, "subnet": subnet, "externalSubnets": ["ovn-vpc-external-network"], "lanIp": lan_ip,
                     "selector": ["kubernetes.io/os: linux"], "tolerations": [], "affinity": {}, "qosPolicy": qos,
                     "bgpSpeaker": {"enabled": False}, "routes": []},
            "status": {"qosPolicy": qos, "externalSubnets": ["ovn-vpc-external-network"], "selector": [],
                       "tolerations": [], "affinity": {}}}  # fmt: skip
