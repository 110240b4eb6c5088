"""Time-correct enrichment of flow batches: both ends named as they were at ``flow_start``.

For each end, in order: (a) the address owner valid at the flow's time (a Pod, else a
Kube-OVN IP allocation, else a node address), by exact match over a per-address interval
index, so an IP reused by another pod is named right on both sides of the reuse; (b) the
longest-prefix network (Kube-OVN subnet, legacy network, external system) valid then,
for subnet/vpc, and tenant/zone/center when no pod says otherwise; (c) the namespace's
tenant and zone (they win over the network's); (d) node → center → site.

Unknown addresses: every attribute stays '' and the row is kept. ``path`` is
intra_node | intra_center | cross_center (same site) | cross_site when both ends are in
known centers; ``external`` when one end is inside and the other is not (unknown, or an
``external`` network); ``unknown`` when neither end is inside a known center.

Everything is vectorized over columns (numpy, Arrow compute); no Python loop per flow.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netobs import schema
from netobs.observations import REASON_NAMES, Counter, Listening, Observations, ms_column
from pipeline import metrics
from pipeline.coded_metadata import ATTRS, Tables, endpoint_rows
from pipeline.lookups import Addresses, clip_times
from pipeline.metadata.versions import MetadataStore
from pipeline.nat import NatAttributor

log = logging.getLogger(__name__)

_INTRA_NODE, _INTRA_CENTER, _CROSS_CENTER, _CROSS_SITE, _EXTERNAL, _UNKNOWN = range(6)


class Enricher:
    """Fills the ``src_*``/``dst_*`` and ``path`` columns of flow tables from a metadata store.

    The index is rebuilt lazily when the store's generation changes (a Kubernetes event,
    a reloaded inventory); ``sources`` (e.g. a Kubernetes watcher) start and stop with it.
    """

    def __init__(
        self,
        metadata: MetadataStore,
        sources: tuple[Any, ...] = (),
        dictionary: bool = False,
        counter: Counter | None = None,
    ):
        self.metadata = metadata
        self.sources = sources
        #: The counting model (observer, counted, count_reason, initiator, role columns).
        self.counter = counter or Counter(Observations())
        self._listening = Listening()
        #: Rows received longer ago than the store keeps them (0: keep all) are refused, counted
        #: and logged here instead of being inserted and deleted by the TTL at once.
        self.retention_days = 0
        self.refused_retention = 0
        self._warned = 0.0
        #: Dictionary-encoded output columns (see :meth:`enrich`); off: plain strings.
        self.dictionary = dictionary
        self._tables: Tables | None = None
        self._generation = -1
        self._lock = threading.Lock()
        self.index_build_s = 0.0
        #: Names flows seen after a NAT/EIP by the pod behind it (rules, pre/post-NAT join).
        self.nat = NatAttributor()

    def start(self) -> None:
        for s in self.sources:
            s.start()

    def stop(self) -> None:
        for s in self.sources:
            s.stop()

    def tables(self) -> Tables:
        """The current index, rebuilt first if the metadata changed since it was built."""
        with self._lock:
            gen = self.metadata.generation
            if self._tables is None or gen != self._generation:
                started = time.perf_counter()
                versions = self.metadata.versions()
                self._tables = Tables(versions)
                self._listening = Listening(versions)
                self.index_build_s = time.perf_counter() - started
                self._generation = gen
                log.debug("enrichment index rebuilt in %.3fs", self.index_build_s)
            return self._tables

    def enrich(self, table: pa.Table, dictionary: bool | None = None) -> pa.Table:
        """``table`` with the enrichment columns filled (added if absent), other columns untouched.

        The columns are strings, or with ``dictionary`` (default: the enricher's setting)
        dictionary-encoded: int32 indices into the values each attribute can take, which is
        what the store's LowCardinality columns hold, so no string is copied per flow (not
        the pod columns, which the store keeps as plain strings).
        """
        table = self._within_retention(table)
        tab = self.tables()
        encode = self.dictionary if dictionary is None else dictionary
        times = clip_times(_times(table))
        scope = self._scope(tab, table, times)
        src_addrs = Addresses.from_arrow(table.column("src_addr"))
        dst_addrs = Addresses.from_arrow(table.column("dst_addr"))
        src = self.resolve(tab, src_addrs, times, scope)
        dst = self.resolve(tab, dst_addrs, times, scope)
        nat = self.nat.attribute(tab, table, src_addrs, dst_addrs, times, src, dst)
        for codes, (rows, addrs) in ((src, nat.src_internal), (dst, nat.dst_internal)):
            if len(rows):  # named behind the NAT: the internal address, as it was then
                behind = self.resolve(tab, addrs, times[rows], None if scope is None else scope[rows])
                for name, values in behind.items():
                    codes[name][rows] = values
        out = table
        for end, codes in (("src", src), ("dst", dst)):
            for attr in ATTRS:
                keep = encode and attr not in schema.HIGH_CARDINALITY_ATTRIBUTES  # those are String
                out = _set(out, f"{end}_{attr}", _column(tab.dicts[attr], codes[attr], keep))
        out = _set(out, "path", _column(tab.paths, path_of(src, dst), encode))
        out = _set(out, "cluster_path", _column(tab.cluster_paths, cluster_path_of(tab, src, dst), encode))
        out = _set(out, "src_nat", _column(nat.methods, nat.src_method, encode))
        out = _set(out, "dst_nat", _column(nat.methods, nat.dst_method, encode))
        out = _set(out, "nat_confidence", pa.array(nat.confidence, pa.uint8()))
        if "exporter" in table.schema.names:  # exporter address → its node → that node's center
            out, exp_node, exp_center, exp_codes = _exporter_columns(tab, out, times, encode)
            coded = {  # the codes the counting model compares, as the enrichment has them
                space: (
                    tab.values(space),
                    {f"src_{space}": src[space], f"dst_{space}": dst[space], f"exporter_{space}": exp},
                )
                for space, exp in (("node", exp_node), ("center", exp_center))
            }
            out = self.counter.apply(
                out, self._listening, dictionary=encode, coded=coded, exporter_codes=exp_codes
            )
            for code in np.flatnonzero(self.counter.reason_counts):
                metrics.counted_records.labels(REASON_NAMES[code]).inc(int(self.counter.reason_counts[code]))
        return out

    def _within_retention(self, table: pa.Table) -> pa.Table:
        if not self.retention_days or "time_received" not in table.schema.names or not table.num_rows:
            return table
        received = ms_column(table, "time_received")
        assert received is not None
        oldest = int(time.time() * 1000) - self.retention_days * 86_400_000
        old = (received > 0) & (received < oldest)  # 0: not known (crafted tables), never refused
        n = int(old.sum())
        if not n:
            return table
        self.refused_retention += n
        metrics.refused_retention.inc(n)
        now = time.monotonic()
        if now - self._warned > 60:  # loud, but one line a minute
            self._warned = now
            log.warning(
                "refused %d records received before %s: older than the store keeps (retention_days=%d); "
                "%d refused so far",
                n, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(oldest / 1000)), self.retention_days,
                self.refused_retention,
            )  # fmt: skip
        return table.filter(pa.array(~old))

    def enrich_exporters(self, table: pa.Table) -> pa.Table:
        """``table`` (interface counters) with ``exporter_node``/``exporter_center`` filled."""
        return _exporter_columns(self.tables(), table, clip_times(_times(table)), False)[0]

    def _scope(self, tab: Tables, table: pa.Table, times: np.ndarray) -> np.ndarray | None:
        """Cluster (pool code, -1: not known) of each row's exporter, where the metadata has clusters:
        the addresses of its flows are looked up in that cluster first (overlapping pod CIDRs)."""
        if len(tab.clusters) < 2 or "exporter" not in table.schema.names:
            return None
        _, _, cluster = tab.exporter_cluster(Addresses.from_arrow(table.column("exporter")), times)
        return np.where(cluster != 0, cluster, -1)

    def resolve(
        self, tab: Tables, addrs: Addresses, times: np.ndarray, scope: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Codes of every attribute of one end in its dictionary (``Tables.dicts``), plus
        ``inside`` (in a known center); ``times`` from :func:`clip_times`; ``scope``: the cluster
        each row was observed in (see :meth:`_scope`; None: no clusters)."""
        if scope is None:
            ep, open_rows = _exact(tab.exact, addrs, times)
            net_of = (
                (lambda rows: tab.prefix.lookup_clipped(addrs.take(rows), times[rows]))
                if len(tab.clusters) < 2
                else (lambda rows: tab.lookup_networks(-1, addrs.take(rows), times[rows]))
            )
        else:
            ep = np.full(addrs.n, -1, dtype=np.int64)
            open_list, nets = [], np.full(addrs.n, -1, dtype=np.int64)
            for c in np.unique(scope).tolist():
                rows = np.flatnonzero(scope == c)
                sub = addrs.take(rows)
                hit, rest = _exact(tab.order(c), sub, times[rows])
                ep[rows] = hit
                if len(rest):
                    nets[rows[rest]] = tab.lookup_networks(c, sub.take(rest), times[rows[rest]])
                    open_list.append(rows[rest])
            open_rows = np.sort(np.concatenate(open_list)) if open_list else np.zeros(0, np.int64)
            net_of = lambda rows: nets[rows]  # noqa: E731
        prof = ep
        if len(open_rows):
            net = net_of(open_rows)
            prof = ep.copy()
            prof[open_rows] = np.where(net >= 0, tab.n_ep + net, -1)
        # An attribute the metadata never sets (no planes, clusters or hosts configured) is '' for
        # every row: one shared zero array instead of a gather (any write into it writes 0 again).
        zero = np.zeros(len(prof), dtype=np.int32)
        codes: dict[str, np.ndarray] = {
            name: zero if name in tab.unset else tab.prof_codes[name].take(prof) for name in ATTRS
        }
        codes["inside"] = tab.inside[prof]
        moving = np.flatnonzero(~tab.static[prof]) if not tab.all_static else ()
        if len(moving):  # a namespace, node or center changed during this address owner's life
            ep_m = ep[moving]
            net_m = np.where(ep_m >= 0, tab.ep_net[ep_m], prof[moving] - tab.n_ep)
            for name, values in tab.attributes(ep_m, net_m, times[moving]).items():
                codes[name][moving] = values if name == "inside" else tab.local[name][values]
        return codes


