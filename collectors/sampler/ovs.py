"""Which pod is behind each port of the integration bridge, as Kube-OVN records it in OVS.

Kube-OVN's CNI sets ``external_ids:iface-id=<pod>.<namespace>`` (and ``pod_name``,
``pod_namespace``, ``attached-mac``) on the Interface row of each pod's port (the host end of
its veth, or an OVS internal port). One ``ovs-vsctl --format=json`` call lists them; the agent
calls it every ``poll_s`` and diffs, so pods that come and go are followed without a restart.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class PodPort:
    """One pod's port on the bridge."""

    ifname: str
    iface_id: str
    pod: str
    namespace: str
    mac: str


class OvsError(RuntimeError):
    """ovs-vsctl could not list the interfaces."""


def _map(value: object) -> dict[str, str]:
    # OVSDB JSON: ["map", [[k, v], ...]]
    if isinstance(value, list) and len(value) == 2 and value[0] == "map":
        return {str(k): str(v) for k, v in value[1]}
    return {}


def parse_interfaces(text: str, bridge_ports: set[str] | None = None) -> dict[str, PodPort]:
    """Interface name → its pod, from ``ovs-vsctl --format=json --columns=name,external_ids,type
    list Interface``; interfaces without an ``iface-id`` are not pods' (tunnels, the bridge)."""
    doc = json.loads(text)
    heads = doc.get("headings", [])
    out: dict[str, PodPort] = {}
    for row in doc.get("data", []):
        rec = dict(zip(heads, row, strict=False))
        name = str(rec.get("name", ""))
        ext = _map(rec.get("external_ids"))
        iface_id = ext.get("iface-id", "")
        if not iface_id or (bridge_ports is not None and name not in bridge_ports):
            continue
        pod, _, ns = iface_id.partition(".")
        out[name] = PodPort(
            name,
            iface_id,
            ext.get("pod_name", pod),
            ext.get("pod_namespace", ns),
            ext.get("attached-mac", ""),
        )
    return out


def list_pod_ports(vsctl: tuple[str, ...], bridge: str, timeout_s: float = 10.0) -> dict[str, PodPort]:
    """The pod ports of ``bridge`` now (``vsctl``: the ovs-vsctl command, e.g. with ``--db=``)."""
    try:
        ports = _run(vsctl + ("list-ports", bridge), timeout_s).split()
        listing = _run(
            vsctl + ("--format=json", "--columns=name,external_ids,type", "list", "Interface"), timeout_s
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise OvsError(str(e)) from None
    return parse_interfaces(listing, set(ports))


def _run(cmd: tuple[str, ...], timeout_s: float) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise OvsError(f"{' '.join(cmd[:3])}...: {proc.stderr.strip()[-200:]}")
    return proc.stdout


__all__ = ["OvsError", "PodPort", "list_pod_ports", "parse_interfaces"]
