"""The counting model evaluated over flow batches: ``observer``, ``counted``, ``count_reason``, roles, event time.

The rule itself is documented once, in :mod:`netobs.counting`; this module evaluates it over
Arrow batches with numpy, per record and without state across records, except for what it
learns about exporters (:class:`Observations`: which exporters report both directions,
which nodes and centers have exporters), which only grows and is persisted in the store's
``observation_points`` table so that restarts and other pipeline replicas agree.
"""

from __future__ import annotations

import importlib
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from netobs import counting
from netobs.counting import CountingConfig
from netobs.tables import Column, Table

log = logging.getLogger(__name__)

_K1, _K2, _K3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9)
#: Flow keys kept (per direction, all exporters still being classified) to pair ingress with egress
#: records across batches.
_RECENT = 200_000
#: Rows of a batch examined for ingress/egress pairs at most (beyond, a share chosen by ports).
_DETECT_ROWS = 65_536
_SYN, _ACK = 0x02, 0x10
#: Ports below this are well known (IANA system ports); ephemeral ranges: Linux and IANA.
_WELL_KNOWN = 1024
_EPHEMERAL_LO = 32768
#: Registered service ports a bank runs (databases, brokers, caches, web, directory, mail).
REGISTERED_PORTS = np.array(
    sorted(
        {1433, 1521, 2049, 2181, 2379, 2380, 3000, 3306, 3389, 4222, 5000, 5044, 5432, 5601, 5671, 5672,
         6379, 6443, 7000, 7001, 8000, 8008, 8080, 8081, 8443, 8888, 9000, 9042, 9090, 9092, 9093, 9200,
         9300, 9443, 10250, 11211, 15672, 27017}
    ),
    dtype=np.int64,
)  # fmt: skip


_REGISTERED = np.zeros(65536, dtype=bool)
_REGISTERED[REGISTERED_PORTS] = True
_ECHO_REQUEST = np.zeros(256, dtype=bool)
_ECHO_REQUEST[[8, 128, 13, 15, 17]] = True  # echo, ICMPv6 echo, timestamp, information, mask requests
_ECHO_REPLY = np.zeros(256, dtype=bool)
_ECHO_REPLY[[0, 129, 14, 16, 18]] = True


REASON_NAMES: tuple[str, ...] = tuple(counting.REASONS)
OBSERVER_NAMES: tuple[str, ...] = ("", *counting.OBSERVERS)
METHOD_NAMES: tuple[str, ...] = ("", *counting.ROLE_METHODS)
INITIATOR_NAMES: tuple[str, ...] = ("", "src", "dst")

# Port ranks for roles: 0 none (port 0), 1 ephemeral, 2 other, 3 registered service port, 4 well known.
_RANK = np.full(65536, 2, dtype=np.uint8)
_RANK[_EPHEMERAL_LO:] = 1
_RANK[_REGISTERED] = 3
_RANK[1:_WELL_KNOWN] = 4
_RANK[0] = 0


def _method_code(name: str) -> int:
    return METHOD_NAMES.index(name) * 3


_LOWER, _SERVICE, _SYNACK, _SYNONLY, _ICMP, _BIFLOW = (
    _method_code(m) for m in ("lower_port", "service_port", "tcp_synack", "tcp_syn", "icmp", "biflow")
)
_BY_RANK = {4: "well_known", 3: "registered_port", 2: "ephemeral"}
#: (source rank, destination rank) → method * 3 + initiator (1: the source opened it, 2: the destination).
_PAIR = np.zeros((5, 5), dtype=np.int16)
for _s in range(1, 5):
    for _d in range(1, 5):
        if _s != _d:
            _PAIR[_s, _d] = _method_code(_BY_RANK[max(_s, _d)]) + (1 if _d > _s else 2)
