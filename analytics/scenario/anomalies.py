"""Anomalies injected into the synthetic bank at known times, each with its label.

A label names the detector expected to find it, the window, and the entities that identify
it. ``planned`` labels sit inside a declared window and must be reported as such (info), not
as incidents; ``negative`` labels must produce no finding at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from analytics.scenario.bank import Bank, node_ip
from analytics.scenario.traffic import Bucket, Conversation

HOUR_MS = 3_600_000
#: Real bytes of one scan probe unless the anomaly says otherwise.
PROBE_BYTES = 60_000.0


@dataclass
class Label:
    detector: str
    start_ms: int
    end_ms: int
    entities: dict[str, str]
    planned: bool = False
    negative: bool = False
    #: Whether the convention and sampling the scenario is exported with can show it at all, and why not.
    observable: bool = True
    why: str = ""

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Anomaly:
    """An injection active in [start_ms, end_ms); ``apply`` edits one bucket in place."""

    label: Label
    kind: str
    params: dict = field(default_factory=dict)

    def active(self, t_ms: int) -> bool:
        return self.label.start_ms <= t_ms < self.label.end_ms

    def apply(self, bank: Bank, b: Bucket, rng: np.random.Generator) -> None:
        getattr(self, f"_{self.kind}")(bank, b, rng, **self.params)

    def _scale(self, bank, b, rng, tenant: str, center: int, factor: float, edge: str | None = None) -> None:
        for conv in b.conversations:
            if conv.client.tenant == tenant and conv.client.center == center and conv.server.center == center:
                if edge is None or conv.client.service == edge:
                    conv.request_bytes *= factor

    def _failover(self, bank, b, rng, tenant: str, lost: int, to: int) -> None:
        for conv in b.conversations:
            if conv.client.tenant == tenant and conv.client.center == lost and conv.server.center == lost:
                conv.client = bank.pods_of(tenant, conv.client.service, to)[0]
                conv.server = bank.pods_of(tenant, conv.server.service, to)[0]

    def _cross(
        self,
        bank,
        b,
        rng,
        tenant: str,
        client: tuple[str, int],
        server: tuple[str, int],
        nbytes: float,
        forward_at: tuple[str, ...] | None = None,
        reverse_at: tuple[str, ...] | None = None,
        response_ratio: float = 8.0,
    ) -> None:
        c = bank.pods_of(tenant, client[0], client[1])[0]
        s = bank.pods_of(tenant, server[0], server[1])[0]
        new = Conversation(c, s, nbytes, 45000, forward_at, reverse_at, response_ratio=response_ratio)
        if forward_at or reverse_at:
            # A path is a property of the route, not of one flow: while it is changed, every conversation
            # between the two pods to that port takes it (not only the one this anomaly adds beside them).
            for conv in b.conversations:
                if conv.client == c and conv.server == s and conv.port == new.port:
                    conv.forward_at, conv.reverse_at = forward_at, reverse_at
        b.conversations.append(new)

    def _scan(
        self, bank, b, rng, tenant: str, center: int, ports: int, hosts: int, probe_bytes: float = PROBE_BYTES,
        rotate: bool = False,
    ) -> None:  # fmt: skip
        """``ports`` probes per bucket; a slow scan (``rotate``) moves on to new ports every bucket."""
        src = bank.pods_of(tenant, "web", center)[0]
        targets = [p for p in bank.pods if p.center == center][:hosts]
        first = ((b.start_ms - self.label.start_ms) // 300_000) * ports if rotate else 0
        for i in range(ports):
            port = 1 + (first + i) % 30000
            b.conversations.append(
                Conversation(
                    src, targets[i % len(targets)], probe_bytes, 50000 + i, port=port, response_ratio=0.5
                )
            )

    def _silence(self, bank, b, rng, exporter: str) -> None:
        b.silent_exporters.add(exporter)


def _node_of(bank: Bank, tenant: str, service: str, center: int) -> str:
    return bank.pods_of(tenant, service, center)[0].node_ip


def default_anomalies(bank: Bank, first_ms: int, days: int, size: float = 1.0) -> list[Anomaly]:
    """One or more of each kind in the last week, at known hours (all windows on hour boundaries): spikes
    and drops to 0.5×, 0.3× and 0.1×, a planned and an unplanned failover, new DR traffic beside the
    normal replication and a drill, a new dependency, a cross-center and a center-local asymmetric
    path, a fast and a slow scan, an elephant, a silent exporter. ``size``: the bank's volume relative to
    the default; the added conversations' bytes scale with it (a scan's probes do not: a probe is a probe)."""
    d = first_ms + (days - 7) * 24 * HOUR_MS  # start of the last week
    t = [f"tenant{i:02d}" for i in range(1, bank.tenants + 1)]

    def at(day: int, hour: int, hours: float) -> tuple[int, int]:
        s = d + day * 24 * HOUR_MS + hour * HOUR_MS
        return s, s + int(hours * HOUR_MS)

    def a(detector, window, entities, kind, planned=False, negative=False, **params):
        if "nbytes" in params:
            params["nbytes"] *= size
        return Anomaly(Label(detector, *window, entities, planned, negative), kind, params)

    return [
        a(
            "volume",
            at(0, 10, 1),
            {"tenant": t[0], "kind": "spike"},
            "scale",
            tenant=t[0],
            center=1,
            factor=12.0,
        ),
        a(
            "volume",
            at(2, 14, 1),
            {"tenant": t[1], "kind": "drop"},
            "scale",
            tenant=t[1],
            center=2,
            factor=0.1,
        ),
        a(
            "volume",
            at(1, 15, 2),
            {"tenant": t[9], "kind": "drop"},
            "scale",
            tenant=t[9],
            center=1,
            factor=0.5,
        ),
        a(
            "volume",
            at(3, 20, 3),
            {"tenant": t[10], "kind": "drop"},
            "scale",
            tenant=t[10],
            center=2,
            factor=0.3,
        ),
        a(
            "fanout",
            at(2, 8, 6),
            {"tenant": t[11], "kind": "port_scan"},
            "scan",
            tenant=t[11],
            center=1,
            ports=20,
            hosts=20,
            probe_bytes=120.0,
            rotate=True,
        ),
        a(
            "asymmetric_path",
            at(5, 9, 1),
            {"tenant": t[12]},
            "cross",
            tenant=t[12],
            client=("web", 1),
            server=("api", 1),
            nbytes=1e7,
            forward_at=(_node_of(bank, t[12], "web", 1),),
            reverse_at=(_node_of(bank, t[12], "api", 1),),
        ),
        a(
            "center_shift",
            at(1, 9, 2),
            {"tenant": t[2], "kind": "failover"},
            "failover",
            tenant=t[2],
            lost=1,
            to=2,
        ),
        a(
            "center_shift",
            at(3, 2, 2),
            {"tenant": t[3], "kind": "failover"},
            "failover",
            planned=True,
            tenant=t[3],
            lost=1,
            to=2,
        ),
        a(
            "dr_traffic",
            at(4, 11, 1),
            {"tenant": t[4], "dst_center": "dc3"},
            "cross",
            tenant=t[4],
            client=("api", 1),
            server=("db", 3),
            nbytes=5e7,
        ),
        a(
            "dr_traffic",
            at(5, 3, 1),
            {"tenant": t[5], "dst_center": "dc3"},
            "cross",
            negative=True,
            tenant=t[5],
            client=("api", 1),
            server=("db", 3),
            nbytes=5e7,
        ),
        a(
            "new_dependency",
            at(3, 15, 2),
            {"tenant": t[6], "src_service": "api", "dst_service": "cache"},
            "cross",
            tenant=t[6],
            client=("api", 1),
            server=("cache", 2),
            nbytes=2e7,
        ),
        a(
            "asymmetric_path",
            at(4, 16, 1),
            {"tenant": t[7]},
            "cross",
            tenant=t[7],
            client=("web", 1),
            server=("api", 2),
            nbytes=1e7,
            forward_at=(node_ip(1, 1),),
            reverse_at=(node_ip(2, 2),),
        ),
        a(
            "fanout",
            at(5, 13, 1 / 6),
            {"tenant": t[8], "kind": "port_scan"},
            "scan",
            tenant=t[8],
            center=1,
            ports=300,
            hosts=20,
        ),
        a(
            "elephant",
            at(6, 1, 0.5),
            {"src_center": "dc1", "dst_center": "dc2"},
            "cross",
            tenant=t[13 % len(t)],
            client=("db", 1),
            server=("db", 2),
            nbytes=0.8 * 10e9 / 8 * 300,
            response_ratio=0.01,
        ),
        a("collection_gap", at(2, 20, 1), {"exporter": node_ip(2, 3)}, "silence", exporter=node_ip(2, 3)),
    ]
