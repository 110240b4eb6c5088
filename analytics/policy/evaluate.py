"""Evaluate a policy inside ClickHouse: one scan of the flows for up to 512 rules, into ``violations``.

Flows are counted once (:data:`netobs.counting.COUNTED`) and turned client → server
(:func:`netobs.counting.oriented`). Each flow row gets 64-bit masks of the rules it violates
(one bit per rule condition, one mask per 64 rules); rows with a violation are exploded per
rule and aggregated twice: by 5-tuple (the sample flows), then by rule × window ×
conversation (client address, server address, server port, protocol: one 64-bit hash). Each
violation row names both ends (tenant, namespace, workload, pod, zone, center, site, address),
says why the rule matched and which of the rule's exemptions matched the conversation but
were not in force at the flow's time. Bytes and packets are scaled by the sampling rate here.

Re-evaluating a window is idempotent without DELETE (so it works the same on one server and
on a cluster of ReplicatedReplacingMergeTree shards behind a Distributed table): a violation
id hashes (rule, window, entities); an evaluation inserts its rows with version ``2t+1`` and
then a tombstone (``deleted = 1``) with version ``2t`` for every id of the policy's windows
whose newest row is older and still live. Reads take the newest row per id (``FINAL``) and
drop tombstones. A tombstone written before the new rows arrive (asynchronous Distributed
inserts) loses to them, its version being lower; a crash between the two steps leaves each
id either old or new, and the next evaluation completes it.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from analytics.policy.conformance import resolve
from analytics.policy.model import Policy
from analytics.policy.rules import exemption_note, rule_condition, rule_detail
from analytics.policy.sql import DEDUP, quote, ts
from netobs import counting
from netobs.tables import Column, Table, View

log = logging.getLogger(__name__)
VIOLATIONS = "violations"
EVIDENCE = "violation_evidence"
MASK_BITS = 64
CHUNK = 512  # rules per scan: one query reads the flows once for all of them
ENTITY = ("tenant", "namespace", "workload", "pod", "node", "subnet", "vpc", "zone", "center", "site", "ip")
ENTITY_COLUMNS = tuple(f"{end}_{a}" for end in ("src", "dst") for a in ENTITY)
_EVIDENCE_TYPE = (
    "Array(Tuple(src_addr String, dst_addr String, src_port UInt16, dst_port UInt16, proto UInt8, "
    "bytes UInt64, packets UInt64, flows UInt64, first_seen DateTime64(3, 'UTC'), detail String))"
)
_TS = "DateTime64(3, 'UTC')"
#: The violations table, in order: the INSERT ... SELECT is positional.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "String"),
    ("policy", "LowCardinality(String)"),
    ("rule", "LowCardinality(String)"),
    ("rule_type", "LowCardinality(String)"),
    ("severity", "LowCardinality(String)"),
    ("owner", "String"),
    ("regulations", "Array(String)"),
    ("window_start", _TS),
    ("window_end", _TS),
    *((c, "String" if c.endswith(("_pod", "_ip")) else "LowCardinality(String)") for c in ENTITY_COLUMNS),
    ("port", "UInt16"),
    ("proto", "UInt8"),
    ("client_ports", "UInt32"),
    ("why", "String"),
    ("exemptions", "String"),
    ("bytes", "UInt64"),
    ("packets", "UInt64"),
    ("flows", "UInt64"),
    ("first_seen", _TS),
    ("last_seen", _TS),
    ("evidence", _EVIDENCE_TYPE),
    ("version", "UInt64"),
    ("deleted", "UInt8"),
)
#: Sharded by (policy, id) so that every version of a violation lands on one shard and
#: ``FINAL`` sees them together.
VIOLATIONS_TABLE = Table(
    VIOLATIONS,
    tuple(Column(name, typ) for name, typ in COLUMNS),
    order_by=("window_start", "policy", "rule", "id"),
    version="version",
    partition_by="toYYYYMM(window_start)",
    shard_by="cityHash64(policy, id)",
)


class ViolationsSchemaError(RuntimeError):
    """The live violations table differs from the one this version writes."""


#: The evidence of the live violations, one row per flow.
EVIDENCE_VIEW = View(
    EVIDENCE,
    "SELECT id, policy, rule, window_start, "
    "e.src_addr AS src_addr, e.dst_addr AS dst_addr, e.src_port AS src_port, e.dst_port AS dst_port, "
    "e.proto AS proto, e.bytes AS bytes, e.packets AS packets, e.flows AS flows, "
    f"e.first_seen AS first_seen, e.detail AS detail FROM {{db}}.`{VIOLATIONS}` FINAL "
    "ARRAY JOIN evidence AS e WHERE deleted = 0",
)


def create_violations(database: str, cluster: str | None = None) -> list[str]:
    """DDL of the violations table(s) and the evidence view (modern dialect).

    Single node: a ReplacingMergeTree. Cluster: ReplicatedReplacingMergeTree ``violations_local``
    tables ON CLUSTER and a Distributed ``violations`` over them (see :data:`VIOLATIONS_TABLE`).
    """
    return [
        *VIOLATIONS_TABLE.create(database, cluster=cluster),
        *EVIDENCE_VIEW.create(database, cluster=cluster),
    ]


def live(database: str, where: str) -> str:
    """The live violations (newest row per id, tombstones dropped) among those ``where`` selects.

    ``where`` may only use sorting-key columns (policy, window_start, rule, id): they are the
    same in every version of a row, so filtering before FINAL is safe.
    """
    return f"(SELECT * FROM `{database}`.`{VIOLATIONS}` FINAL WHERE {where}) WHERE deleted = 0"


def _check_live_table(store, database: str) -> None:
    """Refuse to write into a violations table of another shape (an older netobs)."""
    t = store.query_arrow(
        f"SELECT name, type FROM system.columns WHERE database = {quote(database)} "
        f"AND table = {quote(VIOLATIONS)} ORDER BY position"
    )
    have = [
        (n, "".join(ty.split()))
        for n, ty in zip(t.column("name").to_pylist(), t.column("type").to_pylist(), strict=True)
    ]
    want = [(n, "".join(ty.split())) for n, ty in COLUMNS]
    if have != want:
        raise ViolationsSchemaError(
            f"{database}.{VIOLATIONS} was created by another netobs version (columns differ). It holds "
            "derived data: rename or drop it and the violation_evidence view, then evaluate the windows again."
        )


def _ip(col: str) -> str:
    """Text of an address, dotted quad for IPv4-mapped ones."""
    return f"replaceRegexpOne(IPv6NumToString({col}), '^::ffff:([0-9.]+)$', '\\\\1')"


def _entity_exprs() -> list[str]:
    """Expressions of ENTITY_COLUMNS: the naming columns and the address of each end."""
    out = []
    for end in ("src", "dst"):
        out += [f"{end}_{a}" for a in ENTITY[:-1]]
        out.append(f"{end}_addr")  # turned into text once per violation (outer query)
    return out


#: One 64-bit key per conversation: client, server, server port, protocol (rows are oriented).
CONVERSATION = "cityHash64(src_addr, dst_addr, dst_port, proto)"


def _mask(conditions: list[str]) -> str:
    return " + ".join(f"if({c}, toUInt64({1 << i}), toUInt64(0))" for i, c in enumerate(conditions))


def _array_literal(values) -> str:
    return "[" + ", ".join(quote(v) for v in values) + "]"


def _pick(values: list[str]) -> str:
    """The value for the row's rule, from a literal array indexed by rule_idx (0-based)."""
    return f"arrayElement({_array_literal(values)}, rule_idx + 1)"


