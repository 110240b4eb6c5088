"""A synthetic two-site, three-center bank: topology, tenants, services, pods, and its inventory.

site-a holds the production centers dc1 and dc2 (same city), site-b the disaster-recovery
center dc3. Every tenant runs web → api → {db, cache} in dc1 and dc2 (active-active), its
databases replicate dc1 ↔ dc2, and a standby database waits in dc3. Addresses are
deterministic: tenant t, center c, service s, replica k → 10.t.c.(s*16+k+10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

CENTERS = (
    ("site-a", "dc1", "production"),
    ("site-a", "dc2", "production"),
    ("site-b", "dc3", "disaster-recovery"),
)
NODES_PER_CENTER = 4
#: service → port it listens on
SERVICES = {"web": 443, "api": 8080, "db": 5432, "cache": 6379}
#: (client service, server service) edges inside one center
EDGES = (("web", "api"), ("api", "db"), ("api", "cache"))
REPLICAS = 2


@dataclass(frozen=True)
class Pod:
    name: str
    tenant: str
    service: str
    center: int  # 1..3
    ip: str
    node: str
    node_ip: str


@dataclass
class Bank:
    tenants: int = 10
    pods: list[Pod] = field(default_factory=list)

    def __post_init__(self) -> None:
        for t in range(1, self.tenants + 1):
            for c in (1, 2, 3):
                services = ("db",) if c == 3 else tuple(SERVICES)  # dc3: only the standby database
                for si, svc in enumerate(SERVICES):
                    if svc not in services:
                        continue
                    for k in range(REPLICAS):
                        n = (t + si + k) % NODES_PER_CENTER + 1
                        self.pods.append(
                            Pod(
                                f"{svc}-{k}",
                                f"tenant{t:02d}",
                                svc,
                                c,
                                f"10.{t}.{c}.{si * 16 + k + 10}",
                                f"dc{c}-node{n}",
                                node_ip(c, n),
                            )
                        )

    def pods_of(self, tenant: str, service: str, center: int) -> list[Pod]:
        return [p for p in self.pods if p.tenant == tenant and p.service == service and p.center == center]

    def inventory(self) -> dict:
        """The inventory file shape of the pipeline (sites, networks, namespaces, pods)."""
        sites: dict[str, list] = {}
        for site, dc, role in CENTERS:
            c = int(dc[2:])
            nodes = [{"name": f"{dc}-node{n}", "ip": node_ip(c, n)} for n in range(1, NODES_PER_CENTER + 1)]
            sites.setdefault(site, []).append({"name": dc, "role": role, "nodes": nodes})
        networks, namespaces = [], []
        for t in range(1, self.tenants + 1):
            tenant = f"tenant{t:02d}"
            namespaces.append({"name": tenant, "tenant": tenant, "zone": "production"})
            for c in (1, 2, 3):
                networks.append(
                    {
                        "name": f"{tenant}-dc{c}",
                        "cidr": f"10.{t}.{c}.0/24",
                        "vpc": f"{tenant}-vpc",
                        "tenant": tenant,
                        "zone": "production",
                        "center": f"dc{c}",
                    }
                )
        pods = [
            {
                "name": f"{p.tenant}-{p.service}-dc{p.center}-{p.name[-1]}",
                "namespace": p.tenant,
                "ip": p.ip,
                "node": p.node,
                "workload": p.service,
                "labels": {"app": p.service},
            }
            for p in self.pods
        ]
        return {
            "sites": [{"name": s, "centers": cs} for s, cs in sites.items()],
            "networks": networks,
            "namespaces": namespaces,
            "pods": pods,
        }

    def write_inventory(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.inventory(), sort_keys=False))


def node_ip(center: int, n: int) -> str:
    return f"192.0.2.{center * 10 + n}"


def ip_int(ip: str) -> int:
    a, b, c, d = (int(x) for x in ip.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d
