"""The bank, live: its exporters send sFlow and IPFIX at real-time pace, with a story in the first minutes.

The two-site three-center bank of :mod:`analytics.scenario.bank` runs the ``mixed`` convention
of :mod:`analytics.scenario.conventions` (dc1: OVS bridge IPFIX, dc2: OVS sFlow, dc3: a probe
exporting IPFIX), every exporter keeping its own template and sequence state. Conversations
start now and end seconds later; each report is sent when its record would be exported (its end
plus an export delay). Node addresses are loopback aliases (127.0.2.x), so each exporter sends
from its own address and is told apart by the collector like a real one.

The story, from the start (:data:`TIMELINE`): a tenant talks to another tenant's database (a
policy violation), an api pod sends a burst to the internet (an anomaly), dc1 fails over to dc2,
and dc1 comes back. DR replication to dc3 runs throughout, and so do rollouts: from
:data:`CHURN_FROM_S` on, every :data:`CHURN_EVERY_S` seconds one more pod is recreated on the next
node of its center (StatefulSet order, same name and address as Kube-OVN's fixed IPs keep them),
tenant after tenant, round and round. ``on_move(bank, at_ms)`` tells the caller (which re-applies
the inventory at ``at_ms``); :attr:`LiveBank.moves` is the history. A conversation runs where its
pods were when it started.
"""

from __future__ import annotations

import bisect
import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from analytics.scenario import conventions as cv
from analytics.scenario.bank import NODES_PER_CENTER, Bank, node_ip

#: Where node exporters send from: loopback aliases, one per node (192.0.2.x in the offline bank).
NODE_NET = "127.0.2"
CONVENTION = "mixed"
SAMPLING = {"ipfix": 1, "sflow": 64, "probe": 1, "router": 100}
#: Conversations start at most this long after they are made, and last at most half of it.
SPAN_MS = 20_000
#: Rollouts: the first pod moves this long after the start, then one more every CHURN_EVERY_S.
CHURN_FROM_S = 30
CHURN_EVERY_S = 20


@dataclass(frozen=True)
class Event:
    name: str
    start_s: float
    end_s: float
    what: str


TIMELINE = (
    Event("policy violation", 45, 600, "tenant01's api (dc1) connects to tenant02's database on 5432"),
    Event("anomaly", 60, 180, "tenant03's api in dc1 sends a burst to 198.51.100.66:443 (the internet)"),
    Event("failover", 120, 300, "dc1 fails: its traffic moves to dc2 (the other production center)"),
    Event("rollouts", CHURN_FROM_S, float("inf"),
          f"from here on, every {CHURN_EVERY_S} s a rollout recreates one more pod on another node of its "
          "center (same name and IP, Kube-OVN); flows are named by where the pod ran when they started"),
)  # fmt: skip


@dataclass(frozen=True)
class Move:
    """One pod recreated on another node at ``at_ms`` (its name and address stay)."""

    at_ms: int
    ip: str
    pod: str
    tenant: str
    old_node: str
    new_node: str
    new_node_ip: str


def live_bank(tenants: int = 10) -> Bank:
    """The bank with its nodes on loopback aliases."""
    bank = Bank(tenants)
    bank.pods = [replace(p, node_ip=_alias(p.node_ip)) for p in bank.pods]
    return bank


def _alias(node_ip: str) -> str:
    return f"{NODE_NET}.{node_ip.rsplit('.', 1)[1]}"


def inventory(bank: Bank) -> dict:
    """The live bank's inventory: nodes on their aliases, where each pod runs now, zones by tenant."""
    inv = cv.inventory(bank)
    for site in inv["sites"]:
        for center in site["centers"]:
            for node in center["nodes"]:
                node["ip"] = _alias(node["ip"])
    nodes = {p.ip: p.node for p in bank.pods}
    for pod in inv["pods"]:
        pod["node"] = nodes[pod["ip"]]
    for item in (*inv["namespaces"], *inv["networks"]):
        item["zone"] = zone_of(item["tenant"])
    return inv


def zone_of(tenant: str) -> str:
    """Security zones: the first tenants hold card data (pci), the last are internal tools."""
    n = int(tenant[-2:])
    return "pci" if n <= 3 else "internal" if n >= 9 else "production"


