"""Each attack the issue found, against the real endpoint over a real embedded store (chdb).

Before the auth work every one of these succeeded: /query ran any SQL from anyone, a browser page
could POST to it, a rebound DNS name reached it.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
from pathlib import Path

import pyarrow as pa
import pytest

from netobs.audit import AUDIT, verify
from netobs.auth import Authenticator, hash_token
from netobs.config import ChdbStoreConfig, ControlAuthConfig, ControlConfig, PrincipalConfig, StoreConfig
from netobs.control import SQL_TYPE, ControlServer, RemoteError, remote_query
from netobs.queryservice import QueryService
from netobs.store import make_store
from netobs_app.runtime import Runtime

pytestmark = pytest.mark.slow

TOKENS = {"viewer": "nbt_viewer-secret", "operator": "nbt_operator-secret", "admin": "nbt_admin-secret"}
TENANT_A = "nbt_tenant-a-secret"
EXPIRED = "nbt_expired-secret"


def principals() -> tuple[PrincipalConfig, ...]:
    out = [PrincipalConfig(name=r, role=r, token_sha256=hash_token(t)) for r, t in TOKENS.items()]
    out.append(
        PrincipalConfig(name="tenant-a", role="viewer", tenants=("A",), token_sha256=hash_token(TENANT_A))
    )
    out.append(
        PrincipalConfig(
            name="old",
            role="viewer",
            token_sha256=hash_token(EXPIRED),
            expires=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        )
    )
    return tuple(out)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    """A runtime-like endpoint: real store, query service with audit, the auth gate."""
    from netobs.audit import AUDIT_TABLE, AuditLog

    path = tmp_path_factory.mktemp("sec") / "chdb"
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=path)))
    store.start()
    for stmt in AUDIT_TABLE.create("netobs", retention_days=30):
        store.execute(stmt)
    store.execute(
        "INSERT INTO netobs.flows (time_received, src_tenant, dst_tenant, bytes) "
        "SELECT now64(3), t.1, t.2, t.3 FROM (SELECT arrayJoin([('A', 'B', 1), ('C', 'D', 10), ('C', 'A', 100)]) AS t)"
    )
    auth = ControlAuthConfig(principals=principals(), anonymous_role="none")
    config = ControlConfig(listen="127.0.0.1:0", auth=auth)
    audit = AuditLog(lambda t, target: store.insert(t, target=target), store.query_arrow, "netobs")
    audit.start()
    service = QueryService(store, "netobs", auth, audit)
    server = ControlServer(config, [service.route()], authenticator=Authenticator(auth))
    server.start()
    yield server, store
    server.stop()
    store.stop()


def post(server, body: str, headers: dict[str, str]) -> tuple[int, bytes]:
    host, port = server.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/query", body=body.encode(), headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def as_role(server, sql: str, token: str) -> tuple[int, bytes]:
    return post(server, sql, {"Content-Type": SQL_TYPE, "Authorization": f"Bearer {token}"})


def rows(body: bytes) -> list[dict]:
    return pa.ipc.open_stream(body).read_all().to_pylist()


# ---- file(), url(), remote(): reads and writes of the host --------------------------------
HOST_READS = [
    "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "SELECT file('/etc/hostname')",  # the scalar function: readonly=1 does NOT stop it (see below)
    "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
    "SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT * FROM netobs.flows WHERE src_tenant IN (SELECT * FROM file('/etc/hostname', 'LineAsString'))",
    "SELECT * FROM s3('http://127.0.0.1:9/x', 'CSV')",
    "SELECT * FROM system.tables",
    "SELECT * FROM netobs.query_audit",
    "SELECT 1 WHERE 1 IN system.one",
]
HOST_WRITES = [
    "INSERT INTO FUNCTION file('/tmp/netobs-pwned.csv', 'CSV', 'a UInt8') SELECT 1",
    "SELECT 1 INTO OUTFILE '/tmp/netobs-pwned.csv'",  # readonly=1 does NOT stop it either
]
DDL_DML = [
    "CREATE TABLE netobs.pwn (a UInt8) ENGINE = Memory",
    "DROP TABLE netobs.flows",
    "INSERT INTO netobs.flows (bytes) SELECT 1",
    "ALTER TABLE netobs.flows DELETE WHERE 1",
    "TRUNCATE TABLE netobs.flows",
    "SELECT 1; DROP TABLE netobs.flows",
    "SYSTEM SHUTDOWN",
    "SET readonly = 0",
    "SELECT 1 SETTINGS readonly = 0",
    "GRANT ALL ON *.* TO default",
]


@pytest.mark.parametrize("sql", HOST_READS + HOST_WRITES + DDL_DML)
def test_viewer_cannot_leave_its_grant(endpoint, sql, tmp_path):
    server, store = endpoint
    status, body = as_role(server, sql, TOKENS["viewer"])
    assert status == 403, body
    assert not Path("/tmp/netobs-pwned.csv").exists()
    assert store.query_arrow("SELECT count() AS n FROM netobs.flows").column("n").to_pylist() == [3]


@pytest.mark.parametrize(
    "sql", HOST_READS[:6] + HOST_WRITES + ["SYSTEM SHUTDOWN", "DROP TABLE system.query_log"]
)
def test_operator_cannot_reach_the_host(endpoint, sql):
    server, _ = endpoint
    status, body = as_role(server, sql, TOKENS["operator"])
    assert status == 403, body
    assert not Path("/tmp/netobs-pwned.csv").exists()


def test_operator_engine_that_reaches_files_refused(endpoint):
    server, _ = endpoint
    sql = "CREATE TABLE netobs.pwn (a UInt8) ENGINE = File(CSV)"
    assert as_role(server, sql, TOKENS["operator"])[0] == 403


def test_engine_layer_alone_misses_outfile_and_scalar_file(endpoint, tmp_path):
    """Why the parse is needed: readonly=1 on the engine lets these through."""
    _, store = endpoint
    out = tmp_path / "leak.csv"
    store.query_arrow(f"SELECT 1 INTO OUTFILE '{out}' FORMAT CSV", {"readonly": 1})
    assert out.exists()
    leaked = store.query_arrow("SELECT file('/etc/hostname') AS f", {"readonly": 1}).column("f").to_pylist()
    assert leaked == [Path("/etc/hostname").read_text()]


def test_parse_layer_alone_is_backed_by_the_engine(endpoint):
    """Why the engine settings are needed: a statement the guard let through still cannot write."""
    _, store = endpoint
    with pytest.raises(Exception, match="readonly"):
        store.query_arrow("INSERT INTO netobs.flows (bytes) SELECT 1", {"readonly": 1})


def test_viewer_reads_and_admin_may_do_anything(endpoint):
    server, store = endpoint
    status, body = as_role(server, "SELECT sum(bytes) AS b FROM netobs.flows", TOKENS["viewer"])
    assert status == 200 and rows(body) == [{"b": 111}]
    status, body = as_role(server, "CREATE TABLE netobs.scratch (a UInt8) ENGINE = Memory", TOKENS["admin"])
    assert status == 200, body
    store.execute("DROP TABLE netobs.scratch")


# ---- CTE names: the engine resolves a CTE's own name inside its body to a real table ----------
def test_cte_names_only_where_the_engine_means_the_cte(endpoint):
    """``WITH t AS (SELECT * FROM t)`` reads table ``t`` of the session's database on the engine
    (found by the fuzz, seed 1351593330); the guard counts a CTE name only where it is visible."""
    server, store = endpoint
    store.execute("CREATE TABLE IF NOT EXISTS default.leak (x UInt8) ENGINE = Memory")
    store.execute("INSERT INTO default.leak VALUES (42)")
    try:
        # the hole is real on the engine: the self-reference reads default.leak
        got = store.query_arrow("WITH leak AS (SELECT * FROM leak) SELECT sum(x) AS s FROM leak")
        assert got.column("s").to_pylist() == [42]
        for sql in (
            "WITH leak AS (SELECT * FROM leak) SELECT sum(x) AS s FROM leak",
            "WITH a AS (SELECT * FROM leak), leak AS (SELECT 1 AS x) SELECT * FROM a",
            "WITH leak AS (SELECT 1 AS x) SELECT 2 AS x UNION ALL SELECT x FROM leak",
        ):
            status, body = as_role(server, sql, TOKENS["viewer"])
            assert status == 403, (sql, body)
            status, body = as_role(server, sql, TENANT_A)
            assert status == 403, (sql, body)
        for sql, want in (
            (
                "WITH a AS (SELECT bytes FROM netobs.flows), b AS (SELECT * FROM a) SELECT sum(bytes) AS s FROM b",
                111,
            ),
            ("WITH a AS (SELECT bytes FROM netobs.flows) SELECT sum(bytes) AS s FROM (SELECT * FROM a)", 111),
            (
                "WITH a AS (SELECT bytes FROM netobs.flows) SELECT sum(bytes) AS s FROM a UNION ALL SELECT 0",
                111,
            ),
        ):
            status, body = as_role(server, sql, TOKENS["viewer"])
            assert status == 200, (sql, body)
            assert max(r["s"] for r in rows(body)) == want
    finally:
        store.execute("DROP TABLE IF EXISTS default.leak")


# ---- tenants ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT sum(bytes) AS b FROM netobs.flows",
        "SELECT sum(f.bytes) AS b FROM netobs.flows AS f JOIN netobs.flows AS g ON f.bytes = g.bytes",
        "WITH x AS (SELECT bytes FROM netobs.flows) SELECT sum(bytes) AS b FROM x",
        "SELECT sum(bytes) AS b FROM (SELECT * FROM netobs.flows WHERE src_tenant = 'C')",
        "SELECT sum(bytes) AS b FROM netobs.flows WHERE src_tenant = 'C' OR 1 = 1",
    ],
)
def test_tenant_sees_only_flows_with_its_end(endpoint, sql):
    server, _ = endpoint
    status, body = as_role(server, sql, TENANT_A)
    assert status == 200, body
    got = rows(body)[0]["b"]
    assert got in (101, 100)  # A-B and C-A; the C-only subquery keeps C-A only
    assert got != 111 and got != 110


def test_tenant_refused_tables_without_tenant_columns(endpoint):
    server, _ = endpoint
    assert as_role(server, "SELECT count() FROM netobs.interface_counters", TENANT_A)[0] == 403


# ---- the browser: cross-site POST, DNS rebinding ------------------------------------------
def test_cross_site_simple_post_refused(endpoint):
    server, _ = endpoint
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        status, _ = post(
            server, "SELECT 1", {"Content-Type": ctype, "Authorization": f"Bearer {TOKENS['admin']}"}
        )
        assert status == 415
    status, _ = post(
        server,
        "SELECT 1",
        {
            "Content-Type": SQL_TYPE,
            "Origin": "https://evil.example",
            "Authorization": f"Bearer {TOKENS['admin']}",
        },
    )
    assert status == 403


@pytest.mark.parametrize("host", ["evil.example", "evil.example:9464", "attacker.test.", "127.0.0.1.nip.io"])
def test_dns_rebinding_host_refused(endpoint, host):
    server, _ = endpoint
    status, body = post(
        server,
        "SELECT 1",
        {"Content-Type": SQL_TYPE, "Host": host, "Authorization": f"Bearer {TOKENS['admin']}"},
    )
    assert status == 403 and b"Host" in body


# ---- tokens -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "auth, status",
    [
        (None, 401),
        ("Bearer nbt_wrong", 401),
        (f"Bearer {EXPIRED}", 401),
        (f"Basic {TOKENS['admin']}", 401),
        (f"Bearer {hash_token(TOKENS['admin'])}", 401),  # the stored hash is not a credential
    ],
)
def test_missing_wrong_expired_token_refused(endpoint, auth, status):
    server, _ = endpoint
    headers = {"Content-Type": SQL_TYPE} | ({"Authorization": auth} if auth else {})
    assert post(server, "SELECT 1", headers)[0] == status


def test_cli_client_sends_the_token(endpoint, monkeypatch):
    server, _ = endpoint
    cfg = ControlConfig(listen=server.address)
    with pytest.raises(RemoteError) as e:
        remote_query(cfg, "SELECT 1")
    assert e.value.status == 401
    monkeypatch.setenv("NETOBS_TOKEN", TOKENS["viewer"])
    assert remote_query(cfg, "SELECT sum(bytes) AS b FROM netobs.flows").column("b").to_pylist() == [111]


# ---- the audit log ------------------------------------------------------------------------
def test_audit_chain_records_every_request_and_detects_tampering(endpoint):
    server, store = endpoint
    as_role(server, "SELECT 42", TOKENS["viewer"])
    as_role(server, "DROP TABLE netobs.flows", TOKENS["viewer"])
    log = store.query_arrow(f"SELECT * FROM netobs.{AUDIT} ORDER BY seq").to_pylist()
    assert len(log) >= 2 and verify(log) == []
    last = log[-2:]
    assert [r["outcome"] for r in last] == ["ok", "refused"] and last[1]["principal"] == "viewer"
    assert last[0]["sql"] == "SELECT 42" and last[0]["rows"] == 1
    forged = [dict(r) for r in log]
    forged[0]["sql"] = "SELECT 'nothing to see'"
    assert verify(forged)[0] == forged[0]["seq"]
    dropped = log[:1] + log[2:]
    assert verify(dropped) != []


# ---- exposure -----------------------------------------------------------------------------
def test_non_loopback_listen_refused_without_tls_and_auth():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not a loopback address"):
        ControlConfig(listen="0.0.0.0:9464")
    with pytest.raises(ValidationError, match="host:port"):
        ControlConfig(listen="foo")


def test_health_routes_public_but_host_checked(tmp_path):
    s = ControlServer("127.0.0.1:0")
    from netobs.control import health_routes

    for r in health_routes(lambda: {"status": "degraded", "reasons": {"socket_drops": "x"}}):
        s.add_route(r)
    s.start()
    try:
        host, port = s.address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/health")
        h = json.loads(conn.getresponse().read())
        assert h["status"] == "degraded"
        conn.request("GET", "/readyz", headers={"Host": "evil.example"})
        assert conn.getresponse().status == 403
    finally:
        s.stop()


def test_runtime_refuses_an_unreadable_principals_file(tmp_path):
    from netobs.config import ConfigError
    from netobs_app.settings import Settings

    s = Settings(control={"auth": {"principals_file": str(tmp_path / "missing.yaml")}})
    with pytest.raises(ConfigError, match="cannot read"):
        Runtime(s, collect=False, process=False).start()
