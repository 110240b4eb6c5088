"""The ClickHouse HTTP interface on main's security layer: Basic with a token, token-only (never
anonymous, no content-type exemption without a token), Host/Origin checks, main's SQL guard and
audit, ClickHouse-shaped answers. The real clients run in tests/dashboards/test_clickhouse_clients.py."""

from __future__ import annotations

import base64
import http.client

import pytest

from netobs import chhttp
from netobs.audit import AUDIT, AUDIT_TABLE, AuditLog
from netobs.auth import Authenticator, AuthError, hash_token
from netobs.config import ChdbStoreConfig, ControlAuthConfig, ControlConfig, PrincipalConfig, StoreConfig
from netobs.control import ControlServer, Route
from netobs.queryservice import QueryService
from netobs.store import make_store

VIEWER = "nbt_chhttp-viewer-secret"
OTHER = "nbt_chhttp-other-secret"


def _basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


@pytest.mark.parametrize(
    ("sql", "body", "fmt"),
    [
        ("SELECT 1", "SELECT 1", None),
        ("  select 1 FORMAT JSONEachRow ;", "select 1", "JSONEachRow"),
        ("SELECT 'FORMAT CSV'", "SELECT 'FORMAT CSV'", None),
        ("SELECT 1 -- FORMAT CSV\n", "SELECT 1 -- FORMAT CSV", None),
        ("SELECT 1\n FORMAT Native", "SELECT 1", "Native"),
        ("SELECT 1;;", "SELECT 1", None),
    ],
)
def test_split_format_takes_only_a_trailing_clause(sql, body, fmt):
    assert chhttp.split_format(sql) == (body, fmt)


def test_hello_states_revision_zero_in_the_clients_block_layout():
    block = chhttp._hello(lambda sql, fmt: b"25.8.1\tUTC\n", 54460, "netobs")
    assert block.startswith(b"\x01\x00\x02\xff\xff\xff\xff\x00\x04\x01")  # block info, 4 columns, 1 row
    assert b"\x09version()\x06String\x00\x0625.8.1" in block
    assert b"\x0arevision()\x06UInt32\x00\x00\x00\x00\x00" in block
    assert chhttp._hello(lambda s, f: b"1\tUTC\n", 0, "n").startswith(b"\x04\x01")
    assert chhttp._is_hello("SELECT displayName(),  version(), revision(), timezone()")


def test_basic_takes_a_token_as_password_only_where_asked():
    cfg = ControlAuthConfig(
        principals=(PrincipalConfig(name="grafana", role="viewer", token_sha256=hash_token(VIEWER)),),
        anonymous_role="operator",
    )
    auth = Authenticator(cfg)
    for user in ("", "default", "grafana"):
        p = auth.authenticate({"authorization": _basic(user, VIEWER)}, None, "10.0.0.1", basic=True)
        assert (p.name, p.role, p.via) == ("grafana", "viewer", "token")
    for headers in (
        {"authorization": _basic("root", VIEWER)},  # names another principal
        {"authorization": _basic("grafana", "nope")},
        {"authorization": _basic("grafana", "")},
        {"authorization": "Basic !!!"},
    ):
        with pytest.raises(AuthError):
            auth.authenticate(headers, None, "10.0.0.1", basic=True)
    with pytest.raises(AuthError):  # Basic is not taken by routes that did not ask for it
        auth.authenticate({"authorization": _basic("", VIEWER)}, None, "10.0.0.1")
    # token_only: the loopback anonymous role and a client certificate are not enough
    assert auth.authenticate({}, None, "127.0.0.1").via == "anonymous"
    with pytest.raises(AuthError):
        auth.authenticate({}, None, "127.0.0.1", token_only=True)
    cert = {"subject": ((("commonName", "grafana"),),)}
    with pytest.raises(AuthError):
        auth.authenticate({}, cert, "127.0.0.1", token_only=True)


