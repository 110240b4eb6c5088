"""The enrichment index: metadata versions turned into integer-coded tables and lookups.

Every string (names, tenants, zones, paths) is interned once in a shared pool (one Arrow
``dictionary_encode`` over all of them); tables hold pool codes, and code 0 is ''. Each
table ends with a sentinel row of zeros, so gathering with row -1 ("not found") reads ''
without any mask. For output, each attribute also has its own small dictionary (the
values it can take) and per-profile codes into it, so a flow column is one integer
gather and, at the store boundary, a dictionary-encoded Arrow column.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.lookups import Addresses, AddressSet, IntervalIndex, PrefixIndex, addrs16, clip_times
from pipeline.metadata.versions import Version
from pipeline.nat import NatTable

#: Exact-address sources in priority order: Pod objects, Kube-OVN IP allocations, legacy hosts
#: (the CMDB), node addresses.
EXACT_KINDS = ("pod", "ip", "host", "node")
PATHS = ("intra_node", "intra_center", "cross_center", "cross_site", "external", "unknown")
#: Cluster path classes: both ends in one cluster, in two clusters, in two clusters of two clouds.
CLUSTER_PATHS = ("", "intra_cluster", "cross_cluster", "cross_cloud")
ATTRS = (
    "pod", "namespace", "workload", "node", "tenant", "subnet", "vpc", "zone", "center", "site",
    "plane", "cluster", "host",
)  # fmt: skip
_OWNER = ("pod", "namespace", "workload", "node", "host", "cluster", "tenant", "zone", "center", "plane")
#: Per exact kind, the attribute naming each of ``_OWNER`` ('' where the kind does not say).
#: A pod's plane is per address (``planes``), filled in :meth:`Tables._gather_endpoints`.
_OWNER_FIELDS = {
    "pod": ("name", "namespace", "workload", "node", "", "cluster", "", "", "", ""),
    "ip": ("pod", "namespace", "", "node", "", "cluster", "", "", "", "plane"),
    "host": ("", "", "application", "", "name", "cluster", "tenant", "zone", "center", "plane"),
    "node": ("", "", "", "name", "", "cluster", "", "", "", ""),
}


def _col(values: np.ndarray, dtype: str = "int64") -> np.ndarray:
    """A code column with the sentinel row appended."""
    return np.append(np.asarray(values, dtype=dtype), np.zeros(1, dtype=dtype))


class _Strings:
    """String columns collected first and interned together in one pass at :meth:`encode`."""

    def __init__(self) -> None:
        self.columns: dict[str, list[str]] = {}

    def add(self, name: str, values: list[str]) -> None:
        self.columns[name] = values

    def encode(self) -> tuple[dict[str, np.ndarray], pa.Array]:
        """Pool codes of every column (int64), and the pool (``pool[0] == ''``)."""
        flat: list[str] = [""]
        for values in self.columns.values():
            flat += values
        enc = pc.dictionary_encode(pa.array(flat, pa.string()))
        codes = np.asarray(enc.indices.to_numpy(), dtype=np.int64)
        out, at = {}, 1
        for name, values in self.columns.items():
            out[name] = codes[at : at + len(values)]
            at += len(values)
        return out, enc.dictionary


class Tables:
    """Everything :class:`pipeline.enrich.Enricher` looks up, built from versions."""

    def __init__(self, versions: Iterable[Version]):
        by_kind: dict[str, list[Version]] = {}
        for v in _qualified(versions):
            by_kind.setdefault(v.kind, []).append(v)
        self.nat = NatTable(by_kind)
        strings = _Strings()
        nets = self._gather_networks(by_kind.get("network", []), strings)
        eps = self._gather_endpoints(by_kind, strings)
        keyed = {
            "ns": _gather_keyed(by_kind.get("namespace", []), strings, "ns", ("tenant", "zone")),
            "node": _gather_keyed(by_kind.get("node", []), strings, "node", ("center",)),
            "center": _gather_keyed(by_kind.get("center", []), strings, "center", ("site",)),
        }
        codes, self.strings = strings.encode()
        self.path_codes = np.arange(len(PATHS), dtype=np.int64)
        self.paths = pa.array(PATHS, pa.string())
        self._networks(nets, codes)
        self._endpoints(eps, codes)
        self.ns_idx, (self.ns_tenant, self.ns_zone) = _keyed(keyed["ns"], codes, "ns", ("tenant", "zone"))
        self.node_idx, (self.node_center,) = _keyed(keyed["node"], codes, "node", ("center",))
        self.center_idx, (self.center_site,) = _keyed(keyed["center"], codes, "center", ("site",))
        self._profiles()
        self._dictionaries()
        self.cluster_paths = pa.array(CLUSTER_PATHS, pa.string())
        clouds = {v.attrs.get("name", v.key): v.attrs.get("cloud") or "" for v in by_kind.get("cluster", [])}
        cloud_code = {c: i + 1 for i, c in enumerate(sorted({c for c in clouds.values() if c}))}
        self.cluster_cloud = np.array(
            [cloud_code.get(clouds.get(name or "", ""), 0) for name in self.dicts["cluster"].to_pylist()],
            dtype=np.int64,
        )

    # ---- gathering (Python over versions, once per index build) ---------------------------------
    @staticmethod
    def _gather_networks(versions: list[Version], strings: _Strings) -> dict[str, Any]:
        rows = [(v, c) for v in versions for c in v.attrs.get("cidr", ())]
        attrs = [v.attrs for v, _ in rows]
        for f in ("name", "vpc", "tenant", "zone", "center", "plane", "cluster"):
            strings.add(f"net_{f}", [a.get(f) or "" for a in attrs])
        return {
            "cidrs": [c for _, c in rows],
            "external": np.array([a.get("kind") == "external" for a in attrs], dtype=bool),
            "start": np.array([v.valid_from for v, _ in rows], dtype=np.int64),
            "end": np.array([v.valid_to for v, _ in rows], dtype=np.int64),
        }

    @staticmethod
    def _gather_endpoints(by_kind: dict[str, list[Version]], strings: _Strings) -> dict[str, Any]:
        """One row per (address owner version, address), kinds in priority order.

        Column by column (a comprehension per attribute), not version by version: this loop
        over every pod is most of an index build."""
        ips: list[str] = []
        owners: list[list[str]] = [[] for _ in _OWNER]
        starts: list[np.ndarray] = []
        ends: list[np.ndarray] = []
        bounds: list[tuple[int, int]] = []
        for kind in EXACT_KINDS:
            versions = by_kind.get(kind, [])
            if kind in ("ip", "host"):  # Kube-OVN IP objects and hosts list every address in one field
                field_ = "ips" if kind == "ip" else "addresses"
                own = [list(v.attrs.get(field_) or ()) for v in versions]
            else:  # the common single-address pod or node without a call per version
                own = [
                    [ip]
                    if (ip := v.attrs.get("ip")) and not v.attrs.get("ips") and not v.attrs.get("planes")
                    else _addresses(kind, v.attrs)
                    for v in versions
                ]
            counts = np.fromiter(map(len, own), dtype=np.int64, count=len(own))
            repeat = None if bool((counts == 1).all()) else np.repeat(np.arange(len(own)), counts).tolist()
            bounds.append((len(ips), len(ips) + int(counts.sum())))
            ips += [ip for addrs in own for ip in addrs]
            for column, field in zip(owners, _OWNER_FIELDS[kind], strict=True):
                values = [v.attrs.get(field) or "" for v in versions] if field else [""] * len(versions)
                column += values if repeat is None else [values[i] for i in repeat]
            if kind == "pod" and any(v.attrs.get("planes") for v in versions):
                lo = bounds[-1][0]
                row = lo
                for v, addrs in zip(versions, own, strict=True):
                    planes = v.attrs.get("planes") or {}
                    for a in addrs:
                        owners[-1][row] = planes.get(a, "")
                        row += 1
            for out, attr in ((starts, "valid_from"), (ends, "valid_to")):
                times = np.array([getattr(v, attr) for v in versions], dtype=np.int64)
                out.append(times if repeat is None else times[repeat])
        for name, column in zip(_OWNER, owners, strict=True):
            strings.add(f"ep_{name}", column)
        return {
            "raw": np.frombuffer(b"".join(addrs16(ips)), dtype="V16"),
            "start": np.concatenate(starts),
            "end": np.concatenate(ends),
            "bounds": bounds,
        }

    # ---- building (vectorized) -------------------------------------------------------------------
    def _networks(self, nets: dict[str, Any], codes: dict[str, np.ndarray]) -> None:
        self.net_subnet = _col(codes["net_name"])
        self.net_vpc = _col(codes["net_vpc"])
        self.net_tenant = _col(codes["net_tenant"])
        self.net_zone = _col(codes["net_zone"])
        self.net_center = _col(codes["net_center"])
        self.net_plane = _col(codes["net_plane"])
        self.net_cluster = _col(codes["net_cluster"])
        self.net_external = _col(nets["external"], "bool")
        self.net_start: np.ndarray = nets["start"]
        self.net_end: np.ndarray = nets["end"]
        cluster = self.net_cluster[:-1]
        #: Per cluster pool code (0: networks of no cluster): the longest-prefix index of its networks
        #: and the network rows it returns.
        self.prefixes: dict[int, tuple[PrefixIndex, np.ndarray]] = {}
        for c in np.unique(np.append(cluster, 0)).tolist():
            rows = np.flatnonzero(cluster == c)
            index = PrefixIndex([nets["cidrs"][r] for r in rows], self.net_start[rows], self.net_end[rows])
            self.prefixes[c] = (index, rows)
        self.prefix = self.prefixes[0][0]  # networks of no cluster (all of them in a one-cluster setup)

    def _endpoints(self, eps: dict[str, Any], codes: dict[str, np.ndarray]) -> None:
        """One table of address owners; an exact index per source kind over its slice."""
        raw: np.ndarray = eps["raw"]
        self.ep_start: np.ndarray = eps["start"]
        self.ep_end: np.ndarray = eps["end"]
        self.ep_pod, self.ep_ns, self.ep_workload, self.ep_node = (_col(codes[f"ep_{n}"]) for n in _OWNER[:4])
        self.ep_host, self.ep_cluster, self.ep_tenant, self.ep_zone, self.ep_center, self.ep_plane = (
            _col(codes[f"ep_{n}"]) for n in _OWNER[4:]
        )
        cluster = self.ep_cluster[:-1]
        #: Per cluster pool code (0: no cluster), per exact kind in priority order: the address set,
        #: the interval index and the endpoint row of each of its entries.
        self.exact_by: dict[int, list[tuple[AddressSet, IntervalIndex, np.ndarray]]] = {}
        self.clusters = [int(c) for c in np.unique(np.concatenate([cluster, self.net_cluster[:-1], [0]]))]
        for c in self.clusters:
            entries = []
            for lo, hi in eps["bounds"]:
                rows = lo + np.flatnonzero(cluster[lo:hi] == c)
                aset = AddressSet(raw[rows])
                idx = IntervalIndex(aset.ids_of_input, self.ep_start[rows], self.ep_end[rows], len(aset))
                entries.append((aset, idx, rows if len(rows) != hi - lo else np.asarray(lo, dtype=np.int64)))
            self.exact_by[c] = entries
        self.exact = self.exact_by[0]
        nets = np.full(len(raw), -1, dtype=np.int64)
        for c in self.clusters:  # an address owner's network: its own cluster's, else one of no cluster
            rows = np.flatnonzero(cluster == c)
            if len(rows):
                nets[rows] = self.lookup_networks(c, Addresses(raw[rows]), clip_times(self.ep_start[rows]))
        self.ep_net = np.append(nets, -1)  # the sentinel row has no network

    def order(self, cluster: int) -> list[tuple[AddressSet, IntervalIndex, np.ndarray]]:
        """Exact indexes to try for an address seen in ``cluster`` (a pool code; -1: not known):
        that cluster's first, then those of no cluster, then the other clusters' (a cross-cluster
        peer whose address no closer cluster holds)."""
        return [e for c in self._cluster_order(cluster) for e in self.exact_by.get(c, [])]

    def _cluster_order(self, cluster: int) -> list[int]:
        if cluster <= 0:
            return self.clusters
        return [cluster, 0] + [c for c in self.clusters if c not in (0, cluster)]

    def lookup_networks(self, cluster: int, addrs: Addresses, tt: np.ndarray) -> np.ndarray:
        """Network row holding each address (longest prefix) in ``cluster``'s networks, else in
        those of no cluster, else in another cluster's (see :meth:`order`); -1 when none."""
        order = self._cluster_order(cluster)
        out = np.full(addrs.n, -1, dtype=np.int64)
        todo, sub = np.arange(addrs.n), addrs
        for c in order:
            if c not in self.prefixes or not len(todo):
                continue
            index, rows = self.prefixes[c]
            hit = index.lookup_clipped(sub, tt[todo])
            found = np.flatnonzero(hit >= 0)
            out[todo[found]] = rows[hit[found]]
            rest = np.flatnonzero(hit < 0)
            todo, sub = todo[rest], sub.take(rest)
        return out

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
        codes = self.attributes(ep, net, clip_times(t0))
        static = np.ones(len(ep), dtype=bool)
        for idx, key in ((self.ns_idx, codes["namespace"]), (self.node_idx, codes["node"])):
            static &= idx.covers(key, t0, t1)
        static &= self.center_idx.covers(codes["center"], t0, t1)
        self.profile = {a: codes[a] for a in ATTRS}
        self.inside: np.ndarray = codes["inside"]
        self.static = static
        self.all_static = bool(static.all())
        self.n_ep = n_ep

    def _dictionaries(self) -> None:
        """Per attribute: its dictionary (pool codes it can take, '' first), the map from pool
        codes to positions in it, and every profile row's position."""
        feeds = {
            "pod": (self.ep_pod,),
            "namespace": (self.ep_ns,),
            "workload": (self.ep_workload,),
            "node": (self.ep_node,),
            "tenant": (self.ns_tenant, self.ep_tenant, self.net_tenant),
            "subnet": (self.net_subnet,),
            "vpc": (self.net_vpc,),
            "zone": (self.ns_zone, self.ep_zone, self.net_zone),
            "center": (self.node_center, self.ep_center, self.net_center),
            "site": (self.center_site,),
            "plane": (self.net_plane, self.ep_plane),
            "cluster": (self.ep_cluster, self.net_cluster),
            "host": (self.ep_host,),
        }
        self.local: dict[str, np.ndarray] = {}
        self.dicts: dict[str, pa.Array] = {}
        self.prof_codes: dict[str, np.ndarray] = {}
        for attr, sources in feeds.items():
            used = np.unique(np.concatenate([np.zeros(1, np.int64), *sources]))  # 0 ('') sorts first
            local = np.full(len(self.strings), -1, dtype=np.int32)
            local[used] = np.arange(len(used), dtype=np.int32)
            self.local[attr] = local
            values = self.strings.take(pa.array(used))
            if attr in _QUALIFIED_ATTRS and len(self.clusters) > 1:  # 'c1::payments' is shown 'payments'
                values = pc.replace_substring_regex(values, pattern="^[^:]*::", replacement="")
            self.dicts[attr] = values
            self.prof_codes[attr] = local[self.profile[attr]]
        #: Attributes no metadata sets: every flow gets '' (the enricher skips their gathers).
        self.unset = frozenset(a for a in ("plane", "cluster", "host") if len(self.dicts[a]) == 1)

    def values(self, attr: str) -> list[str]:
        """The values of ``attr``'s dictionary as Python strings (cached per index build)."""
        cache = self.__dict__.setdefault("_values", {})
        out = cache.get(attr)
        if out is None:
            out = cache[attr] = self.dicts[attr].to_pylist()
        return out

    def exporter(self, addrs: Addresses, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Node and center pool codes of exporter addresses (node addresses only)."""
        node, center, _ = self.exporter_cluster(addrs, times)
        return node, center

    def exporter_cluster(
        self, addrs: Addresses, times: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Node, center and cluster pool codes of exporter addresses (node addresses of any cluster)."""
        tt = clip_times(times)
        row = np.full(addrs.n, -1, dtype=np.int64)
        k = EXACT_KINDS.index("node")
        for c in self.clusters:
            aset, idx, rows = self.exact_by[c][k]
            if not len(aset):
                continue
            hit = idx.lookup_clipped(aset.lookup(addrs), tt)
            take = (hit >= 0) & (row < 0)
            row[take] = endpoint_rows(rows, hit[take])
        node = self.ep_node[row]
        center = self.node_center[self.node_idx.lookup_clipped(self.node_idx.clamp_keys(node), tt)]
        return node, center, self.ep_cluster[row]

    def exporter_versions(
        self, addrs: Addresses, tt: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
        """:meth:`exporter` at times ``tt`` (from :func:`clip_times`), with what decides it: the
        version hit in each lookup (the same hits at two times mean the same versions in between:
        versions of a key are disjoint intervals), and whether that is certain (a known key
        without a version at ``tt`` may have one between two such times)."""
        row = np.full(addrs.n, -1, dtype=np.int64)
        hits: list[np.ndarray] = []
        certain = np.ones(addrs.n, dtype=bool)
        k = EXACT_KINDS.index("node")
        for c in self.clusters:
            aset, idx, rows = self.exact_by[c][k]
            if not len(aset):
                continue
            key = aset.lookup(addrs)
            hit = idx.lookup_clipped(key, tt)
            certain &= (key < 0) | (hit >= 0)
            hits.append(hit)
            take = (hit >= 0) & (row < 0)
            row[take] = endpoint_rows(rows, hit[take])
        node = self.ep_node[row]
        nkey = self.node_idx.clamp_keys(node)
        nhit = self.node_idx.lookup_clipped(nkey, tt)
        certain &= (nkey < 0) | (nhit >= 0)
        hits.append(nhit)
        return node, self.node_center[nhit], hits, certain

    def attributes(self, ep: np.ndarray, net: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
        """Pool codes of every attribute for endpoint rows ``ep`` / network rows ``net`` at
        ``times`` (from :func:`clip_times`), plus ``inside`` (in a known center)."""
        ns_code = self.ep_ns[ep]
        ns = self.ns_idx.lookup_clipped(self.ns_idx.clamp_keys(ns_code), times)
        node = self.ep_node[ep]
        node_center = self.node_center[self.node_idx.lookup_clipped(self.node_idx.clamp_keys(node), times)]
        own_center = self.ep_center[ep]
        center = np.where(
            node_center != 0, node_center, np.where(own_center != 0, own_center, self.net_center[net])
        )
        ns_tenant, ns_zone = self.ns_tenant[ns], self.ns_zone[ns]
        ns_tenant = np.where(ns_tenant != 0, ns_tenant, self.ep_tenant[ep])
        ns_zone = np.where(ns_zone != 0, ns_zone, self.ep_zone[ep])
        net_plane, ep_cluster = self.net_plane[net], self.ep_cluster[ep]
        site = self.center_site[self.center_idx.lookup_clipped(self.center_idx.clamp_keys(center), times)]
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
            "site": site,
            # the subnet's plane (its label, else its provider) first, else the pod's attachment
            "plane": np.where(net_plane != 0, net_plane, self.ep_plane[ep]),
            "cluster": np.where(ep_cluster != 0, ep_cluster, self.net_cluster[net]),
            "host": self.ep_host[ep],
            "inside": (center != 0) & ((ep >= 0) | ~self.net_external[net]),
        }


def endpoint_rows(at: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """Endpoint rows of an exact index's entries ``hit`` (>= 0): ``at`` is a row array, or the
    first row of a contiguous slice (the one-cluster case: an addition, no gather)."""
    return hit + at if at.ndim == 0 else at[hit]


#: Fields naming another object of the same cluster, qualified with the cluster inside the index.
_QUALIFY = {
    "pod": ("namespace", "node"),
    "ip": ("namespace", "node"),
    "node": ("name",),
    "service": ("namespace",),
}
_QUALIFIED_ATTRS = ("namespace", "node")


def _qualified(versions: Iterable[Version]) -> Iterable[Version]:
    """Versions of objects in a cluster with their references to namespaces and nodes qualified by
    the cluster (``c1::payments``), as their keys are: two clusters' namespaces and nodes of one name
    stay two."""
    for v in versions:
        cluster = v.attrs.get("cluster")
        fields = _QUALIFY.get(v.kind)
        if not cluster or not fields:
            yield v
            continue
        attrs = dict(v.attrs)
        for f in fields:
            if attrs.get(f):
                attrs[f] = f"{cluster}::{attrs[f]}"
        yield replace(v, attrs=attrs)


def _gather_keyed(
    versions: list[Version], strings: _Strings, prefix: str, fields: tuple[str, ...]
) -> list[Version]:
    strings.add(f"{prefix}_key", [v.key for v in versions])
    for f in fields:
        strings.add(f"{prefix}_{f}", [v.attrs.get(f) or "" for v in versions])
    return versions


def _keyed(
    versions: list[Version], codes: dict[str, np.ndarray], prefix: str, fields: tuple[str, ...]
) -> tuple[IntervalIndex, tuple[np.ndarray, ...]]:
    """Versions keyed by the pool code of their name, with ``fields`` as code columns."""
    keys = codes[f"{prefix}_key"]
    idx = IntervalIndex(
        keys,
        np.array([v.valid_from for v in versions], dtype=np.int64),
        np.array([v.valid_to for v in versions], dtype=np.int64),
        nkeys=int(keys.max(initial=0)) + 1,
    )
    return idx, tuple(_col(codes[f"{prefix}_{f}"]) for f in fields)


def _addresses(kind: str, attrs: dict[str, Any]) -> list[str]:
    ips = attrs.get("ips")
    if kind == "ip":
        return list(ips or ())
    ip = attrs.get("ip") if kind in ("pod", "node") else None
    more = list(attrs.get("planes") or ()) if kind == "pod" else []
    if not ips and not more:
        return [ip] if ip else []
    return list(dict.fromkeys(([ip] if ip else []) + list(ips or ()) + more))