_WHO = np.array([i % 3 for i in range(len(METHOD_NAMES) * 3)], dtype=np.int8)
_HOW = np.array([i // 3 for i in range(len(METHOD_NAMES) * 3)], dtype=np.int8)


def addr_words(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The two 64-bit halves of a 16-byte address column."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    buf = np.frombuffer(col.buffers()[1], dtype=np.uint8)[col.offset * 16 : (col.offset + len(col)) * 16]
    words = buf.view("<u8").reshape(-1, 2)
    return words[:, 0], words[:, 1]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every input bit reaches every output bit (no XOR-linear collisions)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        mixed: np.ndarray = x ^ (x >> np.uint64(31))
        return mixed


def endpoint_keys(hi: np.ndarray, lo: np.ndarray, port: np.ndarray) -> np.ndarray:
    """A 64-bit hash of (address, port), for set lookups."""
    with np.errstate(over="ignore"):
        return _mix(_mix(hi ^ _K1) ^ lo ^ (np.asarray(port, dtype=np.uint64) * _K3))


def flow_keys(table: pa.Table) -> np.ndarray:
    """A 64-bit hash of each record's (src, dst, src port, dst port, proto)."""
    sh, sl = addr_words(table.column("src_addr"))
    dh, dl = addr_words(table.column("dst_addr"))
    sp = _np(table, "src_port", np.uint64)
    dp = _np(table, "dst_port", np.uint64)
    pr = _np(table, "proto", np.uint64)
    with np.errstate(over="ignore"):
        return _mix(endpoint_keys(sh, sl, sp) ^ _mix(endpoint_keys(dh, dl, dp) ^ pr))


def _np(table: pa.Table, name: str, dtype: Any) -> np.ndarray:
    col = table.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=dtype)


def _strings(table: pa.Table, name: str) -> tuple[np.ndarray, list[str]]:
    """Codes and values of a string (or dictionary) column."""
    col = table.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    return np.asarray(col.indices.to_numpy(zero_copy_only=False), dtype=np.int64), col.dictionary.to_pylist()


# ---- listening ports from metadata ------------------------------------------------------------
class Listening:
    """(address, port) pairs where something listens: container ports, Service ports, Service
    target ports on the pods a Service selects. Built from metadata versions (current view)."""

    def __init__(self, versions: Iterable[Any] = ()):
        pods: dict[str, dict[str, Any]] = {}
        services: list[dict[str, Any]] = []
        for v in versions:
            if v.kind == "pod" and v.valid_to >= _now_ms():
                pods[v.key] = v.attrs
            elif v.kind == "service" and v.valid_to >= _now_ms():
                services.append(v.attrs)
        pairs: list[tuple[str, int]] = []
        for attrs in pods.values():
            for ip in _addresses(attrs):
                pairs += [(ip, int(p)) for p in attrs.get("ports") or ()]
        for svc in services:
            for ip in svc.get("cluster_ips") or ():
                pairs += [(ip, int(p)) for p in svc.get("ports") or ()]
            selector = svc.get("selector") or {}
            targets = svc.get("target_ports") or svc.get("ports") or ()
            if not selector:
                continue
            for attrs in pods.values():
                if attrs.get("namespace") == svc.get("namespace") and _selects(selector, attrs.get("labels")):
                    for ip in _addresses(attrs):
                        pairs += [(ip, int(p)) for p in targets]
        self.size = len(pairs)
        if pairs:
            raw = np.frombuffer(b"".join(_addr16(a) for a, _ in pairs), dtype="<u8").reshape(-1, 2)
            ports = np.array([p for _, p in pairs], dtype=np.uint64)
            self.keys = np.unique(endpoint_keys(raw[:, 0], raw[:, 1], ports))
        else:
            self.keys = np.zeros(0, dtype=np.uint64)

    def contains(self, hi: np.ndarray, lo: np.ndarray, ports: np.ndarray) -> np.ndarray:
        if not len(self.keys):
            return np.zeros(len(hi), dtype=bool)
        k = endpoint_keys(hi, lo, ports)
        pos = np.minimum(np.searchsorted(self.keys, k), len(self.keys) - 1)
        found: np.ndarray = self.keys[pos] == k
        return found


def _now_ms() -> int:
    return int(time.time() * 1000)


def _addresses(attrs: dict[str, Any]) -> list[str]:
    return [a for a in ([attrs.get("ip")] + list(attrs.get("ips") or ())) if a]


def _selects(selector: dict[str, str], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _addr16(text: str) -> bytes:
    ip = ipaddress.ip_address(text)
    return ip.packed if ip.version == 6 else b"\0" * 10 + b"\xff\xff" + ip.packed


# ---- what the pipeline learns about exporters ---------------------------------------------------
@dataclass
class Exporter:
    """One (exporter address, export protocol, observation domain) as an observation point: a node may
    run several exporting processes (bridge IPFIX and a probe, each in its own domain)."""

    address: str
    type: str
    node: str = ""
    center: str = ""
    #: 'dual' (reports ingress and egress of the same packets), 'single', or '' (not known yet).
    directions: str = ""
    perflow: bool = False  # sends observationPointId (OVS per-flow IPFIX)
    examined: int = 0
    count: str = "auto"
    observer_override: str = ""
    uid: int = 0  # stable while the process runs
    domain: int = 0

    def observer(self, biflow: bool = False) -> str:
        if self.observer_override and self.observer_override != "auto":
            return self.observer_override
        on_node = bool(self.node)
        if biflow:
            return "node_biflow" if on_node else "device_biflow"
        if self.type == "sflow":
            return "ovs_sflow" if on_node else "device_sflow"
        if not on_node:
            return "device_flow"
        if self.type == "netflow5":
            return "node_netflow5"
        if self.directions == "dual":
            return "ovs_bridge_ipfix"
        return "ovs_perflow_ipfix" if self.perflow else "node_ipfix"


class Observations:
    """Exporters as observation points: their kind, direction convention and coverage.

    Thread-safe; grows only. ``on_change`` (if set) is called with the exporters whose
    classification changed, for persistence.
    """

    def __init__(self, config: CountingConfig | None = None):
        self.config = config or CountingConfig()
        self._rules = [(tuple(ipaddress.ip_network(m) for m in e.match), e) for e in self.config.exporters]
        self.exporters: dict[tuple[str, str, int], Exporter] = {}
        self.covered_nodes: set[str] = set()
        self.device_centers: set[str] = set()
        self._lock = threading.Lock()
        self.on_change: Any = None
        #: Called before each batch (set by ObservationTable: reload what other replicas learned).
        self.refresh: Any = None
        #: Recent (exporter, flow key) hashes at ingress and at egress of exporters not yet classified.
        self.recent: dict[str, np.ndarray] = {"in": np.zeros(0, np.uint64), "out": np.zeros(0, np.uint64)}

    def exporter(self, address: str, type_: str, node: str, center: str, domain: int = 0) -> Exporter:
        key = (address, type_, domain)
        e = self.exporters.get(key)
        if e is None:
            e = Exporter(address, type_, node, center, uid=len(self.exporters), domain=domain)
            rule = self._rule(address)
            if rule is not None:
                e.count, e.observer_override = rule.count, rule.observer
                if rule.directions != "auto":
                    e.directions = rule.directions
                if rule.center and not node:
                    e.center = rule.center
            self.exporters[key] = e
            self._cover(e)
        elif node and not e.node:
            e.node, e.center = node, center
            self._cover(e)
        return e

    def _cover(self, e: Exporter) -> None:
        if e.count == "never":
            return
        if e.node:
            self.covered_nodes.add(e.node)
        elif e.center:
            self.device_centers.add(e.center)

    def _rule(self, address: str) -> Any:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        for nets, rule in self._rules:
            for n in nets:
                cand = ip
                if n.version == 4 and isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                    cand = ip.ipv4_mapped
                if cand.version == n.version and cand in n:
                    return rule
        return None

    def restore(self, rows: Iterable[dict[str, Any]]) -> None:
        """Exporters learned earlier (``observation_points`` rows)."""
        with self._lock:
            for r in rows:
                e = self.exporter(
                    r["exporter"], r["type"], r.get("node", ""), r.get("center", ""), int(r.get("domain", 0))
                )
                if r.get("directions") and not e.directions:
                    e.directions = r["directions"]
                e.perflow = e.perflow or bool(r.get("perflow"))

    def secondary(self, exporters: list[Exporter]) -> np.ndarray:
        """For each exporter, whether another exporter of its node counts the node's packets instead.

        A node exporting twice (sFlow and IPFIX, or bridge IPFIX and a probe) would count its packets
        twice; one of them counts, by :data:`PREFERRED` kind (a ``count: always`` exporter is never
        secondary)."""
        best: dict[str, tuple[int, int]] = {}
        with self._lock:
            for e in self.exporters.values():
                if e.node and e.count == "auto":
                    rank = (_PREFERENCE.get(e.observer(), len(PREFERRED)), e.uid)
                    if e.node not in best or rank < best[e.node]:
                        best[e.node] = rank
        return np.array(
            [
                bool(e.node) and e.count == "auto" and best.get(e.node, (0, e.uid))[1] != e.uid
                for e in exporters
            ]
            + [False]
        )


#: Which exporter of a node counts its packets when it has several: complete flow records first, then
#: sampled packets (configure ``count`` to choose otherwise).
PREFERRED = (
    "ovs_bridge_ipfix",
    "node_biflow",
    "node_ipfix",
    "ovs_perflow_ipfix",
    "node_netflow5",
    "ovs_sflow",
)
_PREFERENCE = {name: i for i, name in enumerate(PREFERRED)}


def _row(e: Exporter) -> dict[str, Any]:
    return {
        "exporter": e.address,
        "type": e.type,
        "domain": e.domain,
        "node": e.node,
        "center": e.center,
        "observer": e.observer(),
        "directions": e.directions,
        "perflow": int(e.perflow),
        "count": e.count,
    }


# ---- the decision -------------------------------------------------------------------------------
_native: Any
try:  # the one-pass native kernel (netobs/_native/counting.c); numpy below is the reference
    _native = importlib.import_module("netobs._native_counting")
except ImportError:  # pragma: no cover - an install without the C extension
    _native = None


def native_enabled() -> bool:
    """The native pass is used unless ``NETOBS_NATIVE=0`` (as for the decoders)."""
    return os.environ.get("NETOBS_NATIVE", "1") != "0"


_R = {name: i for i, name in enumerate(REASON_NAMES)}
_COUNTING = np.array([name in counting.COUNTING_REASONS for name in REASON_NAMES], dtype=np.uint8)
_CONFIDENCE = np.array([0] + list(counting.ROLE_METHODS.values()), dtype=np.uint8)


class Counter:
    """Fills the counting model's columns of an enriched flow batch."""

    def __init__(self, observations: Observations | None = None):
        self.observations = observations or Observations()
        #: Records of the last batch per reason (index into REASON_NAMES).
        self.reason_counts = np.zeros(len(REASON_NAMES), dtype=np.int64)

    def apply(
        self,
        table: pa.Table,
        listening: Listening | None = None,
        dictionary: bool = True,
        coded: dict[str, tuple[list[str], dict[str, np.ndarray]]] | None = None,
        exporter_codes: tuple[np.ndarray, int] | None = None,
    ) -> pa.Table:
        """``table`` with the counting columns. ``coded`` (from the enrichment, which has them
        already): per space ``"node"``/``"center"``, its values (``''`` first, each once) and the
        integer codes of the columns ``src_<space>``, ``dst_<space>``, ``exporter_<space>`` in
        them; without it they are coded here from the table's string columns.
        ``exporter_codes``: each row's exporter address numbered 0..k-1 (one number per distinct
        address) and k, where the enrichment has them; the exporters are then numbered from those
        small integers instead of hashing every row's address again."""
        n = table.num_rows
        if n == 0:
            return _with_columns(table, {}, n, dictionary)
        obs = self.observations
        if obs.refresh is not None:
            obs.refresh()
        direction = _direction_codes(table)
        exp_codes, exporters = self._exporters(table, exporter_codes)
        changed = self._learn(table, exp_codes, exporters, direction)
        nodes = _Codes.given(coded, "node") or _Codes(table, ("src_node", "dst_node", "exporter_node"))
        centers = _Codes.given(coded, "center") or _Codes(
            table, ("src_center", "dst_center", "exporter_center")
        )
        per_exporter = {
            "node": nodes.codes_of([e.node for e in exporters]),
            "center": centers.codes_of([e.center for e in exporters]),
            "dual": np.array([e.directions == "dual" for e in exporters] + [False]),
            "force": np.array([{"always": 1, "never": 2}.get(e.count, 0) for e in exporters] + [0], np.uint8),
            "secondary": obs.secondary(exporters),
        }
        # after the exporters' codes: every code has its entry
        if obs.config.covered_nodes == "learned":
            covered = nodes.mask(obs.covered_nodes)
        else:
            covered = np.arange(len(nodes.values)) != 0
        devices = centers.mask(obs.device_centers)
        kernel = _native if _native is not None and native_enabled() else None
        if kernel is not None:
            cols = _apply_native(kernel, table, exp_codes, exporters, per_exporter, direction, nodes, centers,
                                 covered, devices, listening)  # fmt: skip
            self.reason_counts = cols.pop("reason_counts")
        else:
            cols = self._apply_numpy(table, exp_codes, exporters, per_exporter, direction, nodes, centers,
                                     covered, devices, listening)  # fmt: skip
        if changed and obs.on_change is not None:
            obs.on_change([_row(e) for e in changed])
        return _with_columns(table, cols, n, dictionary)

    def _apply_numpy(
        self, table: pa.Table, exp_codes: np.ndarray, exporters: list[Exporter], per_exporter: dict[str, Any],
        direction: np.ndarray, nodes: _Codes, centers: _Codes, covered: np.ndarray, devices: np.ndarray,
        listening: Listening | None,
    ) -> dict[str, Any]:  # fmt: skip
        """The counting columns with numpy, step by step: the reference the native pass is tested against."""
        n = table.num_rows
        src_node, dst_node = nodes["src_node"], nodes["dst_node"]
        src_center, dst_center = centers["src_center"], centers["dst_center"]
        reason = decide(
            per_exporter["node"][exp_codes], per_exporter["center"][exp_codes], per_exporter["dual"][exp_codes],
            direction, src_node, dst_node, covered[src_node], covered[dst_node], src_center, dst_center,
            devices[src_center], devices[dst_center], per_exporter["force"][exp_codes],
            per_exporter["secondary"][exp_codes],
        )  # fmt: skip
        self.reason_counts = np.bincount(reason, minlength=len(REASON_NAMES))
        biflow = _np(table, "biflow", np.uint8) if "biflow" in table.schema.names else np.zeros(n, np.uint8)
        initiator, method = roles(table, listening)
        event_start, event_end = event_times(table)
        return {
            "event_start": event_start,
            "event_end": event_end,
            "observer": (_observers(exporters, exp_codes, biflow), OBSERVER_NAMES),
            "counted": _COUNTING[reason],
            "count_reason": (reason, REASON_NAMES),
            "initiator": (initiator, INITIATOR_NAMES),
            "role_method": (method, METHOD_NAMES),
            "role_confidence": _CONFIDENCE[method],
        }

    def _exporters(
        self, table: pa.Table, given: tuple[np.ndarray, int] | None = None
    ) -> tuple[np.ndarray, list[Exporter]]:
        """Per row, the index of its (exporter, type, observation domain) in the returned list, which is
        in order of first appearance in the batch (so every way of numbering agrees); ``given``: see
        :meth:`apply` (``exporter_codes``)."""
        n = table.num_rows
        tcodes, types = _type_codes(table)
        col = table.column("exporter").combine_chunks()
        dom = (
            np.ascontiguousarray(_np(table, "observation_domain", np.uint32))
            if "observation_domain" in table.schema.names
            else None
        )
        kernel = _native if _native is not None and native_enabled() else None
        if (
            kernel is not None and given is not None and len(given[0]) == n
            and (dom is None or not len(dom) or dom.min() == dom.max())
        ):  # fmt: skip
            # the address numbers with the type: a dense key, each (address, type) once (one domain)
            wide = len(types) + 1
            key = given[0].astype(np.int64)
            key *= wide
            key += tcodes
            codes = np.empty(n, dtype=np.int64)
            first = np.array(kernel.dense_keys(key, int(given[1]) * wide, codes), np.int64)
            addrs = [_text(a) for a in col.take(pa.array(first)).to_pylist()]
        elif kernel is not None and col.type == pa.binary(16) and col.null_count == 0:
            raw = np.frombuffer(col.buffers()[1], dtype=np.uint8)[col.offset * 16 : (col.offset + n) * 16]
            codes = np.empty(n, dtype=np.int64)
            first = np.array(
                kernel.exporter_keys(raw, np.ascontiguousarray(tcodes, dtype=np.int64), dom, codes), np.int64
            )
            addrs = [_text(a) for a in col.take(pa.array(first)).to_pylist()]
        else:
            addr = pc.dictionary_encode(col)
            acodes = np.asarray(addr.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            key = (acodes * (len(types) + 1) + tcodes).astype(np.uint64) << np.uint64(32)
            if dom is not None:
                key |= dom.astype(np.uint64)
            codes, uniq = pd.factorize(key)  # hashed, in order of first appearance: no sort of the batch
            codes = codes.astype(np.int64)
            first = np.full(len(uniq), n, dtype=np.int64)
            np.minimum.at(first, codes, np.arange(n))
            addrs = [_text(a) for a in addr.dictionary.take(pa.array(acodes[first])).to_pylist()]
        domains = dom[first].tolist() if dom is not None else [0] * len(first)
        return codes, self._lookup(table, first, addrs, [types[t] for t in tcodes[first].tolist()], domains)

    def _lookup(
        self, table: pa.Table, rows: np.ndarray, addrs: list[str], types: list[str], domains: list[int]
    ) -> list[Exporter]:
        """The exporters at ``rows`` (one row each), with the node and center the enrichment named."""
        names = table.schema.names
        take = pa.array(rows)
        nodes = table.column("exporter_node").take(take).to_pylist() if "exporter_node" in names else None
        centers = (
            table.column("exporter_center").take(take).to_pylist() if "exporter_center" in names else None
        )
        out = []
        with self.observations._lock:
            for k, (address, type_, domain) in enumerate(zip(addrs, types, domains, strict=True)):
                node = (nodes[k] if nodes is not None else "") or ""
                center = (centers[k] if centers is not None else "") or ""
                out.append(self.observations.exporter(address, type_, node, center, int(domain)))
        return out

    def _learn(
        self, table: pa.Table, codes: np.ndarray, exporters: list[Exporter], direction: np.ndarray
    ) -> list[Exporter]:
        """Classify exporters not yet known as dual or single: dual when one exporter reports the same
        flow key at ingress and at egress (in this batch or the recent ones)."""
        limit = self.observations.config.dual_detect_rows
        changed = []
        if "observation_point" in table.schema.names:
            todo = np.array([not e.perflow and e.type in ("ipfix", "netflow9") for e in exporters])
            if todo.any():
                has_point = _np(table, "observation_point", np.uint32) != 0
                hit = np.unique(codes[has_point])
                for i in hit[todo[hit]].tolist():
                    exporters[i].perflow = True
                    changed.append(exporters[i])
        pending = np.array([not e.directions and bool(limit) for e in exporters])
        if not pending.any():
            return changed
        mine = pending[codes]
        examined = np.bincount(codes[mine], minlength=len(exporters))
        rows = np.flatnonzero(mine & (direction < 2))
        if len(rows) > _DETECT_ROWS:
            # A share of the flows chosen by their ports, so both copies of a flow are chosen or neither.
            sp, dp = _np(table, "src_port", np.int64)[rows], _np(table, "dst_port", np.int64)[rows]
            keep = 1 << max(0, (len(rows) // _DETECT_ROWS).bit_length())
            rows = rows[((sp ^ dp) & (keep - 1)) == 0]
        if len(rows):
            # The exporter's stable id (not this batch's code): the memory spans batches.
            uid = np.array([e.uid for e in exporters], dtype=np.uint64)[codes[rows]]
            with np.errstate(over="ignore"):
                keyed = _mix(flow_keys(table.take(rows)) ^ _mix(uid + np.uint64(1)))
            d = direction[rows]
            with self.observations._lock:
                recent = self.observations.recent
                ins = np.concatenate([recent["in"], keyed[d == 0]])[-_RECENT:]
                outs = np.concatenate([recent["out"], keyed[d == 1]])[-_RECENT:]
                recent["in"], recent["out"] = ins, outs
                both = np.intersect1d(ins, outs)
                dual_rows = rows[np.isin(keyed, both)] if len(both) else rows[:0]
        else:
            dual_rows = rows
        dual = set(np.unique(codes[dual_rows]).tolist())
        with self.observations._lock:
            for i in np.flatnonzero(pending).tolist():
                e = exporters[i]
                if e.directions:
                    continue
                e.examined += int(examined[i])
                if i in dual:
                    e.directions = "dual"
                elif e.examined >= limit:
                    e.directions = "single"
                if e.directions:
                    changed.append(e)
                    what = (
                        "ingress and egress of the same flows" if e.directions == "dual" else "each flow once"
                    )
                    log.info("exporter %s (%s): reports %s", e.address, e.type, what)
        return changed


class _Codes:
    """Several string columns coded in one shared space (0 is '')."""

    def __init__(self, table: pa.Table, names: tuple[str, ...]):
        self.values: list[str] = [""]
        self._index: dict[str, int] = {"": 0}
        self.cols: dict[str, np.ndarray] = {}
        for name in names:
            if name not in table.schema.names:
                self.cols[name] = np.zeros(table.num_rows, dtype=np.int64)
                continue
            codes, values = _strings(table, name)
            lut = self.codes_of(values)
            self.cols[name] = lut[codes] if len(codes) else np.zeros(0, dtype=np.int64)

    @classmethod
    def given(
        cls, coded: dict[str, tuple[list[str], dict[str, np.ndarray]]] | None, space: str
    ) -> _Codes | None:
        """The space ``space`` of ``coded`` (see :meth:`Counter.apply`); None when not given or
        not usable (values not unique, or not starting with '')."""
        if not coded or space not in coded:
            return None
        values, cols = coded[space]
        index = {v: i for i, v in enumerate(values)}
        if not values or values[0] != "" or len(index) != len(values):
            return None
        self = cls.__new__(cls)
        self.values, self._index = list(values), index
        self.cols = {f"{end}_{space}": cols[f"{end}_{space}"] for end in ("src", "dst", "exporter")}
        return self

    def codes_of(self, values: list[str]) -> np.ndarray:
        """Codes of ``values``, with a trailing 0 (so that -1 gathers '')."""
        out = []
        for v in values:
            v = v or ""
            code = self._index.get(v)
            if code is None:
                code = self._index[v] = len(self.values)
                self.values.append(v)
            out.append(code)
        return np.array(out + [0], dtype=np.int64)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    def mask(self, members: set[str]) -> np.ndarray:
        """Per code, whether its value is in ``members`` ('' never is)."""
        return np.array([bool(v) and v in members for v in self.values], dtype=bool)


def decide(
    e_node: np.ndarray,
    e_center: np.ndarray,
    dual: np.ndarray,
    direction: np.ndarray,
    src_node: np.ndarray,
    dst_node: np.ndarray,
    src_cov: np.ndarray,
    dst_cov: np.ndarray,
    src_center: np.ndarray,
    dst_center: np.ndarray,
    src_dev: np.ndarray,
    dst_dev: np.ndarray,
    force: np.ndarray,
    secondary: np.ndarray | None = None,
) -> np.ndarray:
    """Index into :data:`REASON_NAMES` of each record; the rule of :mod:`netobs.counting`.

    Node and center arguments are integer codes with 0 for '' (unknown). The facts of a record are
    packed into 14 bits and looked up in a table made once by :func:`rule` (the rule, written once)."""
    on_node = e_node != 0
    state = force.astype(np.uint16)
    for bit, fact in (
        (2, dual & (direction == 1)),
        (3, on_node),
        (4, (e_node == src_node) & (src_node != 0)),
        (5, (e_node == dst_node) & (dst_node != 0)),
        (6, src_cov),
        (7, dst_cov),
        (8, (e_center == src_center) & (src_center != 0)),
        (9, (e_center == dst_center) & (dst_center != 0)),
        (10, src_dev),
        (11, dst_dev),
        (12, e_center == 0),
        (13, secondary if secondary is not None else np.zeros(len(e_node), dtype=bool)),
    ):
        state |= fact.astype(np.uint16) << np.uint16(bit)
    return _DECISIONS[state]


def rule(state: int) -> str:
    """The counting rule for one record's facts (bits as :func:`decide` packs them): first match wins."""
    force = state & 3
    (dual_egress, on_node, at_src, at_dst, src_cov, dst_cov, dev_src, dev_dst, src_dev, dst_dev, no_center,
     secondary) = (bool(state >> b & 1) for b in range(2, 14))  # fmt: skip
    at_src, at_dst = on_node and at_src, on_node and at_dst
    dev_src, dev_dst = not on_node and dev_src, not on_node and dev_dst
    any_cov = src_cov or dst_cov
    rules = (
        (force == 2, "excluded"),
        (force == 1, "forced"),
        (dual_egress, "dual_direction_copy"),
        (secondary, "other_exporter_of_node"),
        (at_src, "source_node"),
        (at_dst and not src_cov, "destination_node"),
        (at_dst, "seen_at_source_node"),
        (on_node and not any_cov, "transit_only"),
        (on_node and src_cov, "seen_at_source_node"),
        (on_node, "seen_at_destination_node"),
        (any_cov, "seen_by_node"),
        (dev_src, "device_source_center"),
        (dev_dst and not src_dev, "device_destination_center"),
        (no_center or (not src_dev and not dst_dev), "device_only"),
    )
    return next((name for cond, name in rules if cond), "seen_by_other_device")


_DECISIONS = np.array([_R[rule(state)] for state in range(1 << 14)], dtype=np.int8)


def roles(table: pa.Table, listening: Listening | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indexes into :data:`INITIATOR_NAMES` and :data:`METHOD_NAMES` of each record.

    Ports first (one rank per port: well known > registered > other > ephemeral; the end with the
    higher rank is the server, the lower port when they tie), then the sparser, surer methods on
    top: listening ports from metadata, a lone SYN or SYN-ACK, ICMP echo, biflowDirection."""
    n = table.num_rows
    names = table.schema.names
    sp = _np(table, "src_port", np.uint16)
    dp = _np(table, "dst_port", np.uint16)
    proto = _np(table, "proto", np.uint8)
    icmp = (proto == 1) | (proto == 58)
    rs, rd = _RANK[sp], _RANK[dp]
    code = _PAIR[rs, rd]  # method * 3 + initiator, from the two ranks
    tie = (rs == rd) & (rs > 0)
    np.putmask(code, tie & (dp < sp), _LOWER + 1)
    np.putmask(code, tie & (sp < dp), _LOWER + 2)
    np.putmask(code, icmp, 0)
    if listening is not None and len(listening.keys):
        sh, sl = addr_words(table.column("src_addr"))
        dh, dl = addr_words(table.column("dst_addr"))
        dst_listen = listening.contains(dh, dl, dp.astype(np.uint64)) & ~icmp
        src_listen = listening.contains(sh, sl, sp.astype(np.uint64)) & ~icmp
        np.putmask(code, src_listen & ~dst_listen, _SERVICE + 2)
        np.putmask(code, dst_listen & ~src_listen, _SERVICE + 1)
    if "tcp_flags" in names:
        flags = _np(table, "tcp_flags", np.uint16)
        tcp = proto == 6
        synack = tcp & ((flags & 0xFF) == (_SYN | _ACK))
        if synack.any():
            np.putmask(code, synack & (_np(table, "packets", np.uint64) <= 1), _SYNACK + 2)
        np.putmask(code, tcp & ((flags & (_SYN | _ACK)) == _SYN), _SYNONLY + 1)
    if icmp.any():
        icmp_type = (dp >> 8).astype(np.uint8)
        np.putmask(code, icmp & _ECHO_REPLY[icmp_type], _ICMP + 2)
        np.putmask(code, icmp & _ECHO_REQUEST[icmp_type], _ICMP + 1)
    if "biflow" in names:
        bif = _np(table, "biflow", np.uint8)
        if bif.any():
            bdir = (
                _np(table, "biflow_direction", np.uint8)
                if "biflow_direction" in names
                else np.zeros(n, np.uint8)
            )
            # the forward half (1) keeps the record's orientation, the reverse half (2) is swapped
            np.putmask(code, ((bif == 1) & (bdir == 2)) | ((bif == 2) & (bdir == 1)), _BIFLOW + 2)
            np.putmask(code, ((bif == 1) & (bdir == 1)) | ((bif == 2) & (bdir == 2)), _BIFLOW + 1)
    return _WHO[code], _HOW[code]


def _optional(table: pa.Table, name: str, dtype: Any) -> np.ndarray | None:
    return np.ascontiguousarray(_np(table, name, dtype)) if name in table.schema.names else None


def _apply_native(
    kernel: Any, table: pa.Table, exp_codes: np.ndarray, exporters: list[Exporter], per_exporter: dict[str, Any],
    direction: np.ndarray, nodes: _Codes, centers: _Codes, covered: np.ndarray, devices: np.ndarray,
    listening: Listening | None,
) -> dict[str, Any]:  # fmt: skip
    """The counting columns in one native pass (what :meth:`Counter._apply_numpy` computes)."""
    n = table.num_rows
    c64 = np.ascontiguousarray
    src_listen = dst_listen = None
    if listening is not None and len(listening.keys):
        sh, sl = addr_words(table.column("src_addr"))
        dh, dl = addr_words(table.column("dst_addr"))
        sp64, dp64 = _np(table, "src_port", np.uint64), _np(table, "dst_port", np.uint64)
        src_listen = listening.contains(sh, sl, sp64).astype(np.uint8)
        dst_listen = listening.contains(dh, dl, dp64).astype(np.uint8)
    flags = _optional(table, "tcp_flags", np.uint16)
    packets = _optional(table, "packets", np.uint64) if flags is not None else None
    biflow = _optional(table, "biflow", np.uint8)
    bdir = _optional(table, "biflow_direction", np.uint8) if biflow is not None else None
    out = {
        "reason": np.empty(n, np.int32),  # int32: the dictionary indices Arrow takes, no widening copy
        "counted": np.empty(n, np.uint8),
        "initiator": np.empty(n, np.int32),
        "method": np.empty(n, np.int32),
        "observer": np.empty(n, np.int32),
        "event_start": np.empty(n, np.int64),
        "event_end": np.empty(n, np.int64),
        "reason_counts": np.zeros(len(REASON_NAMES), np.int64),
    }
    observer = [OBSERVER_NAMES.index(e.observer()) for e in exporters] + [0]
    observer_bi = [OBSERVER_NAMES.index(e.observer(biflow=True)) for e in exporters] + [0]
    times = [ms_column(table, name) for name in ("time_received", "flow_end", "flow_start")]
    arrays = (
        c64(exp_codes, np.int64), c64(direction, np.int8),
        c64(nodes["src_node"], np.int32), c64(nodes["dst_node"], np.int32),
        c64(centers["src_center"], np.int32), c64(centers["dst_center"], np.int32),
        c64(_np(table, "src_port", np.uint16)), c64(_np(table, "dst_port", np.uint16)),
        c64(_np(table, "proto", np.uint8)), flags, packets, biflow, bdir, src_listen, dst_listen,
        *(None if t is None else c64(t, np.int64) for t in times),
        c64(per_exporter["node"], np.int64), c64(per_exporter["center"], np.int64),
        c64(per_exporter["dual"], np.uint8), c64(per_exporter["force"], np.uint8),
        c64(per_exporter["secondary"], np.uint8), np.array(observer, np.uint8), np.array(observer_bi, np.uint8),
        c64(covered, np.uint8), c64(devices, np.uint8),
        _DECISIONS, _COUNTING, _RANK, c64(_PAIR.ravel()), _ECHO_REQUEST.view(np.uint8), _ECHO_REPLY.view(np.uint8),
        out["reason"], out["counted"], out["initiator"], out["method"], out["observer"],
        out["event_start"], out["event_end"], out["reason_counts"],
    )  # fmt: skip
    consts = (
        _now_ms(), counting.MAX_EXPORT_LAG_S * 1000, counting.MAX_CLOCK_AHEAD_S * 1000, counting.MAX_SPAN_S * 1000,
        _LOWER, _SERVICE, _SYNACK, _SYNONLY, _ICMP, _BIFLOW,
    )  # fmt: skip
    kernel.apply(arrays, consts)  # the listening test is skipped for ICMP inside, as in roles()
    return {
        "event_start": out["event_start"],
        "event_end": out["event_end"],
        "observer": (out["observer"], OBSERVER_NAMES),
        "counted": out["counted"],
        "count_reason": (out["reason"], REASON_NAMES),
        "initiator": (out["initiator"], INITIATOR_NAMES),
        "role_method": (out["method"], METHOD_NAMES),
        "role_confidence": _CONFIDENCE[out["method"]],
        "reason_counts": out["reason_counts"],
    }


def _observers(exporters: list[Exporter], codes: np.ndarray, biflow: np.ndarray) -> np.ndarray:
    plain: np.ndarray = np.array([OBSERVER_NAMES.index(e.observer()) for e in exporters] + [0])[codes]
    if not np.any(biflow):
        return plain
    bi = np.array([OBSERVER_NAMES.index(e.observer(biflow=True)) for e in exporters] + [0])[codes]
    return np.where(biflow > 0, bi, plain)


def ms_column(table: pa.Table, name: str) -> np.ndarray | None:
    """A timestamp (or integer) column as int64 milliseconds, without a copy when it can; None if absent."""
    if name not in table.schema.names:
        return None
    col = table.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_timestamp(col.type):
        if col.type.unit != "ms":
            col = col.cast(pa.timestamp("ms", tz=col.type.tz))
        if col.null_count == 0:  # the values buffer as it is: no copy, no cast
            return np.frombuffer(col.buffers()[1], dtype=np.int64)[col.offset : col.offset + len(col)]
        col = col.cast(pa.int64())
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)


def event_times(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """``event_start`` and ``event_end`` (ms) of each record: the rule of :mod:`netobs.counting`."""
    n = table.num_rows
    recv = ms_column(table, "time_received")
    end = ms_column(table, "flow_end")
    start = ms_column(table, "flow_start")
    if recv is None:
        recv = end if end is not None else np.full(n, _now_ms(), dtype=np.int64)
    if end is None:
        end = recv
    if start is None:
        start = end
    ok = (end > recv - counting.MAX_EXPORT_LAG_S * 1000) & (end <= recv + counting.MAX_CLOCK_AHEAD_S * 1000)
    ee = np.where(ok, end, recv)
    es = np.where(ok & (start > 0) & (start <= ee), np.maximum(start, ee - counting.MAX_SPAN_S * 1000), ee)
    return es, ee


def _direction_codes(table: pa.Table) -> np.ndarray:
    """0 ingress, 1 egress, 2 other (from each value's first byte: the values are an enum)."""
    col = table.column("direction")
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_dictionary(col.type) or not pa.types.is_string(col.type):
        codes, values = _strings(table, "direction")
        lut = np.array([{"ingress": 0, "egress": 1}.get(v, 2) for v in values] + [2], dtype=np.int8)
        by_value: np.ndarray = lut[codes]
        return by_value
    by_byte: np.ndarray = _edge_lookup(col, _FIRST_BYTE, last=False)
    return by_byte


#: Export protocols (the ``type`` column) by their last byte: sflow, ipfix, netflow9, netflow5, psamp.
_EXPORT_TYPES = ("sflow", "ipfix", "netflow9", "netflow5", "psamp")
_LAST_BYTE = np.full(256, len(_EXPORT_TYPES), dtype=np.int64)
for _i, _t in enumerate(_EXPORT_TYPES):
    _LAST_BYTE[ord(_t[-1])] = _i
_LAST_BYTE_U8 = _LAST_BYTE.astype(np.uint8)


def _type_codes(table: pa.Table) -> tuple[np.ndarray, list[str]]:
    """Codes and values of the ``type`` column; an enum, read from each value's last byte."""
    col = table.column("type")
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not pa.types.is_string(col.type):
        return _strings(table, "type")
    codes = _edge_lookup(col, _LAST_BYTE_U8, last=True).astype(np.int64)
    if (codes == len(_EXPORT_TYPES)).any():  # a value outside the enum: the general way
        return _strings(table, "type")
    return codes, list(_EXPORT_TYPES)


def _edge_lookup(col: pa.Array, lut: np.ndarray, last: bool) -> np.ndarray:
    """``lut`` of each string's first (or last) byte (``lut[0]`` for empty ones): natively in one pass."""
    if _native is not None and native_enabled() and len(col):
        data = col.buffers()[2]
        offsets = np.frombuffer(col.buffers()[1], dtype=np.int32)[col.offset : col.offset + len(col) + 1]
        out = np.empty(len(col), dtype=np.uint8)
        raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
        _native.edge_codes(np.ascontiguousarray(offsets), raw, np.ascontiguousarray(lut, np.uint8), last, out)
        return out.view(lut.dtype) if lut.dtype.itemsize == 1 else out.astype(lut.dtype)
    picked: np.ndarray = lut[_edge_bytes(col, last)]
    return picked


def _edge_bytes(col: pa.Array, last: bool = False) -> np.ndarray:
    """The first (or last) byte of each string (0 for empty ones), read from Arrow's buffers without a copy."""
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int32)[col.offset : col.offset + len(col) + 1]
    data = col.buffers()[2]
    if data is None or not len(data):
        return np.zeros(len(col), dtype=np.uint8)
    buf = np.frombuffer(data, dtype=np.uint8)
    starts, ends = offsets[:-1], offsets[1:]
    at = buf[np.clip(ends - 1 if last else starts, 0, len(buf) - 1)]
    return np.where(ends > starts, at, 0).astype(np.uint8)


_FIRST_BYTE = np.full(256, 2, dtype=np.int8)
_FIRST_BYTE[ord("i")], _FIRST_BYTE[ord("e")] = 0, 1
_FIRST_BYTE[0] = 2  # an empty value: other


_TEXTS: dict[bytes, str] = {}


def _text(raw: bytes) -> str:
    """The text form of a 16-byte address (cached: exporters are few, and seen every batch)."""
    text = _TEXTS.get(raw)
    if text is None:
        ip = ipaddress.IPv6Address(raw)
        text = str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)
        if len(_TEXTS) >= 65_536:
            _TEXTS.clear()
        _TEXTS[raw] = text
    return text


_TS = pa.timestamp("ms", tz="UTC")
_TYPES = {
    "event_start": _TS,
    "event_end": _TS,
    "observer": pa.string(),
    "counted": pa.uint8(),
    "count_reason": pa.string(),
    "initiator": pa.string(),
    "role_method": pa.string(),
    "role_confidence": pa.uint8(),
}


_DICTS: dict[tuple[str, ...], pa.Array] = {}


def _with_columns(table: pa.Table, cols: dict[str, Any], n: int, dictionary: bool) -> pa.Table:
    out = table
    for name, typ in _TYPES.items():
        values = cols.get(name)
        if typ == pa.string():
            codes, names = values if values is not None else (np.zeros(n, np.int64), ("",))
            dict_arr = _DICTS.get(names)
            if dict_arr is None:  # the names are the model's fixed tuples: built once each
                dict_arr = _DICTS[names] = pa.array(list(names), pa.string())
            indices = pa.array(np.asarray(codes, dtype=np.int32))
            arr = pa.DictionaryArray.from_arrays(indices, dict_arr, safe=False)
            if not dictionary:
                arr = dict_arr.take(indices)
        elif typ == _TS:
            ms = np.ascontiguousarray(values if values is not None else np.zeros(n), dtype=np.int64)
            arr = pa.Array.from_buffers(_TS, n, [None, pa.py_buffer(ms)])
        else:
            arr = pa.array(np.asarray(values if values is not None else np.zeros(n), dtype=np.uint8))
        i = out.schema.get_field_index(name)
        f = pa.field(name, arr.type, nullable=False)
        out = out.set_column(i, f, arr) if i >= 0 else out.append_column(f, arr)
    return out


# ---- persistence -------------------------------------------------------------------------------
OBSERVATION_POINTS = "observation_points"


OBSERVATION_POINTS_TABLE = Table(
    OBSERVATION_POINTS,
    (
        Column("exporter", "String", "exporter address"),
        Column("type", "LowCardinality(String)", "export protocol"),
        Column("domain", "UInt32", "observation domain (IPFIX) / source id (NetFlow v9) / sub-agent (sFlow)"),
        Column("node", "LowCardinality(String)", "node of the exporter (empty: a device)"),
        Column("center", "LowCardinality(String)", "center of the exporter"),
        Column("observer", "LowCardinality(String)", "kind of observation point (netobs.counting)"),
        Column("directions", "LowCardinality(String)", "dual, single or empty (not known yet)"),
        Column("perflow", "UInt8", "sends observationPointId"),
        Column("count", "LowCardinality(String)", "auto, always or never (counting.exporters)"),
        Column("updated", "DateTime64(3, 'UTC')"),
    ),
    order_by=("exporter", "type", "domain"),
    version="updated",
    shard_by="cityHash64(exporter)",
)


def create_observation_table(database: str) -> str:
    """DDL of the learned observation points (modern dialect); the newest row per exporter wins."""
    (statement,) = OBSERVATION_POINTS_TABLE.create(database)
    return statement


class ObservationTable:
    """Keeps :class:`Observations` in the store: loaded at start, reloaded now and then (other
    replicas learn too), written when an exporter's classification changes."""

    reload_interval_s = 60.0

    def __init__(self, store: Any, database: str):
        self.store, self.database = store, database
        self._loaded = 0.0

    def attach(self, obs: Observations) -> None:
        self.store.execute(create_observation_table(self.database))
        self.load(obs)
        obs.on_change = self.save
        obs.refresh = lambda: self.refresh(obs)

    def refresh(self, obs: Observations) -> None:
        """What other pipeline replicas learned, at most every ``reload_interval_s``."""
        if time.monotonic() - self._loaded < self.reload_interval_s:
            return
        try:
            self.load(obs)
        except Exception as e:  # the next batch tries again; counting goes on with what is known
            self._loaded = time.monotonic()
            log.warning("observation points not reloaded: %s", e)

    def load(self, obs: Observations) -> None:
        t = self.store.query_arrow(
            f"SELECT exporter, type, domain, node, center, directions, perflow "
            f"FROM `{self.database}`.`{OBSERVATION_POINTS}` FINAL"
        )
        obs.restore(t.to_pylist())
        self._loaded = time.monotonic()

    def save(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        now = int(time.time() * 1000)
        cols = {k: [r[k] for r in rows] for k in rows[0]}
        cols["perflow"] = pa.array(cols["perflow"], pa.uint8())
        cols["domain"] = pa.array(cols["domain"], pa.uint32())
        cols["updated"] = pa.array([now] * len(rows), pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
        try:
            self.store.insert(pa.table(cols), target=OBSERVATION_POINTS)
        except Exception as e:  # learned state is rebuilt from the data; a lost write is not data loss
            log.warning("observation points not saved: %s", e)
