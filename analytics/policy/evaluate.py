"""Evaluate a policy inside ClickHouse: one scan of the flows for up to 512 rules, into ``violations``.

Each flow row gets 64-bit masks of the rules it violates (one bit per rule condition, one
mask per 64 rules); rows with a violation are exploded per rule and aggregated twice: by
5-tuple (for evidence), then by rule × window × endpoint entities (the violation; entities
are grouped by one 64-bit hash). Bytes and packets are scaled by the sampling rate here.
A violation id hashes (rule, window, entities), so re-evaluating a window replaces its rows
(delete of the policy's windows, then insert; ReplacingMergeTree on the id as a net).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analytics.policy.model import Policy
from analytics.policy.rules import rule_condition
from analytics.policy.sql import DEDUP, quote, ts

VIOLATIONS = "violations"
EVIDENCE = "violation_evidence"
MASK_BITS = 64
CHUNK = 512  # rules per scan: one query reads the flows once for all of them
ENTITY = ("tenant", "namespace", "workload", "zone", "center", "site", "ip")
ENTITY_COLUMNS = tuple(f"{end}_{a}" for end in ("src", "dst") for a in ENTITY)
_EVIDENCE_TYPE = (
    "Array(Tuple(src_addr String, dst_addr String, src_port UInt16, dst_port UInt16, proto UInt8, "
    "bytes UInt64, packets UInt64, flows UInt64, first_seen DateTime64(3, 'UTC')))"
)


def create_violations(database: str) -> list[str]:
    """DDL of the violations table and its evidence view (modern dialect)."""
    entities = ",\n".join(f"    `{c}` LowCardinality(String)" for c in ENTITY_COLUMNS)
    return [
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{VIOLATIONS}` (\n"
        "    `id` String, `policy` LowCardinality(String), `rule` LowCardinality(String),\n"
        "    `rule_type` LowCardinality(String), `severity` LowCardinality(String),\n"
        "    `owner` String, `regulations` Array(String),\n"
        "    `window_start` DateTime64(3, 'UTC'), `window_end` DateTime64(3, 'UTC'),\n"
        f"{entities},\n"
        "    `bytes` UInt64, `packets` UInt64, `flows` UInt64,\n"
        "    `first_seen` DateTime64(3, 'UTC'), `last_seen` DateTime64(3, 'UTC'),\n"
        f"    `evidence` {_EVIDENCE_TYPE},\n"
        "    `version` UInt64\n"
        ")\nENGINE = ReplacingMergeTree(version)\nPARTITION BY toYYYYMM(window_start)\n"
        "ORDER BY (window_start, policy, rule, id)",
        f"CREATE VIEW IF NOT EXISTS `{database}`.`{EVIDENCE}` AS SELECT id, policy, rule, window_start, "
        f"e.src_addr AS src_addr, e.dst_addr AS dst_addr, e.src_port AS src_port, e.dst_port AS dst_port, "
        f"e.proto AS proto, e.bytes AS bytes, e.packets AS packets, e.flows AS flows, "
        f"e.first_seen AS first_seen FROM `{database}`.`{VIOLATIONS}` FINAL ARRAY JOIN evidence AS e",
    ]


def _ip(col: str) -> str:
    """Text of an address, dotted quad for IPv4-mapped ones."""
    return f"replaceRegexpOne(IPv6NumToString({col}), '^::ffff:([0-9.]+)$', '\\\\1')"


def _unnamed(end: str) -> str:
    return f"{end}_namespace = '' AND {end}_workload = ''"


def _entity_exprs() -> list[str]:
    """Expressions of ENTITY_COLUMNS: the naming columns, and the address of an unnamed end."""
    out = []
    for end in ("src", "dst"):
        out += [f"{end}_{a}" for a in ENTITY[:-1]]
        out.append(f"if({_unnamed(end)}, {_ip(f'{end}_addr')}, '')")
    return out


def _entity_hash() -> str:
    """One 64-bit key for both ends' entities (the address only counts for unnamed ends)."""
    cols = []
    for end in ("src", "dst"):
        cols += [f"{end}_{a}" for a in ENTITY[:-1]]
        cols.append(f"if({_unnamed(end)}, {end}_addr, toIPv6('::'))")
    return f"cityHash64({', '.join(cols)})"


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
    seen_start = "if(toUnixTimestamp64Milli(flow_start) > 0, flow_start, time_received)"
    seen_end = "if(toUnixTimestamp64Milli(flow_end) > 0, flow_end, time_received)"
    tuple5 = "src_addr, dst_addr, src_port, dst_port, proto"
    # Entities are grouped by one hash of their columns (cheap numeric keys); their values ride along.
    entity_any = ", ".join(f"any({e}) AS e_{c}" for e, c in zip(_entity_exprs(), ENTITY_COLUMNS, strict=True))
    inner = (
        f"SELECT rule_idx, window_start, ek, {tuple5}, {entity_any},\n"
        f"  sum(bytes * {scale}) AS b, sum(packets * {scale}) AS p, count() AS n,\n"
        f"  min({seen_start}) AS fs, max({seen_end}) AS ls\n"
        f"FROM (\n  SELECT *, {masks},\n"
        f"    toDateTime64(toStartOfInterval(time_received, INTERVAL {int(window_s)} SECOND), 3, 'UTC')"
        f" AS window_start,\n    {_entity_hash()} AS ek\n"
        f"  FROM `{database}`.`{table}`\n"
        f"  WHERE time_received >= {ts(start)} AND time_received < {ts(end)} AND {DEDUP} AND ({any_hit})\n"
        f")\nARRAY JOIN {rule_positions} AS rule_idx\n"
        f"GROUP BY rule_idx, window_start, ek, {tuple5}"
    )
    entity_keys = ", ".join(f"any(e_{c}) AS {c}" for c in ENTITY_COLUMNS)
    key = ", '|', ".join(["rule", "toString(window_start)", f"'{int(window_s)}'", *ENTITY_COLUMNS])
    ev = (
        f"CAST(arrayMap(x -> ({_ip('x.2')}, {_ip('x.3')}, x.4, x.5, x.6, toUInt64(-x.1), x.7, x.8, x.9),\n"
        f"    groupArraySorted({int(evidence)})((-toInt64(b), src_addr, dst_addr, src_port, dst_port, proto,"
        f" p, n, fs))) AS {_EVIDENCE_TYPE})"
    )
    pick = lambda attr: _pick([getattr(r, attr) for r in rules])  # noqa: E731
    regs = "[" + ", ".join(_array_literal(r.regulations) for r in rules) + "]"
    return (
        f"SELECT lower(hex(substring(SHA256(concat({key})), 1, 12))) AS id, {quote(policy.name)} AS policy,\n"
        f"  {pick('id')} AS rule, {pick('type')} AS rule_type, {pick('severity')} AS severity,\n"
        f"  {pick('owner')} AS owner,\n"
        f"  arrayElement(CAST({regs} AS Array(Array(String))), rule_idx + 1) AS regulations,\n"
        f"  window_start, window_start + INTERVAL {int(window_s)} SECOND AS window_end, {entity_keys},\n"
        f"  sum(b) AS bytes, sum(p) AS packets, sum(n) AS flows, min(fs) AS first_seen, max(ls) AS last_seen,\n"
        f"  {ev} AS evidence, toUInt64({int(version)}) AS version\n"
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


def evaluate(
    store, policy: Policy, start: datetime, end: datetime, *, window_s: int = 3600, evidence: int = 5
) -> tuple[datetime, datetime]:
    """Evaluate the policy over whole windows covering [start, end) into the violations table.

    The windows' previous rows of this policy are deleted first, so a re-evaluation updates
    (including violations that disappeared, e.g. after a new exemption) instead of duplicating.
    """
    db = store.database
    for stmt in create_violations(db):
        store.execute(stmt)
    start, end = align(start, end, window_s)
    store.execute(
        f"DELETE FROM `{db}`.`{VIOLATIONS}` WHERE policy = {quote(policy.name)} "
        f"AND window_start >= {ts(start)} AND window_start < {ts(end)}"
    )
    version = int(datetime.now(UTC).timestamp() * 1000)
    for rules in chunks(policy):
        select = violations_select(
            policy, rules, start, end, window_s=window_s, database=db, evidence=evidence, version=version
        )
        store.execute(f"INSERT INTO `{db}`.`{VIOLATIONS}` {select}")
    return start, end


def window_of(t: datetime, window_s: int) -> datetime:
    return datetime.fromtimestamp(int(t.timestamp()) // window_s * window_s, UTC)


def last_window(now: datetime, window_s: int) -> tuple[datetime, datetime]:
    end = window_of(now, window_s)
    return end - timedelta(seconds=window_s), end
