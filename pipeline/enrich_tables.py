"""The enrichment index: metadata versions turned into integer-coded tables and lookups.

Every string (names, tenants, zones, paths) is interned once in a pool; tables hold pool
codes, and code 0 is ''. Each table ends with a sentinel row of zeros, so gathering with
row -1 ("not found") reads '' without any mask.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from pipeline.enrich_index import Addresses, AddressSet, IntervalIndex, PrefixIndex, addrs16
from pipeline.metadata.store import Version

#: Exact-address sources in priority order: Pod objects, Kube-OVN IP allocations, node addresses.
EXACT_KINDS = ("pod", "ip", "node")
PATHS = ("intra_node", "intra_center", "cross_center", "cross_site", "external", "unknown")
ATTRS = ("pod", "namespace", "workload", "node", "tenant", "subnet", "vpc", "zone", "center", "site")


class Pool:
    """String interning: text → dense code, code 0 is ''."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {"": 0}

    def __call__(self, text: str | None) -> int:
        return self.codes.setdefault(text or "", len(self.codes))

    def array(self) -> pa.Array:
        return pa.array(list(self.codes), pa.string())


def _col(values: list[int], dtype: str = "int64") -> np.ndarray:
    """A code column with the sentinel row appended."""
    return np.array([*values, 0], dtype=dtype)