def violations_select(
    policy: Policy,
    rules: list,
    start: datetime,
    end: datetime,
    *,
    window_s: int = 3600,
    database: str = "netobs",
    table: str = "flows",
    evidence: int = 5,
    version: int = 0,
) -> str:
    """SELECT producing the violation rows of up to 512 ``rules`` over windows in [start, end)."""
    assert 0 < len(rules) <= CHUNK
    conditions = [rule_condition(policy, r) for r in rules]
    groups = [conditions[i : i + MASK_BITS] for i in range(0, len(conditions), MASK_BITS)]
    masks = ", ".join(f"{_mask(g)} AS m{k}" for k, g in enumerate(groups))
    any_hit = " OR ".join(f"m{k} != 0" for k in range(len(groups)))
    positions = [f"arrayMap(x -> x + {k * MASK_BITS}, bitPositionsToArray(m{k}))" for k in range(len(groups))]
    positions[0] = "bitPositionsToArray(m0)"
    rule_positions = positions[0] if len(positions) == 1 else f"arrayConcat({', '.join(positions)})"
    scale = "greatest(sampling_rate, 1)"
    seen_start, seen_end = "event_start", "event_end"
    tuple5 = "src_addr, dst_addr, src_port, dst_port, proto"
    scope = f"{counting.in_event_range(ts(start), ts(end))} AND {DEDUP}"
    details = [(i, rule_detail(policy, r)) for i, r in enumerate(rules)]
    arms = [f"rule_idx = {i}, {d}" for i, d in details if d is not None]
    detail = f"multiIf({', '.join(arms)}, '')" if arms else "''"
    notes = [(i, exemption_note(policy, r)) for i, r in enumerate(rules)]
    note_arms = [f"rule_idx = {i}, {x}" for i, x in notes if x is not None]
    note = f"multiIf({', '.join(note_arms)}, '')" if note_arms else "''"
    # Entities are grouped by one hash of their columns (cheap numeric keys); their values ride along.
    entity_any = ", ".join(f"any({e}) AS e_{c}" for e, c in zip(_entity_exprs(), ENTITY_COLUMNS, strict=True))
    inner = (
        f"SELECT rule_idx, window_start, ek, src_addr, dst_addr, src_port, dst_port, proto AS p5, {entity_any},\n"
        f"  sum(bytes * {scale}) AS b, sum(packets * {scale}) AS p, count() AS n,\n"
        f"  min({seen_start}) AS fs, max({seen_end}) AS ls, any({detail}) AS d{', any(' + note + ') AS x' if note_arms else ''}\n"
        f"FROM (\n  SELECT *, {masks},\n"
        f"    toDateTime64(toStartOfInterval(event_end, INTERVAL {int(window_s)} SECOND), 3, 'UTC')"
        f" AS window_start,\n    {CONVERSATION} AS ek\n"
        # Conversations turned client → server: rules judge who opens, replies are not requests.
        f"  FROM {counting.oriented(f'`{database}`.`{table}`', scope)}\n"
        f"  WHERE {any_hit}\n"
        f")\nARRAY JOIN {rule_positions} AS rule_idx\n"
        f"GROUP BY rule_idx, window_start, ek, {tuple5}"
    )
    entity_keys = ", ".join(
        f"{_ip(f'any(e_{c})')} AS {c}" if c.endswith("_ip") else f"any(e_{c}) AS {c}" for c in ENTITY_COLUMNS
    )
    key = ", '|', ".join(
        [
            "rule",
            "toString(window_start)",
            f"'{int(window_s)}'",
            "src_ip",
            "dst_ip",
            "toString(port)",
            "toString(proto)",
        ]
    )
    ev = (
        f"CAST(arrayMap(x -> ({_ip('x.2')}, {_ip('x.3')}, x.4, x.5, x.6, toUInt64(-x.1), x.7, x.8, x.9, x.10),\n"
        f"    groupArraySorted({int(evidence)})((-toInt64(b), src_addr, dst_addr, src_port, dst_port, p5,"
        f" p, n, fs, d))) AS {_EVIDENCE_TYPE})"
    )
    why = {r.id: r.explain(policy) for r in rules}
    exemptions = (
        "arrayStringConcat(arrayFilter(v -> v != '', groupUniqArray(x)), '; ')" if note_arms else "''"
    )
    pick = lambda attr: _pick([why[r.id] if attr == "why" else getattr(r, attr) for r in rules])  # noqa: E731
    regs = "[" + ", ".join(_array_literal(r.regulations) for r in rules) + "]"
    return (
        f"SELECT lower(hex(substring(SHA256(concat({key})), 1, 12))) AS id, {quote(policy.name)} AS policy,\n"
        f"  {pick('id')} AS rule, {pick('type')} AS rule_type, {pick('severity')} AS severity,\n"
        f"  {pick('owner')} AS owner,\n"
        f"  arrayElement(CAST({regs} AS Array(Array(String))), rule_idx + 1) AS regulations,\n"
        f"  window_start, window_start + INTERVAL {int(window_s)} SECOND AS window_end, {entity_keys},\n"
        f"  any(dst_port) AS port, any(p5) AS proto, toUInt32(uniqExact(src_port)) AS client_ports, "
        f"{pick('why')} AS why, {exemptions} AS exemptions,\n"
        f"  sum(b) AS bytes, sum(p) AS packets, sum(n) AS flows, min(fs) AS first_seen, max(ls) AS last_seen,\n"
        f"  {ev} AS evidence, toUInt64({int(version)}) AS version, toUInt8(0) AS deleted\n"
        f"FROM (\n{inner}\n)\nGROUP BY rule_idx, window_start, ek"
    )