def path_of(src: dict[str, np.ndarray], dst: dict[str, np.ndarray]) -> np.ndarray:
    """Index into ``PATHS`` for each flow, from both ends' node, center, site and ``inside``
    (one 5-bit key per row into :data:`_PATH_OF_KEY`; :func:`_path_reference` says it plainly)."""
    si, di = src["inside"], dst["inside"]
    key = (si | di).view(np.uint8) | ((si & di).view(np.uint8) << 1)
    key |= ((src["node"] == dst["node"]) & (src["node"] != 0)).view(np.uint8) << 2
    key |= (src["center"] == dst["center"]).view(np.uint8) << 3
    key |= (src["site"] == dst["site"]).view(np.uint8) << 4
    return _PATH_OF_KEY[key]


def _path_reference(any_inside: bool, both: bool, same_node: bool, same_center: bool, same_site: bool) -> int:
    if not both:
        return _EXTERNAL if any_inside else _UNKNOWN
    if same_node:
        return _INTRA_NODE
    if same_center:
        return _INTRA_CENTER
    return _CROSS_CENTER if same_site else _CROSS_SITE


_PATH_OF_KEY = np.array([_path_reference(*(bool(k >> b & 1) for b in range(5))) for k in range(32)], np.int32)


def cluster_path_of(tab: Tables, src: dict[str, np.ndarray], dst: dict[str, np.ndarray]) -> np.ndarray:
    """Index into ``CLUSTER_PATHS`` for each flow: 0 when an end is in no cluster, else intra_cluster,
    cross_cluster, or cross_cloud when the two clusters' clouds are known and differ."""
    s, d = src["cluster"], dst["cluster"]
    if "cluster" in tab.unset:  # no clusters in the metadata: every flow's is 0
        return np.zeros(len(s), dtype=np.int32)
    cloud = tab.cluster_cloud  # by local cluster code: its cloud's code (0: not known)
    cross = np.where((cloud[s] != 0) & (cloud[d] != 0) & (cloud[s] != cloud[d]), 3, 2)
    return np.where((s == 0) | (d == 0), 0, np.where(s == d, 1, cross))