class LiveBank:
    """Makes the bank's traffic and sends its exports through ``send(exporter, protocol, payload)``."""

    def __init__(
        self,
        bank: Bank,
        send: Callable[[str, str, bytes], None],
        seed: int,
        rate: float = 10.0,
        on_move: Callable[[Bank, int], None] | None = None,
    ):
        self.bank, self.send, self.rate, self.on_move = bank, send, rate, on_move
        self.rng = np.random.default_rng(seed)
        self.started_ms = 0
        self.made_until_ms = 0
        self._queue: list[tuple[int, int, cv.Report]] = []
        self._n = 0
        self._exporters: dict[tuple[str, str], cv._IpfixExporter] = {}
        self._sflow_seq: dict[str, int] = {}
        self.sent = {"datagrams": 0, "reports": 0}
        self.happened: list[str] = []
        #: Moves made so far (applied to the bank, ``on_move`` called), oldest first.
        self.moves: list[Move] = []
        self._planned: list[Move] = []  # every move decided, applied or not (made ahead of time)
        #: Where each pod runs from when: ip -> ([since_ms...], [(node, node_ip)...]).
        self._history: dict[str, tuple[list[int], list[tuple[str, str]]]] = {}
        self._order = sorted(
            bank.pods, key=lambda p: (p.tenant, p.center, p.service, -int(p.name.rsplit("-", 1)[1]))
        )

    def elapsed_s(self, now_ms: int) -> float:
        return (now_ms - self.started_ms) / 1000

    def active(self, name: str, now_ms: int) -> bool:
        t = self.elapsed_s(now_ms)
        return any(e.name == name and e.start_s <= t < max(e.end_s, e.start_s + 1e-9) for e in TIMELINE)

    # ---- conversations ------------------------------------------------------------------------
    def make(self, from_ms: int, to_ms: int) -> list[cv.Conversation]:
        """Conversations for the time from ``from_ms`` to ``to_ms`` (each starts within SPAN_MS of ``from_ms``)."""
        n = int(self.rng.poisson(self.rate * (to_ms - from_ms) / 1000))
        convs = (
            [self._own_tenant(c) for c in cv.conversations(self.bank, self.rng, from_ms, SPAN_MS, n)]
            if n
            else []
        )
        if self.active("failover", from_ms):
            convs = [self._failed_over(c) for c in convs]
        if self.active("policy violation", from_ms):
            convs += self._special(from_ms, ("tenant01", "api", 1), ("tenant02", "db", 1), 5432, 2, 400)
        if self.active("anomaly", from_ms):
            out = cv.End("198.51.100.66")
            convs += self._special(from_ms, ("tenant03", "api", 1), out, 443, 2, 6_000)
        self._plan(from_ms + SPAN_MS)
        return [self._placed(c) for c in convs]

    # ---- rollouts -----------------------------------------------------------------------------
    def _plan(self, until_ms: int) -> None:
        """Decide every move up to ``until_ms`` (conversations are made ahead of their start)."""
        first = self.started_ms + CHURN_FROM_S * 1000
        while True:
            k = len(self._planned)
            at = first + k * CHURN_EVERY_S * 1000
            if at > until_ms:
                return
            pod = self._order[k % len(self._order)]
            node, _ = self.node_at(pod.ip, at)
            n = int(node.rsplit("node", 1)[1]) % NODES_PER_CENTER + 1
            new = f"dc{pod.center}-node{n}"
            move = Move(at, pod.ip, pod.name, pod.tenant, node, new, _alias(node_ip(pod.center, n)))
            self._planned.append(move)
            since, where = self._history.setdefault(pod.ip, ([], []))
            since.append(at)
            where.append((new, move.new_node_ip))

    def node_at(self, ip: str, at_ms: int) -> tuple[str, str]:
        """(node, node address) where the pod with ``ip`` runs at ``at_ms`` (as planned)."""
        since, where = self._history.get(ip, ([], []))
        i = bisect.bisect_right(since, at_ms)
        if i:
            return where[i - 1]
        pod = next(p for p in self._order if p.ip == ip)
        return pod.node, pod.node_ip

    def _placed(self, c: cv.Conversation) -> cv.Conversation:
        """``c`` with each pod end on the node it runs on when ``c`` starts."""
        ends = []
        for e in (c.client, c.server):
            if e.is_pod and e.ip in self._history:
                node, address = self.node_at(e.ip, c.start_ms)
                e = replace(e, node=node, node_ip=address)
            ends.append(e)
        return replace(c, client=ends[0], server=ends[1])

    def _apply_moves(self, now_ms: int) -> None:
        """Make the planned moves that are due: the bank changes, ``on_move`` re-applies the inventory."""
        while len(self.moves) < len(self._planned) and self._planned[len(self.moves)].at_ms <= now_ms:
            move = self._planned[len(self.moves)]
            i = next(i for i, p in enumerate(self.bank.pods) if p.ip == move.ip)
            self.bank.pods[i] = replace(self.bank.pods[i], node=move.new_node, node_ip=move.new_node_ip)
            self.moves.append(move)
            if self.on_move is not None:
                self.on_move(self.bank, move.at_ms)

    def _pod(self, tenant: str, service: str, center: int) -> cv.End:
        pods = self.bank.pods_of(tenant, service, center)
        return cv._end(pods[int(self.rng.integers(0, len(pods)))])

    def _special(
        self, at_ms: int, client: tuple, server: tuple | cv.End, dport: int, n: int, packets: int
    ) -> list[cv.Conversation]:
        out = []
        for _ in range(int(self.rng.poisson(n))):
            srv = server if isinstance(server, cv.End) else self._pod(*server)
            duration = int(self.rng.integers(1_000, SPAN_MS // 2))
            start = at_ms + int(self.rng.integers(0, SPAN_MS - duration))
            fwd = int(packets * self.rng.uniform(0.7, 1.3))
            out.append(cv.Conversation(10**9 + self._count(), self._pod(*client), srv,
                                       int(self.rng.integers(32768, 61000)), dport, 6, start, duration,
                                       fwd, max(1, fwd // 20), 1400, 80))  # fmt: skip
        return out

    def _own_tenant(self, c: cv.Conversation) -> cv.Conversation:
        """A tenant's services talk to that tenant's own pods (the isolation the policy asks for)."""
        pods = {p.ip: p for p in self.bank.pods}
        client, server = pods.get(c.client.ip), pods.get(c.server.ip)
        if client is None or server is None or client.tenant == server.tenant:
            return c
        twins = self.bank.pods_of(client.tenant, server.service, server.center)
        if not twins:
            return c
        return replace(c, server=cv._end(twins[int(self.rng.integers(0, len(twins)))]))

    def _failed_over(self, c: cv.Conversation) -> cv.Conversation:
        """dc1 is down: what ran there runs in dc2 (same tenant, same service)."""
        ends = []
        for e in (c.client, c.server):
            pod = next((p for p in self.bank.pods if p.ip == e.ip), None)
            if pod is not None and pod.center == 1:
                twins = self.bank.pods_of(pod.tenant, pod.service, 2)
                ends.append(cv._end(twins[int(self.rng.integers(0, len(twins)))]))
            else:
                ends.append(e)
        return replace(c, client=ends[0], server=ends[1])

    def _count(self) -> int:
        self._n += 1
        return self._n

    # ---- exports ------------------------------------------------------------------------------
    def step(self, now_ms: int) -> int:
        """Make what starts up to ``now_ms`` and send every report due; returns datagrams sent."""
        if not self.started_ms:
            self.started_ms = self.made_until_ms = now_ms
        for e in TIMELINE:
            if e.name not in self.happened and self.elapsed_s(now_ms) >= e.start_s:
                self.happened.append(e.name)
        self._plan(now_ms)
        self._apply_moves(now_ms)
        if now_ms > self.made_until_ms:
            convs = self.make(self.made_until_ms, now_ms)
            self.made_until_ms = now_ms
            reps, _ = cv.reports(convs, CONVENTION, SAMPLING, self.rng)
            for r in reps:
                at = r.end_ms + int(self.rng.integers(200, 3_000))
                heapq.heappush(self._queue, (at, self._count(), r))
        due: list[cv.Report] = []
        while self._queue and self._queue[0][0] <= now_ms:
            due.append(heapq.heappop(self._queue)[2])
        return self._send(due, now_ms)

    def _send(self, reps: list[cv.Report], now_ms: int) -> int:
        groups: dict[tuple[str, str, str], list[cv.Report]] = {}
        for r in reps:
            groups.setdefault((r.exporter, r.protocol, r.style), []).append(r)
        sent = 0
        for (address, protocol, style), recs in sorted(groups.items()):
            if protocol == "sflow":
                seq = self._sflow_seq.get(address, 0)
                dgrams = cv._sflow(address, recs, now_ms, seq, recs[0].sampling)
                self._sflow_seq[address] = seq + sum(r.packets for r in recs)
            else:
                key = (address, style)
                if key not in self._exporters:
                    self._exporters[key] = cv._IpfixExporter(address, style, recs[0].sampling)
                dgrams = self._exporters[key].datagrams(recs, now_ms // 1000)
            for d in dgrams:
                self.send(address, "sflow" if protocol == "sflow" else "ipfix", d)
            sent += len(dgrams)
        self.sent["datagrams"] += sent
        self.sent["reports"] += len(reps)
        return sent

    def run(self, stop: threading.Event, tick_s: float = 1.0) -> None:
        """Step every ``tick_s`` seconds of wall clock until ``stop`` is set."""
        while not stop.is_set():
            self.step(int(time.time() * 1000))
            stop.wait(tick_s)


__all__ = [
    "CONVENTION",
    "NODE_NET",
    "SAMPLING",
    "TIMELINE",
    "Event",
    "LiveBank",
    "Move",
    "inventory",
    "live_bank",
    "zone_of",
]
