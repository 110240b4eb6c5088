"""NetworkPolicy semantics → one SQL condition over flow rows (true: the policies deny the flow).

The pod inventory (pods with their labels over time, namespaces with theirs) comes from the
metadata store's ``metadata_versions`` table. Pods are grouped in Python by (namespace,
labels); groups isolated by the same set of policies form a class. Everything a peer can
admit gets a code (a group, a namespace, any pod, anything, an ipBlock), every port clause
too, and each class's allowed (class, peer code, port clause) triples become one set of
numbers. Per flow row the SQL then does a few hash lookups (``transform`` over constant
arrays): each end's group, the class of the isolated end, the codes of the other end and
the port clauses the flow satisfies, and whether one triple is allowed. The cost per row does
not grow with the number of classes, and the whole flow scan stays in ClickHouse.

Where the lookup data lives: small maps are literals in the SQL; larger ones (a bank cluster:
3,000 pods and ~1,000 policies make ~450k entries, ~500 KiB of SQL inlined, beyond the
server's default ``max_query_size`` and ``max_ast_elements``) are rows of one ``Log`` table per
compiled (inventory, policies) — ``netpol_lookup_<day>_<content hash>`` — and the SQL reads
each map with a scalar subquery, ``transform(key, tupleElement((SELECT (groupArray(k),
groupArray(v)) FROM ...), 1), ...)``. Why this and not ``IN``/``JOIN``/``Join``/dictionaries:
ClickHouse runs a scalar subquery once, on the server that received the query, before the
scan, and hands its result to the scan (and, on a Distributed table, to every shard) as a
constant, so the per-row lookup stays the same hash ``transform`` as with literals (results
are unchanged by construction), the lookup table need exist only where the query is sent (no
``ON CLUSTER`` DDL, no ``GLOBAL`` rewrite of the scan), the scan's SQL keeps its shape (no
JOIN added to the shared violations SELECT), and no dictionary configuration is needed.
The table is written through the same ``query`` callable that reads the inventory (an
``INSERT ... VALUES`` whose data ClickHouse's streaming parser reads outside
``max_query_size``), so every caller (evaluation, dry run, what-if, policy tests) works
unchanged. Named by content, the table is shared by identical evaluations (two concurrent
ones of the same policy write identical rows; the second finds or renames onto the first),
filled under a scratch name and renamed (atomic: never read half-written), and dropped two
days later by the next evaluation (see :meth:`Compiler.store_lookups`).

Semantics (``networking.k8s.io/v1``): a pod is isolated for ingress (egress) when a policy of
its namespace selects it with that policy type; a flow is allowed when, for each isolated
end, one selecting policy has a rule whose peers and ports match. Peers: podSelector (pods of
the policy's namespace), namespaceSelector (all pods of the matching namespaces), both in one
peer (AND), ipBlock (addresses, minus ``except``; Kube-OVN matches pod addresses too). An end
that is not a pod (outside the cluster, a node) is matched only by ipBlock. Traffic between a
pod and its own node is always allowed. NetworkPolicies are stateful: with ``replies: infer``
a flow whose source port is below its destination port and whose reverse connection would
be allowed is taken as a reply. A named port cannot be resolved (container ports are not in
the metadata store): it matches no traffic, and a warning names the policy.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from analytics.policy.netpol import EGRESS, INGRESS, IPBlock, NetworkPolicy, Peer, Port, Selector
from analytics.policy.sql import FALSE, TRUE, and_, cidr_in, not_, or_, quote

METADATA_TABLE = "metadata_versions"
#: Namespaces carry this label automatically (Kubernetes 1.21+), whatever the inventory says.
NAME_LABEL = "kubernetes.io/metadata.name"
#: The flow's time in ms, as enrichment named its ends (flow_start, else time_received).
SEEN_MS = (
    "if(toUnixTimestamp64Milli(flow_start) > 0, toUnixTimestamp64Milli(flow_start), "
    "toUnixTimestamp64Milli(time_received))"
)
#: Versions starting up to this long before the window still name its flows (long-lived flows).
MARGIN_MS = 3_600_000
#: Lookup maps up to this many entries are inlined in the SQL; larger ones go to the lookup table.
INLINE_MAX = 64
#: Stands for the lookup table in the SQL until :meth:`Compiler.bind` names it.
LOOKUP_TABLE = "__netpol_lookup__"
LOOKUP_PREFIX = "netpol_lookup_"
LOOKUP_COLUMNS = "m UInt32, s String, i UInt64, v UInt32, t String"


@dataclass(frozen=True)
class PodVersion:
    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...]
    valid_from: int
    valid_to: int
    workload: str = ""


@dataclass
class Inventory:
    """Pods (every version overlapping the window) and namespace labels (the newest version)."""

    pods: list[PodVersion] = field(default_factory=list)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)


def load_inventory(query, database: str, start: datetime, end: datetime) -> tuple[Inventory, list[str]]:
    """The inventory from ``metadata_versions`` (empty with a warning when the table is missing)."""
    lo, hi = int(start.timestamp() * 1000) - MARGIN_MS, int(end.timestamp() * 1000)
    sql = (
        "SELECT kind, key, toUnixTimestamp64Milli(valid_from) AS f, toUnixTimestamp64Milli(valid_to) AS t, "
        f"attrs FROM `{database}`.`{METADATA_TABLE}` FINAL WHERE kind IN ('pod', 'namespace') "
        f"AND toUnixTimestamp64Milli(valid_from) < {hi} AND toUnixTimestamp64Milli(valid_to) > {lo} "
        "ORDER BY kind, key, valid_from"
    )
    try:
        rows = query(sql).to_pylist()
    except Exception as e:  # no metadata store yet: nothing known about pods
        if "UNKNOWN_TABLE" in str(e) or "doesn't exist" in str(e):
            return Inventory(), [f"{database}.{METADATA_TABLE} does not exist: no pod labels are known"]
        raise
    inv = Inventory()
    for r in rows:
        attrs = json.loads(r["attrs"])
        labels = {str(k): str(v) for k, v in (attrs.get("labels") or {}).items()}
        if r["kind"] == "namespace":
            inv.namespaces[r["key"]] = labels  # ordered by valid_from: the newest wins
        else:
            lab = tuple(sorted(labels.items()))
            pv = PodVersion(
                attrs["namespace"], attrs["name"], lab, int(r["f"]), int(r["t"]), attrs.get("workload", "")
            )
            inv.pods.append(pv)
    return inv, []


class Compiler:
    """Builds the deny condition and the "isolated by" detail for one set of policies."""

    def __init__(
        self, policies: list[NetworkPolicy], inv: Inventory, start: datetime, end: datetime, alias: str = "np"
    ):
        self.policies, self.inv, self.alias = policies, inv, alias
        self.lo, self.hi = int(start.timestamp() * 1000) - MARGIN_MS, int(end.timestamp() * 1000)
        self.warnings: list[str] = []
        names = set(inv.namespaces) | {p.namespace for p in inv.pods} | {p.namespace for p in policies}
        self.ns_labels = {ns: {**inv.namespaces.get(ns, {}), NAME_LABEL: ns} for ns in sorted(names)}
        # (namespace, labels) → pod versions; every namespace also holds the pods the inventory
        # does not know (named in flows only), matched as pods without labels.
        self.groups: dict[tuple[str, tuple], list[PodVersion]] = defaultdict(list)
        for ns in self.ns_labels:
            self.groups[(ns, ())] = []
        for p in inv.pods:
            self.groups[(p.namespace, p.labels)].append(p)
        self.gid = {key: i + 1 for i, key in enumerate(sorted(self.groups))}
        # Codes of what a peer admits: group ids, then namespaces, any pod, anything, then
        # ipBlocks and unknown-namespace selectors as they are met.
        self.ns_code = {ns: len(self.gid) + 1 + i for i, ns in enumerate(self.ns_labels)}
        self.any_pod = len(self.gid) + len(self.ns_labels) + 1
        self.anything = self.any_pod + 1
        self._next_code = self.anything + 1
        self.blocks: dict[IPBlock, int] = {}
        self.unknown_ns: dict[Selector, int] = {}
        self.specs: dict[tuple[int, int, int], int] = {}
        self._names: dict[str, str] = {}
        self.tables: dict[str, tuple[dict[int, int], set[int]]] = {}
        self.by_workload: dict[tuple[str, str], list[PodVersion]] = defaultdict(list)
        for p in inv.pods:
            self.by_workload[(p.namespace, p.workload)].append(p)
        # Lookup maps too large to inline: rows of the lookup table (see :meth:`_lookup`).
        self.maps: list[dict] = []
        # Per namespace, its groups' ids and labels (peer selectors are matched against them).
        self.ns_groups: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
        for key in sorted(self.groups):
            self.ns_groups[key[0]].append((self.gid[key], dict(key[1])))
        self._peer_codes: dict[tuple[str, Peer], list[int]] = {}
        self._classes: dict[str, dict[tuple[str, ...], list[tuple[str, tuple]]]] = {}

    # ---- membership -------------------------------------------------------------------------
    def _stable(self, p: PodVersion) -> bool:
        """The version covers the whole evaluated range: no time condition needed."""
        return p.valid_from <= self.lo and p.valid_to >= self.hi

    def group_of(self, end: str) -> str:
        """SQL: the group id (1-based, 0: not a pod) of the pod at ``end`` when the flow started.

        Looked up once per end: a pod's version valid only part of the range by its time, then
        the pod by name, then its workload (a workload whose every known pod is in one group for
        the whole range; pods the inventory missed follow it), then the namespace's pods without
        labels (pods known by name only).
        """
        ns, pod, wl = f"{end}_namespace", f"{end}_pod", f"{end}_workload"
        arms = [f"{pod} = ''", "0"]
        pods: dict[str, int] = {}
        workloads: dict[str, int] = {}
        for (namespace, workload), versions in sorted(self.by_workload.items()):
            gids = {self.gid[(v.namespace, v.labels)] for v in versions}
            if workload and len(gids) == 1 and all(map(self._stable, versions)):
                workloads[f"{namespace}/{workload}"] = gids.pop()
                continue
            for v in versions:
                if self._stable(v):
                    pods[f"{namespace}/{v.name}"] = self.gid[(v.namespace, v.labels)]
                else:
                    arms += [
                        f"{ns} = {quote(namespace)} AND {pod} = {quote(v.name)} AND {SEEN_MS} >= {v.valid_from}"
                        f" AND {SEEN_MS} < {v.valid_to}",
                        str(self.gid[(v.namespace, v.labels)]),
                    ]
        lookup = self._lookup(ns, {n: self.gid[(n, ())] for n in self.ns_labels}, "toUInt32(0)")
        lookup = self._lookup(f"concat({ns}, '/', {wl})", workloads, lookup)
        lookup = self._lookup(f"concat({ns}, '/', {pod})", pods, lookup)
        return f"multiIf({', '.join(arms)}, {lookup})"

    # ---- peers and ports as codes ---------------------------------------------------------------
    def _code(self, table: dict, key) -> int:
        if key not in table:
            table[key] = self._next_code
            self._next_code += 1
        return table[key]

    def _groups_in(self, namespaces: list[str], pods: Selector) -> list[int]:
        return [gid for ns in namespaces for gid, labels in self.ns_groups[ns] if pods.matches(labels)]

    def peer_codes(self, np: NetworkPolicy, peer: Peer) -> list[int]:
        """Codes of the endpoints a peer admits (see :meth:`codes_of`); computed once per namespace."""
        key = (np.namespace, peer)
        if key not in self._peer_codes:
            self._peer_codes[key] = self._peer_codes_of(np, peer)
        return self._peer_codes[key]

    def _peer_codes_of(self, np: NetworkPolicy, peer: Peer) -> list[int]:
        if peer.ip_block is not None:
            return [self._code(self.blocks, peer.ip_block)]
        pods = peer.pods or Selector()
        if peer.namespaces is None:
            if pods.everything:
                return [self.ns_code[np.namespace]]
            return self._groups_in([np.namespace], pods)
        if peer.namespaces.everything and pods.everything:
            return [self.any_pod]
        known = [ns for ns, lab in self.ns_labels.items() if peer.namespaces.matches(lab)]
        out = [self.ns_code[ns] for ns in known] if pods.everything else self._groups_in(known, pods)
        # Namespaces named in flows but not in the inventory carry only their automatic name label.
        if pods.matches({}) and _name_only(peer.namespaces, "src") != FALSE:
            out.append(self._code(self.unknown_ns, peer.namespaces))
        return out

    def port_specs(self, np: NetworkPolicy, ports: tuple[Port, ...]) -> list[int]:
        """Codes of a rule's port clauses (0: any port and protocol)."""
        if not ports:
            return [0]
        out = []
        for port in ports:
            if isinstance(port.port, str):
                self._warn(
                    f"NetworkPolicy {np.ref}: named port {port.port!r} cannot be resolved "
                    "(container ports are not in the metadata store); it matches no traffic"
                )
                continue
            lo = 0 if port.port is None else port.port
            hi = 65535 if port.port is None else port.end_port or port.port
            spec = (port.protocol, lo, hi)
            out.append(self.specs.setdefault(spec, len(self.specs) + 1))
        return out

    def _warn(self, msg: str) -> None:
        if msg not in self.warnings:
            self.warnings.append(msg)

    # ---- isolation classes --------------------------------------------------------------------
    def classes(self, direction: str) -> dict[tuple[str, ...], list[tuple[str, tuple]]]:
        """Policy refs isolating a group in ``direction`` → the groups isolated by exactly them."""
        if direction not in self._classes:
            self._classes[direction] = self._classes_of(direction)
        return self._classes[direction]

    def _classes_of(self, direction: str) -> dict[tuple[str, ...], list[tuple[str, tuple]]]:
        out: dict[tuple[str, ...], list] = defaultdict(list)
        in_ns: dict[str, list[NetworkPolicy]] = defaultdict(list)
        for p in self.policies:
            if direction in p.types:
                in_ns[p.namespace].append(p)
        for key in sorted(self.groups):
            ns, labels = key
            lab = dict(labels)
            refs = tuple(p.ref for p in in_ns.get(ns, ()) if p.pod_selector.matches(lab))
            if refs:
                out[refs].append(key)
        return dict(sorted(out.items()))

    def table(self, direction: str) -> tuple[dict[int, int], set[int]]:
        """Group id → class index of the isolated groups, and the allowed (class, peer, port) keys."""
        by_ref = {p.ref: p for p in self.policies}
        allows: dict[str, set[int]] = {}  # policy → its (peer, port) pairs, as _key(0, peer, port)
        klass: dict[int, int] = {}
        keys: set[int] = set()
        for k, (refs, groups) in enumerate(self.classes(direction).items(), start=1):
            klass.update((self.gid[g], k) for g in groups)
            for ref in refs:
                if ref not in allows:
                    allows[ref] = self._allows(by_ref[ref], direction)
                keys.update(_key(k, 0, 0) + pair for pair in allows[ref])
        return klass, keys

    def _allows(self, np: NetworkPolicy, direction: str) -> set[int]:
        out: set[int] = set()
        for rule in np.ingress if direction == INGRESS else np.egress:
            codes = {c for p in rule.peers for c in self.peer_codes(np, p)} if rule.peers else {self.anything}
            specs = self.port_specs(np, rule.ports)
            out.update(_key(0, c, sp) for c in codes for sp in specs)
        return out

    def codes_of(self, end: str) -> str:
        """SQL: the codes an endpoint answers to: its group, its namespace, any pod, anything, and
        the ipBlocks and unknown-namespace selectors it matches (0 for the ones it does not)."""
        pod = f"{end}_pod != ''"
        ns = _transform(f"{end}_namespace", self.ns_code, "toUInt32(0)")
        items = [
            f"{self.alias}_{end}",
            f"if({pod}, {ns}, 0)",
            f"if({pod}, {self.any_pod}, 0)",
            str(self.anything),
        ]
        for block, code in self.blocks.items():
            match = and_([cidr_in(end, [block.cidr]), not_(cidr_in(end, block.excepts))])
            items.append(f"if({match}, {code}, 0)")
        if self.unknown_ns:
            known = self._name(
                f"unknown_ns_{end}", f"{end}_namespace NOT IN ({', '.join(map(quote, self.ns_labels))})"
            )
        for sel, code in self.unknown_ns.items():
            items.append(f"if({and_([pod, known, _name_only(sel, end)])}, {code}, 0)")
        return "CAST([" + ", ".join(items) + "] AS Array(UInt32))"

    def specs_of(self, column: str) -> str:
        """SQL: the port clauses (codes) the flow's protocol and ``column`` port satisfy, and 0."""
        if not self.specs:
            return "CAST([0] AS Array(UInt32))"
        ids = ", ".join(map(str, self.specs.values()))
        protos, los, his = (", ".join(str(spec[i]) for spec in self.specs) for i in range(3))
        match = f"(i, pr, lo, hi) -> proto = pr AND {column} >= lo AND {column} <= hi"
        return (
            f"arrayConcat(CAST([0] AS Array(UInt32)), arrayFilter({match}, CAST([{ids}] AS Array(UInt32)), "
            f"[{protos}], [{los}], [{his}]))"
        )

    def denied(self, client: str, server: str, port_col: str) -> str:
        """A connection from ``client`` to ``server`` on ``port_col`` is denied (either end's policies)."""
        out = []
        for direction, isolated, peer in ((INGRESS, server, client), (EGRESS, client, server)):
            klass, keys = self.tables[direction]
            if not klass:
                continue
            k = self._name(
                f"k{direction[0].lower()}_{isolated}",
                self._lookup(f"{self.alias}_{isolated}", klass, "toUInt32(0)"),
            )
            key = f"bitShiftLeft(toUInt64({k}), 40) + bitShiftLeft(toUInt64(np_c), 16) + np_s"
            lookup = self._lookup(key, dict.fromkeys(sorted(keys), 1), "toUInt32(0)")
            specs = self._name(f"s_{port_col}", self.specs_of(port_col))
            codes = self._name(f"c_{peer}", self.codes_of(peer))
            allowed = f"arrayExists(np_c -> arrayExists(np_s -> {lookup} = 1, {specs}), {codes})"
            out.append(and_([f"{k} != 0", not_(allowed)]))
        return or_(out)

    def _lookup(self, key: str, mapping: dict, default: str) -> str:
        """SQL: ``mapping[key]`` (string or integer keys; UInt32 or string values), else ``default``.

        Small maps are inlined as literal arrays. Larger ones become rows of the lookup table
        (:meth:`store_lookups`), read back by one scalar subquery: ClickHouse runs it once per
        query, before the scan, and uses its arrays as constants (one hash lookup per row, as
        with literals), so the SQL text stays small whatever the cluster's size.
        """
        if not mapping:
            return default
        texts = isinstance(next(iter(mapping.values())), str)
        if len(mapping) <= INLINE_MAX:
            if not texts:
                return _transform(key, mapping, default)
            keys = ", ".join(map(str, mapping))
            values = ", ".join(map(quote, mapping.values()))
            return f"transform({key}, CAST([{keys}] AS Array(UInt64)), [{values}], {default})"
        self.maps.append(mapping)
        m = len(self.maps)
        kcol = "i" if isinstance(next(iter(mapping)), int) else "s"
        vcol = "t" if texts else "v"
        sub = (
            f"(SELECT (groupArray({kcol}), groupArray({vcol})) FROM (SELECT {kcol}, {vcol} FROM {LOOKUP_TABLE} "
            f"WHERE m = {m} ORDER BY {kcol}))"
        )
        return f"transform({key}, tupleElement({sub}, 1), tupleElement({sub}, 2), {default})"

    def store_lookups(self, query, database: str) -> str | None:
        """Write the lookup rows to their table; the table's name (None: nothing to store).

        The name is the day and a hash of the content, so evaluations of the same inventory and
        policies share one table and a concurrent evaluation never sees another's data. The table
        is filled under a scratch name and renamed (atomic): it is complete once it is visible.
        Tables named for a day before yesterday are dropped on the way (no evaluation still
        running can read them; one that crashed leaves nothing behind for long).
        """
        if not self.maps:
            return None
        rows = []
        for m, mapping in enumerate(self.maps, start=1):
            k, v = next(iter(mapping.items()))
            if isinstance(k, str):
                rows += [f"({m},{quote(k)},0,{v},'')" for k, v in mapping.items()]
            elif isinstance(v, str):
                rows += [f"({m},'',{k},0,{quote(v)})" for k, v in mapping.items()]
            else:
                rows += [f"({m},'',{k},{v},'')" for k, v in mapping.items()]
        values = ",".join(rows)
        day = int(time.time()) // 86_400
        name = f"{LOOKUP_PREFIX}{day}_{hashlib.sha1(values.encode()).hexdigest()[:20]}"
        full = f"`{database}`.`{name}`"
        _drop_stale(query, database, day)
        if _exists(query, database, name):
            return full
        scratch = f"`{database}`.`{name}_{uuid.uuid4().hex[:12]}`"
        query(f"CREATE TABLE {scratch} ({LOOKUP_COLUMNS}) ENGINE = Log")
        try:
            # Data after VALUES is read by ClickHouse's streaming parser: max_query_size does not apply.
            query(f"INSERT INTO {scratch} (m, s, i, v, t) VALUES {values}")
            if not _exists(query, database, name):
                query(f"RENAME TABLE {scratch} TO {full}")
        except Exception:
            if not _exists(query, database, name):  # not a lost race with an identical evaluation
                raise
        finally:
            query(f"DROP TABLE IF EXISTS {scratch}")
        return full

    def bind(self, sql: str, table: str | None) -> str:
        """``sql`` reading the lookup table ``table`` (as returned by :meth:`store_lookups`)."""
        if LOOKUP_TABLE not in sql:
            return sql
        if table is None:
            raise ValueError("the condition reads lookup maps, but they were not stored")
        return sql.replace(LOOKUP_TABLE, table)

    def _name(self, name: str, expr: str) -> str:
        """A per-row value computed once: defined in the condition's preamble, used by name."""
        full = f"{self.alias}_{name}"
        self._names.setdefault(full, expr)
        return full

    def condition(self, replies: str = "infer") -> str:
        """Flow rows the policies deny: neither allowed as a connection nor (optionally) as a reply."""
        self._names = {f"{self.alias}_src": self.group_of("src"), f"{self.alias}_dst": self.group_of("dst")}
        self.tables = {d: self.table(d) for d in (INGRESS, EGRESS)}
        host = or_([_own_node("src", "dst"), _own_node("dst", "src")])
        denied = self.denied("src", "dst", "dst_port")
        if replies == "infer" and denied != FALSE:
            reply = and_(["src_port < dst_port", not_(self.denied("dst", "src", "src_port"))])
            denied = and_([denied, not_(reply)])
        if denied == FALSE:
            return FALSE
        # Per-row values (group ids, codes, class indexes) are ClickHouse aliases, visible in the whole
        # SELECT: this always-true preamble defines them once, the tests above use them by name.
        names = and_([f"isNotNull(({expr}) AS {name})" for name, expr in self._names.items()])
        return and_([names, denied, not_(host)])

    def detail(self) -> str:
        """SQL text naming the policies that isolate the flow's destination (ingress) and source (egress)."""
        parts = []
        for direction, end in ((INGRESS, "dst"), (EGRESS, "src")):
            text = {}
            for refs, keys in self.classes(direction).items():
                for k in keys:
                    text[self.gid[k]] = f"{direction.lower()} of {end} isolated by {', '.join(refs)}"
            if text:
                parts.append(self._lookup(self.group_of(end), text, "''"))
        if not parts:
            return "''"
        if len(parts) == 1:
            return parts[0]
        return f"arrayStringConcat(arrayFilter(x -> x != '', [{', '.join(parts)}]), '; ')"