def _exact(
    entries: list[tuple[Any, Any, np.ndarray]], addrs: Addresses, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Endpoint row of each address at each time (the entries in priority order: pods first, then
    IPs, hosts, nodes; -1 if none), and the rows left without one."""
    ep = np.full(addrs.n, -1, dtype=np.int64)
    rows: np.ndarray | None = None  # None: every row is still open
    sub = addrs
    for aset, idx, at in entries:
        if not len(aset):
            continue
        hit = idx.lookup_clipped(aset.lookup(sub), times if rows is None else times[rows])
        if rows is None:
            if at.ndim == 0:
                ep = np.where(hit >= 0, hit + at, -1) if at else hit
            else:
                ep = np.where(hit >= 0, at[np.maximum(hit, 0)], -1)
            rest = np.flatnonzero(ep < 0)
            rows = rest
        else:
            found = np.flatnonzero(hit >= 0)
            ep[rows[found]] = endpoint_rows(at, hit[found])
            rest = np.flatnonzero(hit < 0)
            rows = rows[rest]
        if not len(rows):
            break
        sub = sub.take(rest)
    return ep, (np.arange(addrs.n) if rows is None else rows)


def _exporter_columns(
    tab: Tables, table: pa.Table, times: np.ndarray, encode: bool
) -> tuple[pa.Table, np.ndarray, np.ndarray, tuple[np.ndarray, int] | None]:
    """``exporter_node`` and ``exporter_center`` of each row's exporter (a node address) at ``times``;
    also their codes in ``tab.dicts["node"]`` / ``["center"]``, and each row's exporter address
    numbered with the count of numbers (None where the batch was looked up per row)."""
    node, center, numbered = _exporters(tab, table.column("exporter"), times, local=True)
    out = _set(table, "exporter_node", _column(tab.dicts["node"], node, encode))
    out = _set(out, "exporter_center", _column(tab.dicts["center"], center, encode))
    return out, node, center, numbered


def _exporters(
    tab: Tables, col: pa.Array | pa.ChunkedArray, times: np.ndarray, local: bool = False
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, int] | None]:
    """Node and center pool codes of each row's exporter at its time (:meth:`Tables.exporter`),
    looked up once per distinct exporter (a batch has many rows, few exporters): at the batch's
    first and last time, and per row only for the exporters whose versions differ between the
    two (or may: a known address without a version at one of them). With ``local``: the codes in
    the node and center dictionaries (``tab.local``) instead of the pool's. Also each row's address
    numbered 0..k-1 and k (None where looked up per row)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    to_node, to_center = tab.local["node"], tab.local["center"]

    def per_row(addrs: Addresses, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, c = tab.exporter(addrs, at)
        return (n, c) if not local else (to_node[n], to_center[c])

    if len(col) < _PER_ROW_BELOW or col.null_count:
        return (*per_row(Addresses.from_arrow(col), times), None)
    enc = pc.dictionary_encode(col)
    codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False))
    uniq = Addresses.from_arrow(enc.dictionary)
    tt = clip_times(times)
    k = uniq.n
    node, center, hits_lo, certain_lo = tab.exporter_versions(uniq, np.full(k, tt.min(), dtype=np.int64))
    _, _, hits_hi, certain_hi = tab.exporter_versions(uniq, np.full(k, tt.max(), dtype=np.int64))
    stable = certain_lo & certain_hi
    for lo, hi in zip(hits_lo, hits_hi, strict=True):
        stable &= lo == hi
    if local:  # the few distinct exporters mapped, then one gather per row
        node, center = to_node[node], to_center[center]
    node_rows, center_rows = node[codes], center[codes]
    if not stable.all():  # an exporter's node (or its center) changed during the batch
        rows = np.flatnonzero(~stable[codes])
        n, c = per_row(Addresses.from_arrow(col.take(pa.array(rows))), times[rows])
        node_rows[rows], center_rows[rows] = n, c
    return node_rows, center_rows, (codes, k)