class Tables:
    """Everything :class:`pipeline.enrich.Enricher` looks up, built from versions."""

    def __init__(self, versions: Iterable[Version]):
        by_kind: dict[str, list[Version]] = {}
        for v in versions:
            by_kind.setdefault(v.kind, []).append(v)
        self.pool = pool = Pool()
        self.path_codes = np.array([pool(p) for p in PATHS], dtype=np.int64)
        self._networks(by_kind.get("network", []))
        self._endpoints(by_kind)
        self.ns_idx, (self.ns_tenant, self.ns_zone) = self._keyed(
            by_kind.get("namespace", []), "tenant", "zone"
        )
        self.node_idx, (self.node_center,) = self._keyed(by_kind.get("node", []), "center")
        self.center_idx, (self.center_site,) = self._keyed(by_kind.get("center", []), "site")
        self.strings = pool.array()
        self._profiles()

    def _profiles(self) -> None:
        """Attributes of every endpoint row, then every network row, then '' (the sentinel).

        Resolved once at each row's ``valid_from``. A row is ``static`` when its namespace,
        node and center have a single version covering the row's whole life; flows on
        other rows are resolved again at their own time (see :meth:`attributes`).
        """
        n_ep, n_net = len(self.ep_pod) - 1, len(self.net_subnet) - 1
        ep = np.concatenate([np.arange(n_ep), np.full(n_net + 1, -1)])
        net = np.concatenate([self.ep_net[:n_ep], np.arange(n_net), [-1]])
        t0 = np.concatenate([self.ep_start, self.net_start, [0]])
        t1 = np.concatenate([self.ep_end, self.net_end, [0]])
        codes = self.attributes(ep, net, t0)
        static = np.ones(len(ep), dtype=bool)
        for idx, key in ((self.ns_idx, codes["namespace"]), (self.node_idx, codes["node"])):
            static &= idx.covers(key, t0, t1)
        static &= self.center_idx.covers(codes["center"], t0, t1)
        self.profile = {a: codes[a].astype(np.int32) for a in (*ATTRS, "inside")}
        self.profile["inside"] = codes["inside"]
        self.static = static
        self.n_ep = n_ep

    def exporter(self, addrs: Addresses, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Node and center codes of exporter addresses (node addresses only)."""
        aset, idx, offset = self.exact[EXACT_KINDS.index("node")]
        hit = idx.lookup(aset.lookup(addrs), times) if len(aset) else np.full(addrs.n, -1)
        node = self.ep_node[np.where(hit >= 0, hit + offset, -1)]
        return node, self.node_center[self.node_idx.lookup(node, times)]

    def attributes(self, ep: np.ndarray, net: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
        """Pool codes of every attribute for endpoint rows ``ep`` / network rows ``net`` at ``times``."""
        ns_code = self.ep_ns[ep]
        ns = self.ns_idx.lookup(ns_code, times)
        node = self.ep_node[ep]
        node_center = self.node_center[self.node_idx.lookup(node, times)]
        center = np.where(node_center != 0, node_center, self.net_center[net])
        ns_tenant, ns_zone = self.ns_tenant[ns], self.ns_zone[ns]
        return {
            "pod": self.ep_pod[ep],
            "namespace": ns_code,
            "workload": self.ep_workload[ep],
            "node": node,
            "tenant": np.where(ns_tenant != 0, ns_tenant, self.net_tenant[net]),
            "subnet": self.net_subnet[net],
            "vpc": self.net_vpc[net],
            "zone": np.where(ns_zone != 0, ns_zone, self.net_zone[net]),
            "center": center,
            "site": self.center_site[self.center_idx.lookup(center, times)],
            "inside": (center != 0) & ((ep >= 0) | ~self.net_external[net]),
        }

    def _networks(self, versions: list[Version]) -> None:
        rows = [(v, c) for v in versions for c in v.attrs.get("cidr", ())]
        a, p = [v.attrs for v, _ in rows], self.pool
        self.net_subnet = _col([p(x.get("name")) for x in a])
        self.net_vpc = _col([p(x.get("vpc")) for x in a])
        self.net_tenant = _col([p(x.get("tenant")) for x in a])
        self.net_zone = _col([p(x.get("zone")) for x in a])
        self.net_center = _col([p(x.get("center")) for x in a])
        self.net_external = _col([x.get("kind") == "external" for x in a], "bool")
        self.net_start = np.array([v.valid_from for v, _ in rows], dtype=np.int64)
        self.net_end = np.array([v.valid_to for v, _ in rows], dtype=np.int64)
        self.prefix = PrefixIndex([c for _, c in rows], self.net_start, self.net_end)

    def _endpoints(self, by_kind: dict[str, list[Version]]) -> None:
        """One table of address owners; an exact index per source kind over its slice."""
        p = self.pool
        cols: dict[str, list[int]] = {"pod": [], "namespace": [], "workload": [], "node": []}
        addrs: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        all_raw: list[bytes] = []
        self.exact: list[tuple[AddressSet, IntervalIndex, int]] = []
        for kind in EXACT_KINDS:
            offset = len(addrs)
            for v in by_kind.get(kind, []):
                a = v.attrs
                own = _addresses(kind, a)
                names = _owner(kind, a)
                for ip in own:
                    addrs.append(ip)
                    starts.append(v.valid_from)
                    ends.append(v.valid_to)
                    for name, value in names.items():
                        cols[name].append(p(value))
            raw = addrs16(addrs[offset:])
            all_raw += raw
            aset = AddressSet(raw)
            keys = np.array([aset.ids[r] for r in raw], dtype=np.int64)
            idx = IntervalIndex(keys, starts[offset:], ends[offset:], len(aset))
            self.exact.append((aset, idx, offset))
        self.ep_pod, self.ep_ns, self.ep_workload, self.ep_node = (_col(cols[n]) for n in cols)
        self.ep_start = np.array(starts, dtype=np.int64)
        self.ep_end = np.array(ends, dtype=np.int64)
        raw_arr = np.frombuffer(b"".join(all_raw), dtype="V16")
        nets = self.prefix.lookup(Addresses(raw_arr), self.ep_start) if addrs else []
        self.ep_net = np.array([*nets, -1], dtype=np.int64)

    def _keyed(self, versions: list[Version], *fields: str) -> tuple[IntervalIndex, tuple[np.ndarray, ...]]:
        """Versions keyed by the pool code of their name, with ``fields`` as code columns."""
        p = self.pool
        keys = [p(v.key) for v in versions]
        values = tuple(_col([p(v.attrs.get(f)) for v in versions]) for f in fields)
        idx = IntervalIndex(
            np.array(keys, dtype=np.int64),
            np.array([v.valid_from for v in versions], dtype=np.int64),
            np.array([v.valid_to for v in versions], dtype=np.int64),
            nkeys=max(keys, default=0) + 1,
        )
        return idx, values


def _addresses(kind: str, attrs: dict) -> list[str]:
    if kind == "node":
        return list(dict.fromkeys(([attrs["ip"]] if attrs.get("ip") else []) + list(attrs.get("ips", ()))))
    if kind == "pod":
        return list(dict.fromkeys(([attrs["ip"]] if attrs.get("ip") else []) + list(attrs.get("ips", ()))))
    return list(attrs.get("ips", ()))


def _owner(kind: str, a: dict) -> dict[str, str]:
    if kind == "pod":
        return {
            "pod": a.get("name"),
            "namespace": a.get("namespace"),
            "workload": a.get("workload"),
            "node": a.get("node"),
        }
    if kind == "ip":
        return {"pod": a.get("pod"), "namespace": a.get("namespace"), "workload": "", "node": a.get("node")}
    return {"pod": "", "namespace": "", "workload": "", "node": a.get("name")}
