"""A fuzz of the viewer's SQL surface on the real engine: no statement outside the grant runs.

Statements are generated from pieces of ClickHouse syntax (seed drawn at test time and printed),
run as a viewer through :class:`netobs.queryservice.QueryService` on a real chdb store. For each
one that ran, an oracle independent of the guard's parser — ClickHouse's own ``EXPLAIN AST`` —
must show a plain SELECT naming only netobs tables or CTEs, no table function, no outfile; and
nothing may have changed: the database's tables, the row count, the files in a watched directory.
"""

from __future__ import annotations

import os
import random
import re

import pytest

from netobs.auth import Principal
from netobs.config import ChdbStoreConfig, ControlAuthConfig, StoreConfig
from netobs.queryservice import QueryService
from netobs.sqlguard import Refused
from netobs.store import make_store

pytestmark = pytest.mark.slow
N = int(os.environ.get("NETOBS_FUZZ_STATEMENTS", "3000"))


def pieces(watch: str) -> dict[str, list[str]]:
    f = f"{watch}/out.csv"
    return {
        "source": [
            "netobs.flows",
            "`netobs`.`flows`",
            '"netobs"."flows_1m"',
            "netobs.interface_counters",
            "flows",
            "system.one",
            "system.tables",
            "default.t",
            "netobs.query_audit",
            "c",
            "file('/etc/hostname', 'LineAsString')",
            f"file('{f}', 'CSV', 'a UInt8')",
            "numbers(3)",
            "url('http://127.0.0.1:9/', 'CSV', 'a String')",
            "remote('127.0.0.1', system.one)",
            "merge('netobs', '.*')",
            "cluster('default', system.one)",
            "(SELECT 1 AS x)",
            "(SELECT * FROM file('/etc/passwd', 'LineAsString'))",
            "view(SELECT 1)",
            "input('a UInt8')",
            "executable('id', 'TSV', 'a String')",
            "generateRandom('a UInt8')",
            "netobs.flows AS f FINAL",
        ],
        "expr": [
            "count()",
            "1",
            "*",
            "sum(bytes)",
            "file('/etc/hostname')",
            "hostName()",
            "getSetting('readonly')",
            "dictGet('d', 'a', 1)",
            "joinGet('netobs.t', 'a', 1)",
            "sleep(0.001)",
            "currentDatabase()",
            "(SELECT count() FROM system.tables)",
            "version()",
            "toString(now())",
            "src_tenant",
        ],
        "where": [
            "",
            " WHERE 1",
            " WHERE src_tenant IN (SELECT 'A')",
            " WHERE 1 IN system.one",
            " WHERE bytes > (SELECT count() FROM file('/etc/hostname', 'LineAsString'))",
        ],
        "suffix": [
            "",
            ";",
            " LIMIT 1",
            f" INTO OUTFILE '{f}'",
            " FORMAT CSV",
            " SETTINGS readonly = 0",
            " SETTINGS max_threads = 1",
            "; DROP TABLE netobs.flows",
            " -- comment",
            f"\nINTO OUTFILE '{f}' FORMAT CSV",
            " /* x */",
            " UNION ALL SELECT 1",
        ],
        "statement": [
            "INSERT INTO netobs.flows (bytes) SELECT {expr}",
            f"INSERT INTO FUNCTION file('{f}', 'CSV', 'a UInt8') SELECT 1",
            "CREATE TABLE netobs.pwn ENGINE = Memory AS SELECT {expr}",
            "DROP TABLE IF EXISTS netobs.interface_counters",
            "ALTER TABLE netobs.flows DELETE WHERE 1",
            "TRUNCATE TABLE netobs.flows",
            "SYSTEM DROP DNS CACHE",
            "SET readonly = 0",
            "KILL QUERY WHERE 1",
            "OPTIMIZE TABLE netobs.flows",
            "RENAME TABLE netobs.flows TO netobs.x",
            "CREATE DATABASE pwn",
            "DETACH TABLE netobs.flows",
            "EXCHANGE TABLES netobs.flows AND netobs.flows_1m",
            "SHOW TABLES FROM system",
            "DESCRIBE TABLE file('/etc/hostname', 'LineAsString')",
            "EXPLAIN SELECT 1",
            "WITH c AS (SELECT {expr} FROM {source}) SELECT * FROM c",
        ],
    }


SAFE = {
    "source": [
        "netobs.flows",
        "`netobs`.`flows`",
        '"netobs"."flows_1m"',
        "netobs.interface_counters",
        "(SELECT 1 AS x)",
    ],
    "expr": ["count()", "1", "sum(bytes)", "version()", "toString(now())"],
    "where": ["", " WHERE 1"],
    "suffix": ["", ";", " LIMIT 1", " -- comment", " /* x */"],
}