#: Batches with fewer rows look their exporters up per row (the distinct pass costs more).
_PER_ROW_BELOW = 256


def _column(values: pa.Array, codes: np.ndarray, dictionary: bool) -> pa.Array:
    """``values[codes]``: dictionary-encoded, or as plain strings."""
    if dictionary and len(values) == 1:  # only '': no gather, and one shared buffer of zeros
        return pa.DictionaryArray.from_arrays(_zero_indices(len(codes)), values)
    indices = pa.array(np.asarray(codes, dtype=np.int32))
    if dictionary:  # codes come from the index's own tables: always within ``values``
        return pa.DictionaryArray.from_arrays(indices, values, safe=False)
    return values.take(indices)


def _zero_indices(n: int) -> pa.Array:
    """``n`` int32 zeros as an Arrow array, kept for the next batch of the same length (Arrow
    arrays are immutable: every column without a value shares it)."""
    cached = _ZEROS[0]
    if cached is None or len(cached) != n:
        cached = _ZEROS[0] = pa.array(np.zeros(n, np.int32))
    return cached


_ZEROS: list[pa.Array | None] = [None]


def _times(table: pa.Table) -> np.ndarray:
    """The time each flow is named at: ``flow_start``, else ``time_received`` (ms)."""
    start = ms_column(table, "flow_start")
    if start is None:
        received = ms_column(table, "time_received")
        return received if received is not None else np.full(table.num_rows, int(time.time() * 1000))
    received = ms_column(table, "time_received")
    return np.where(start > 0, start, received) if received is not None else start


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    field = pa.field(name, values.type, nullable=False)
    return table.set_column(i, field, values) if i >= 0 else table.append_column(field, values)