def test_a_simple_post_route_must_be_token_only():
    server = ControlServer(ControlConfig(listen="127.0.0.1:0"))
    with pytest.raises(ValueError, match="simple content type"):
        server.add_route(Route("POST", "/x", lambda r: None, role="viewer", content_types=("text/plain",)))  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="needs a role"):
        server.add_route(Route("POST", "/y", lambda r: None, token_only=True))  # type: ignore[arg-type,return-value]


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path_factory.mktemp("chhttp") / "chdb")))
    store.start()
    for stmt in AUDIT_TABLE.create("netobs", retention_days=30):
        store.execute(stmt)
    store.execute(
        "INSERT INTO netobs.flows (time_received, src_tenant, dst_tenant, bytes) "
        "SELECT now64(3), t.1, t.2, t.3 FROM (SELECT arrayJoin([('A', 'B', 1), ('C', 'D', 10)]) AS t)"
    )
    auth = ControlAuthConfig(
        principals=(
            PrincipalConfig(name="grafana", role="viewer", token_sha256=hash_token(VIEWER)),
            PrincipalConfig(name="a", role="viewer", tenants=("A",), token_sha256=hash_token(OTHER)),
        ),
        anonymous_role="operator",  # the default: loopback without a token is an operator elsewhere
    )
    audit = AuditLog(lambda t, target: store.insert(t, target=target), store.query_arrow, "netobs")
    audit.start()
    service = QueryService(store, "netobs", auth, audit)
    server = ControlServer(
        ControlConfig(listen="127.0.0.1:0", auth=auth),
        chhttp.routes(service),
        authenticator=Authenticator(auth),
    )
    server.start()
    yield server, store
    server.stop()
    store.stop()


def call(server, method, path, body=b"", headers=None):
    host, port = server.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read()


@pytest.mark.slow
def test_clickhouse_route_answers_as_clickhouse_for_a_token(endpoint):
    server, store = endpoint
    auth = {"Authorization": _basic("default", VIEWER)}
    assert call(server, "GET", "/clickhouse/ping", headers=auth)[2] == b"Ok.\n"
    status, headers, body = call(
        server, "POST", "/clickhouse/?default_format=CSV", b"SELECT sum(bytes) FROM netobs.flows", auth
    )
    assert (status, body, headers["X-ClickHouse-Format"]) == (200, b"11\n", "CSV")
    bearer = {"Authorization": f"Bearer {VIEWER}", "Content-Type": "text/plain"}
    status, _, body = call(
        server, "POST", "/clickhouse", b"SELECT count() FROM netobs.flows FORMAT TSV", bearer
    )
    assert (status, body) == (200, b"2\n")
    # a tenant-bound viewer gets main's tenant scope here too
    status, _, body = call(
        server,
        "POST",
        "/clickhouse/",
        b"SELECT sum(bytes) FROM netobs.flows",
        {"Authorization": _basic("a", OTHER)},
    )
    assert (status, body) == (200, b"1\n")
    status, headers, body = call(server, "POST", "/clickhouse/", b"SELECT nope FROM netobs.flows", auth)
    assert status == 500 and headers["X-ClickHouse-Exception-Code"] == "47" and body.startswith(b"Code: 47.")


@pytest.mark.slow
@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE netobs.flows",
        "SELECT * FROM file('/etc/passwd')",
        "SELECT file('/etc/passwd')",
        "SELECT 1 INTO OUTFILE '/tmp/x'",
        "SELECT 1; DROP TABLE netobs.flows",
        "SELECT * FROM system.users",
        "SELECT 1 SETTINGS readonly = 0",
    ],
)
def test_main_guard_refuses_outside_the_viewers_grant(endpoint, sql):
    server, store = endpoint
    status, headers, body = call(
        server, "POST", "/clickhouse/", sql.encode(), {"Authorization": _basic("", VIEWER)}
    )
    assert status == 403 and headers["X-ClickHouse-Exception-Code"] == "164", body
    assert store.query_arrow("SELECT count() AS n FROM netobs.flows").column("n")[0].as_py() == 2


@pytest.mark.slow
def test_never_anonymous_and_still_host_and_origin_checked(endpoint):
    server, store = endpoint
    sql = b"SELECT count() FROM netobs.flows"
    # loopback without a token: anonymous is an operator on /query, nothing here; no content type asked
    for method, path in (
        ("POST", "/clickhouse/"),
        ("GET", "/clickhouse/ping"),
        ("GET", "/clickhouse/?query=SELECT+1"),
    ):
        status, headers, _ = call(server, method, path, sql if method == "POST" else b"")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), (method, path)
    # a cross-site form (no Authorization header, a simple type) is refused for want of a token
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert call(server, "POST", "/clickhouse/", b"query=SELECT+1", form)[0] == 401
    ok = {"Authorization": _basic("", VIEWER)}
    assert call(server, "POST", "/clickhouse/", sql, {**ok, "Origin": "https://evil.example"})[0] == 403
    assert call(server, "POST", "/clickhouse/", sql, {**ok, "Host": "evil.example"})[0] == 403
    assert call(server, "POST", "/clickhouse/", sql, {**ok, "Sec-Fetch-Site": "cross-site"})[0] == 403
    audit = store.query_arrow(
        f"SELECT principal, route, outcome FROM netobs.{AUDIT} WHERE route LIKE '/clickhouse%'"
    )
    assert {r["principal"] for r in audit.to_pylist()} <= {"grafana", "a"}