def pick(rng: random.Random, p: dict[str, list[str]], key: str) -> str:
    """Most of the time a piece inside the grant (``p["safe:<key>"]``), so that many statements run."""
    safe = p.get(f"safe:{key}", SAFE.get(key))
    return rng.choice(safe if safe and rng.random() < 0.6 else p[key])


def generate(rng: random.Random, p: dict[str, list[str]]) -> str:
    if rng.random() < 0.25:
        stmt = rng.choice(p["statement"]).format(expr=pick(rng, p, "expr"), source=pick(rng, p, "source"))
    else:
        stmt = f"SELECT {pick(rng, p, 'expr')} FROM {pick(rng, p, 'source')}{pick(rng, p, 'where')}"
        if rng.random() < 0.2:
            stmt = f"WITH c AS (SELECT * FROM {pick(rng, p, 'source')}) " + stmt
        if rng.random() < 0.15:
            stmt += f" UNION ALL SELECT {pick(rng, p, 'expr')} FROM {pick(rng, p, 'source')}"
    stmt += pick(rng, p, "suffix")
    if rng.random() < 0.2:
        stmt = (
            "".join(ch.upper() if rng.random() < 0.5 else ch.lower() for ch in stmt)
            if "'" not in stmt
            else stmt
        )
    return stmt


def engine_oracle(store, sql: str, allowed: set[str]) -> list[str]:
    """What the engine's own parse says is wrong with a statement that ran as a viewer."""
    ast = store.explain_ast(sql.strip().rstrip(";"))
    lines = [line.split() for line in ast.splitlines() if line.strip()]
    problems = []
    if lines[0][0] != "SelectWithUnionQuery":
        problems.append(f"kind {lines[0][0]}")
    # The AST does not print CTE names: take them from the text (identifiers are case-sensitive).
    ctes = set(re.findall(r"\bWITH\s+(\w+)\s+AS\s*\(", sql, re.I))
    if any(w[0] == "WithElement" for w in lines) and not ctes:
        problems.append("a CTE the oracle cannot name")
    # A CTE's own name inside its body is a table of the session's database on the engine.
    if re.search(r"\bWITH\s+(\w+)\s+AS\s*\([^()]*\bFROM\s+\1\b", sql, re.I):
        problems.append("self-referencing CTE")
    prev = ""
    for w in lines:
        if w[0] == "TableIdentifier":
            name = w[1]
            if name not in ctes and name not in {f"netobs.{t}" for t in allowed}:
                problems.append(f"table {name}")
        if w[0] == "Function" and prev == "TableExpression":
            problems.append(f"table function {w[1]}")
        if w[0] == "Function" and w[1].lower() in (
            "file",
            "url",
            "hostname",
            "getsetting",
            "dictget",
            "joinget",
        ):
            problems.append(f"function {w[1]}")
        prev = w[0]
    if any(
        w[0] == "Literal"
        for w in lines
        if lines.index(w) and ast.splitlines()[lines.index(w)].startswith(" Literal")
    ):
        problems.append("outfile")
    return problems


def test_no_generated_statement_outside_the_viewer_grant_runs(tmp_path):
    seed = int(os.environ.get("NETOBS_FUZZ_SEED") or int.from_bytes(os.urandom(4), "little"))
    print(f"fuzz seed {seed} ({N} statements)")
    rng = random.Random(seed)
    watch = tmp_path / "watch"
    watch.mkdir()
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    store.start()
    store.execute("INSERT INTO netobs.flows (time_received, src_tenant, bytes) SELECT now64(3), 'A', 5")
    try:
        service = QueryService(store, "netobs", ControlAuthConfig())
        viewer = Principal("fuzz", "viewer")
        allowed = set(service.tables()[0]) - {"query_audit"}
        before = store.query_arrow("SELECT name FROM system.tables WHERE database = 'netobs' ORDER BY name")
        p = pieces(str(watch))
        ran, refused, failed = 0, 0, 0
        for _ in range(N):
            sql = generate(rng, p)
            try:
                service.run(viewer, sql)
            except Refused:
                refused += 1
                continue
            except Exception:
                failed += 1  # refused by the engine (readonly) or invalid: nothing ran
                continue
            ran += 1
            problems = engine_oracle(store, sql, allowed)
            assert not problems, f"seed {seed}: {sql!r} ran as a viewer: {problems}"
        after = store.query_arrow("SELECT name FROM system.tables WHERE database = 'netobs' ORDER BY name")
        assert after.equals(before)
        assert store.query_arrow("SELECT count() AS n FROM netobs.flows").column("n").to_pylist() == [1]
        assert list(watch.iterdir()) == []
        print(f"fuzz: {ran} ran, {refused} refused by the guard, {failed} failed on the engine")
        assert ran > N // 20 and refused > N // 4  # the generator exercises both sides
    finally:
        store.stop()