def align(start: datetime, end: datetime, window_s: int) -> tuple[datetime, datetime]:
    """Widen [start, end) to whole windows (windows are aligned on the epoch)."""
    s = int(start.timestamp()) // window_s * window_s
    e = -(-int(end.timestamp()) // window_s) * window_s
    return datetime.fromtimestamp(s, UTC), datetime.fromtimestamp(max(e, s + window_s), UTC)


#: ClickHouse parses at most max_query_size (256 KiB) of a query: keep each scan's SQL below it.
MAX_CONDITIONS_CHARS = 160_000


def chunks(policy: Policy) -> list[list]:
    """The policy's rules in groups evaluated by one scan each (by count and by SQL size)."""
    out: list[list] = [[]]
    size = 0
    for rule in policy.rules:
        n = len(rule_condition(policy, rule))
        if out[-1] and (len(out[-1]) == CHUNK or size + n > MAX_CONDITIONS_CHARS):
            out.append([])
            size = 0
        out[-1].append(rule)
        size += n
    return [c for c in out if c]


_versions = threading.Lock()
_last_version = [0]


def next_version(now: datetime | None = None) -> int:
    """An odd version above every one this process handed out: 2 × milliseconds + 1."""
    t = int((now or datetime.now(UTC)).timestamp() * 1000)
    with _versions:
        _last_version[0] = max(2 * t + 1, _last_version[0] + 2)
        return _last_version[0]


def cluster_of(store) -> str | None:
    """The ClickHouse cluster the store's tables live on, if any."""
    cfg = getattr(store, "config", None)
    if cfg is None or getattr(cfg, "type", "") != "clickhouse":
        return None
    return cfg.clickhouse.cluster or None


def ensure_violations(store) -> None:
    """Create the violations table(s) and view if missing. A single-node table of another shape
    (an older netobs: derived data) is renamed aside with a warning; on a cluster it is refused."""
    cluster = cluster_of(store)
    *tables, view = create_violations(store.database, cluster)
    for stmt in tables:
        store.execute(stmt)
    try:
        _check_live_table(store, store.database)
    except ViolationsSchemaError:
        if cluster:
            raise
        db, aside = store.database, f"{VIOLATIONS}_before_{datetime.now(UTC):%Y%m%d%H%M%S}"
        store.execute(f"DROP VIEW IF EXISTS `{db}`.`{EVIDENCE}`")
        store.execute(f"RENAME TABLE `{db}`.`{VIOLATIONS}` TO `{db}`.`{aside}`")
        log.warning(
            "%s.%s was written by an older netobs; renamed to %s, windows are evaluated afresh",
            db,
            VIOLATIONS,
            aside,
        )
        for stmt in tables:
            store.execute(stmt)
    store.execute(view)


#: Every violation row of one evaluation has its own id, so the ReplacingMergeTree has nothing
#: to collapse inside one INSERT; by default it still runs its merge over each inserted block
#: (every column copied row by row: about a third of a 500-rule evaluation's CPU, bench_policy).
#: FINAL reads collapse versions whatever the setting.
NO_MERGE_ON_INSERT = "SETTINGS optimize_on_insert = 0 "


def insert_settings(store) -> str:
    """``SETTINGS ...`` for the evaluation's INSERTs where the server knows them (older servers,
    e.g. ClickHouse 18.16, have no ``optimize_on_insert``: '')."""
    t = store.query_arrow("SELECT count() AS n FROM system.settings WHERE name = 'optimize_on_insert'")
    return NO_MERGE_ON_INSERT if t.column("n")[0].as_py() else ""


def tombstones(
    database: str, policy: str, start: datetime, end: datetime, version: int, settings: str = ""
) -> str:
    """INSERT of a tombstone (version - 1) for each live violation of the windows older than ``version``."""
    scope = f"policy = {quote(policy)} AND window_start >= {ts(start)} AND window_start < {ts(end)}"
    # The filter sits in a subquery: in ClickHouse, WHERE would see the REPLACEd version/deleted.
    return (
        f"INSERT INTO `{database}`.`{VIOLATIONS}` {settings}SELECT * REPLACE (toUInt64({version - 1}) AS version, "
        f"toUInt8(1) AS deleted) FROM (SELECT * FROM {live(database, scope)} AND version < {version})"
    )


def evaluate(
    store, policy: Policy, start: datetime, end: datetime, *, window_s: int = 3600, evidence: int = 5
) -> tuple[datetime, datetime]:
    """Evaluate the policy over whole windows covering [start, end) into the violations table.

    New rows first, then tombstones for the windows' violations that this evaluation did not
    find again (e.g. after a new exemption): see the module docstring. No DELETE is needed.
    """
    db = store.database
    ensure_violations(store)
    start, end = align(start, end, window_s)
    policy, _ = resolve(policy, store.query_arrow, db, start, end)
    version = next_version()
    settings = insert_settings(store)
    for rules in chunks(policy):
        select = violations_select(
            policy, rules, start, end, window_s=window_s, database=db, evidence=evidence, version=version
        )
        store.execute(f"INSERT INTO `{db}`.`{VIOLATIONS}` {settings}{select}")
    store.execute(tombstones(db, policy.name, start, end, version, settings))
    return start, end


def window_of(t: datetime, window_s: int) -> datetime:
    return datetime.fromtimestamp(int(t.timestamp()) // window_s * window_s, UTC)


def last_window(now: datetime, window_s: int) -> tuple[datetime, datetime]:
    end = window_of(now, window_s)
    return end - timedelta(seconds=window_s), end