def make_enricher(settings: Any, store: Any = None) -> Enricher:
    """An :class:`Enricher` configured by ``settings.enrich`` (see ``netobs.config.EnrichConfig``).

    With ``store`` (a started netobs store) the metadata history is created/reloaded from
    and written to ClickHouse; without, it lives in memory. The inventory file, if any, is
    applied (its objects are valid since ever until the file changes); with
    ``kubernetes.enabled`` a watcher is attached and starts with :meth:`Enricher.start`.
    Its columns are dictionary-encoded: every store takes them (chdb as they are).
    """
    from pipeline.metadata.inventory import apply_inventory

    cfg = settings.enrich
    if store is not None and getattr(store, "dialect", "modern") != "modern":
        # A pre-19 server has no DateTime64/LowCardinality: keep the metadata history in memory.
        log.warning("metadata history kept in memory: the %s store cannot hold it", store.dialect)
        store = None
    meta = MetadataStore(store, settings.store.database)
    if store is not None:
        meta.ensure()
        meta.reload()
    counter = Counter(observation_points(settings, store))
    retention = settings.store.retention_days
    if cfg.inventory:
        apply_inventory(meta, cfg.inventory, strict=False)
    if getattr(cfg, "cmdb", None):
        from pipeline.metadata.cmdb import apply_cmdb

        cmdb = apply_cmdb(meta, cfg.cmdb)
        for problem in cmdb.problems:
            log.error("cmdb: %s", problem)
        log.info(
            "cmdb: %d hosts from %d rows, %d rows refused", len(cmdb.hosts), cmdb.rows, len(cmdb.problems)
        )
    sources: tuple[Any, ...] = ()
    clusters = [c for c in (cfg.kubernetes, *getattr(cfg, "clusters", ())) if c.enabled]
    names = [c.cluster for c in clusters]
    if len(clusters) > 1 and (len(set(names)) != len(names) or "" in names):
        raise ValueError("enrich: several Kubernetes clusters need distinct, non-empty `cluster` names")
    if clusters:
        from pipeline.metadata.kubernetes import KubernetesSource
        from pipeline.metadata.model import Cluster
        from pipeline.metadata.versions import Change

        meta.apply([Change.upsert(Cluster(name=c.cluster, cloud=c.cloud)) for c in clusters if c.cluster], 0)
        sources = tuple(KubernetesSource.from_config(meta, c) for c in clusters)
    enricher = Enricher(meta, sources, dictionary=True, counter=counter)
    enricher.retention_days = retention
    return enricher


def observation_points(settings: Any, store: Any = None) -> Observations:
    """The exporters learned so far (from the store when there is one), configured by ``counting``."""
    from netobs.observations import ObservationTable

    obs = Observations(settings.counting)
    if store is not None and getattr(store, "dialect", "modern") == "modern":
        ObservationTable(store, settings.store.database).attach(obs)
    return obs