def _exists(query, database: str, name: str) -> bool:
    t = query(
        f"SELECT count() AS n FROM system.tables WHERE database = {quote(database)} AND name = {quote(name)}"
    )
    return t.column("n").to_pylist()[0] > 0


def _drop_stale(query, database: str, today: int) -> None:
    """Drop the lookup tables (and scratch tables) named for a day before yesterday."""
    t = query(
        f"SELECT name FROM system.tables WHERE database = {quote(database)} AND startsWith(name, "
        f"{quote(LOOKUP_PREFIX)})"
    )
    for name in t.column("name").to_pylist():
        day = name[len(LOOKUP_PREFIX) :].split("_")[0]
        if day.isdigit() and int(day) < today - 1:
            query(f"DROP TABLE IF EXISTS `{database}`.`{name}`")


def _own_node(node_end: str, pod_end: str) -> str:
    """``node_end`` is the address of the node ``pod_end``'s pod runs on (always allowed)."""
    return and_(
        [
            f"{node_end}_pod = ''",
            f"{node_end}_namespace = ''",
            f"{node_end}_node != ''",
            f"{pod_end}_pod != ''",
            f"{node_end}_node = {pod_end}_node",
        ]
    )


def _name_only(sel: Selector, end: str) -> str:
    """``sel`` over a namespace whose only label is ``kubernetes.io/metadata.name``, in SQL."""
    ns = f"{end}_namespace"
    parts = [f"{ns} = {quote(v)}" if k == NAME_LABEL else FALSE for k, v in sel.labels]
    for key, op, values in sel.expressions:
        if key != NAME_LABEL:
            parts.append(TRUE if op in ("NotIn", "DoesNotExist") else FALSE)
        elif op in ("In", "NotIn"):
            inside = f"{ns} IN ({', '.join(map(quote, values))})"
            parts.append(inside if op == "In" else not_(inside))
        else:
            parts.append(TRUE if op == "Exists" else FALSE)
    return and_(parts)


def _transform(key: str, mapping: dict, default: str) -> str:
    """SQL: ``mapping[key]`` (string or integer keys, UInt32 values), else ``default``.

    One literal array each: cheap to parse, and ClickHouse looks them up in a hash table.
    """
    if not mapping:
        return default
    if all(isinstance(k, int) for k in mapping):
        keys = f"CAST([{', '.join(map(str, mapping))}] AS Array(UInt64))"
    else:
        keys = f"[{', '.join(map(quote, mapping))}]"
    values = ", ".join(map(str, mapping.values()))
    return f"transform({key}, {keys}, CAST([{values}] AS Array(UInt32)), {default})"


def _key(klass: int, code: int, spec: int) -> int:
    """One allowed (class, peer code, port clause) as a number (SQL builds the same)."""
    return (klass << 40) + (code << 16) + spec
