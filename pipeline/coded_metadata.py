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
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.lookups import Addresses, AddressSet, IntervalIndex, PrefixIndex, addrs16, clip_times
from pipeline.metadata.versions import Version

#: Exact-address sources in priority order: Pod objects, Kube-OVN IP allocations, node addresses.
EXACT_KINDS = ("pod", "ip", "node")
PATHS = ("intra_node", "intra_center", "cross_center", "cross_site", "external", "unknown")
ATTRS = ("pod", "namespace", "workload", "node", "tenant", "subnet", "vpc", "zone", "center", "site")
_OWNER = ("pod", "namespace", "workload", "node")
#: Per exact kind, the attribute naming each of ``_OWNER`` ('' where the kind does not say).
_OWNER_FIELDS = {
    "pod": ("name", "namespace", "workload", "node"),
    "ip": ("pod", "namespace", "", "node"),
    "node": ("", "", "", "name"),
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
        for v in versions:
            by_kind.setdefault(v.kind, []).append(v)
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

    # ---- gathering (Python over versions, once per index build) ---------------------------------
    @staticmethod
    def _gather_networks(versions: list[Version], strings: _Strings) -> dict[str, Any]:
        rows = [(v, c) for v in versions for c in v.attrs.get("cidr", ())]
        attrs = [v.attrs for v, _ in rows]
        for f in ("name", "vpc", "tenant", "zone", "center"):
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
            if kind == "ip":  # Kube-OVN IP objects list their addresses under ``ips`` only
                own = [list(v.attrs.get("ips") or ()) for v in versions]
            else:  # the common single-address pod or node without a call per version
                own = [
                    [ip]
                    if (ip := v.attrs.get("ip")) and not v.attrs.get("ips")
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
        self.net_external = _col(nets["external"], "bool")
        self.net_start: np.ndarray = nets["start"]
        self.net_end: np.ndarray = nets["end"]
        self.prefix = PrefixIndex(nets["cidrs"], self.net_start, self.net_end)

    def _endpoints(self, eps: dict[str, Any], codes: dict[str, np.ndarray]) -> None:
        """One table of address owners; an exact index per source kind over its slice."""
        raw: np.ndarray = eps["raw"]
        self.ep_start: np.ndarray = eps["start"]
        self.ep_end: np.ndarray = eps["end"]
        self.exact: list[tuple[AddressSet, IntervalIndex, int]] = []
        for lo, hi in eps["bounds"]:
            aset = AddressSet(raw[lo:hi])
            idx = IntervalIndex(aset.ids_of_input, self.ep_start[lo:hi], self.ep_end[lo:hi], len(aset))
            self.exact.append((aset, idx, lo))
        self.ep_pod, self.ep_ns, self.ep_workload, self.ep_node = (_col(codes[f"ep_{n}"]) for n in _OWNER)
        nets = self.prefix.lookup(Addresses(raw), self.ep_start) if len(raw) else np.zeros(0, np.int64)
        self.ep_net = np.append(nets, -1)  # the sentinel row has no network

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
            "tenant": (self.ns_tenant, self.net_tenant),
            "subnet": (self.net_subnet,),
            "vpc": (self.net_vpc,),
            "zone": (self.ns_zone, self.net_zone),
            "center": (self.node_center, self.net_center),
            "site": (self.center_site,),
        }
        self.local: dict[str, np.ndarray] = {}
        self.dicts: dict[str, pa.Array] = {}
        self.prof_codes: dict[str, np.ndarray] = {}
        for attr, sources in feeds.items():
            used = np.unique(np.concatenate([np.zeros(1, np.int64), *sources]))  # 0 ('') sorts first
            local = np.full(len(self.strings), -1, dtype=np.int32)
            local[used] = np.arange(len(used), dtype=np.int32)
            self.local[attr] = local
            self.dicts[attr] = self.strings.take(pa.array(used))
            self.prof_codes[attr] = local[self.profile[attr]]

    def exporter(self, addrs: Addresses, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Node and center pool codes of exporter addresses (node addresses only)."""
        aset, idx, offset = self.exact[EXACT_KINDS.index("node")]
        tt = clip_times(times)
        hit = idx.lookup_clipped(aset.lookup(addrs), tt) if len(aset) else np.full(addrs.n, -1)
        node = self.ep_node[np.where(hit >= 0, hit + offset, -1)]
        return node, self.node_center[self.node_idx.lookup_clipped(self.node_idx.clamp_keys(node), tt)]

    def attributes(self, ep: np.ndarray, net: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
        """Pool codes of every attribute for endpoint rows ``ep`` / network rows ``net`` at
        ``times`` (from :func:`clip_times`), plus ``inside`` (in a known center)."""
        ns_code = self.ep_ns[ep]
        ns = self.ns_idx.lookup_clipped(self.ns_idx.clamp_keys(ns_code), times)
        node = self.ep_node[ep]
        node_center = self.node_center[self.node_idx.lookup_clipped(self.node_idx.clamp_keys(node), times)]
        center = np.where(node_center != 0, node_center, self.net_center[net])
        ns_tenant, ns_zone = self.ns_tenant[ns], self.ns_zone[ns]
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
            "inside": (center != 0) & ((ep >= 0) | ~self.net_external[net]),
        }


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
    if not ips:
        return [ip] if ip else []
    return list(dict.fromkeys(([ip] if ip else []) + list(ips)))
