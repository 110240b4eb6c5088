"""Grafana on the embedded store: every dashboard panel's rendered SQL through real ClickHouse clients
(clickhouse-connect from PyPI, clickhouse-go v2 over HTTP as the Grafana plugin uses it) against the
control endpoint's ClickHouse HTTP interface, compared with the same SQL run on chdb directly."""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import json
import math
import os
import subprocess
from pathlib import Path

import clickhouse_connect
import pytest

from dashboards import build_all
from dashboards.catalog import panel_queries, variable_queries
from dashboards.check import context
from dashboards.render import render
from netobs import chhttp
from netobs.audit import AUDIT_TABLE, AuditLog
from netobs.auth import Authenticator, hash_token
from netobs.config import ControlAuthConfig, ControlConfig, PrincipalConfig
from netobs.control import ControlServer
from netobs.queryservice import QueryService
from tests.dashboards import _data
from tests.dashboards._data import END, START
from tests.services._require import unavailable

#: A viewer token: the password of HTTP Basic (what the Grafana plugin and both clients send).
PASSWORD = "nbt_s3cret-viewer-token-for-tests"
USER = "grafana"
CACHE = Path(os.environ.get("NETOBS_CACHE", Path.home() / ".cache" / "netobs"))
CHGO = CACHE / "chgo" / "chgo"


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cfg = _data.settings(tmp_path_factory.mktemp("chclients"))
    _data.fill(cfg)
    return cfg


@pytest.fixture(scope="module")
def store(cfg, module_store_factory):
    return module_store_factory(cfg.store)


@pytest.fixture(scope="module")
def endpoint(store, cfg):
    """The runtime's /clickhouse routes: main's authenticator, query service (guard, readonly, audit)."""
    auth = ControlAuthConfig(
        principals=(PrincipalConfig(name=USER, role="viewer", token_sha256=hash_token(PASSWORD)),)
    )
    for stmt in AUDIT_TABLE.create(cfg.store.database, retention_days=30):
        store.execute(stmt)
    audit = AuditLog(lambda t, target: store.insert(t, target=target), store.query_arrow, cfg.store.database)
    audit.start()
    service = QueryService(store, cfg.store.database, auth, audit)
    server = ControlServer(
        ControlConfig(listen="127.0.0.1:0", auth=auth),
        chhttp.routes(service),
        authenticator=Authenticator(auth),
    )
    server.start()
    yield server.address
    server.stop()


def rendered(cfg, store) -> list[tuple[str, str]]:
    """(where, SQL) of every panel and variable query, rendered for the test range."""
    out = []
    for name, model in build_all(cfg).items():
        ctx = context(model, store.query_arrow, START, END)
        for q in (*variable_queries(model), *panel_queries(model)):
            out.append((f"{name}: {q.where}", render(q.sql, ctx)))
    return out


def norm(v):
    """One value as both clients and Arrow can say it: numbers as floats, times as epoch seconds."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float | decimal.Decimal):
        return float(v)
    if isinstance(v, dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=dt.UTC)).timestamp()
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day, tzinfo=dt.UTC).timestamp()
    if isinstance(v, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(v)
    if isinstance(v, dict):
        return sorted((str(k), norm(x)) for k, x in v.items())
    if isinstance(v, list | tuple):
        pairs = all(isinstance(x, tuple | list) and len(x) == 2 for x in v) and v and isinstance(v[0], tuple)
        return sorted((str(a), norm(b)) for a, b in v) if pairs else [norm(x) for x in v]
    return v


def same(a, b, slack: float = 1e-6) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=slack) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, slack) for x, y in zip(a, b, strict=True))
    return a == b


def slack(sql: str) -> float:
    """Panels that read the clock (silent for N seconds) move between two runs of a query."""
    return 600.0 if "now(" in sql or "now64(" in sql else 1e-6


def direct(store, sql) -> list[list]:
    return [[norm(v) for v in row.values()] for row in store.query_arrow(sql).to_pylist()]


def test_clickhouse_connect_reads_every_panel_like_chdb(cfg, store, endpoint):

    host, port = endpoint.rsplit(":", 1)
    client = clickhouse_connect.get_client(
        host=host, port=int(port), username=USER, password=PASSWORD, proxy_path=chhttp.PREFIX
    )
    queries = rendered(cfg, store)
    assert len(queries) > 30
    with_rows = 0
    for where, sql in queries:
        got = [[norm(v) for v in row] for row in client.query(sql).result_rows]
        want = direct(store, sql)
        assert same(got, want, slack(sql)), f"{where}\n{sql}\nclient: {got[:3]}\nchdb:   {want[:3]}"
        with_rows += bool(want)
    assert with_rows > len(queries) * 0.8


def test_clickhouse_go_reads_every_panel_like_chdb(cfg, store, endpoint):
    if not CHGO.exists():
        unavailable(f"{CHGO} is not built (scripts/install-services.sh builds it with the Go module proxy)")
    queries = rendered(cfg, store)
    stdin = "".join(json.dumps({"sql": sql}) + "\n" for _, sql in queries)
    proc = subprocess.run(
        [str(CHGO), "-addr", endpoint, "-path", chhttp.PREFIX, "-user", USER],
        input=stdin, capture_output=True, text=True, timeout=300,
        env={**os.environ, "CHGO_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(answers) == len(queries)
    for (where, sql), ans in zip(queries, answers, strict=True):
        assert "error" not in ans, f"{where}: {ans.get('error')}\n{sql}"
        got = [[norm(v) for v in row] for row in ans["rows"]]
        want = direct(store, sql)
        assert same(got, want, slack(sql)), (
            f"{where}\n{sql}\nclickhouse-go: {got[:3]}\nchdb:          {want[:3]}"
        )


def test_the_interface_is_read_only_and_authenticated(endpoint):

    host, port = endpoint.rsplit(":", 1)
    with pytest.raises(Exception, match="Authentication|401|authentication"):
        clickhouse_connect.get_client(
            host=host, port=int(port), username=USER, password="wrong", proxy_path=chhttp.PREFIX
        )
    client = clickhouse_connect.get_client(
        host=host, port=int(port), username=USER, password=PASSWORD, proxy_path=chhttp.PREFIX
    )
    for sql, why in (
        ("DROP TABLE netobs.flows", "refused"),
        ("INSERT INTO netobs.flows_1m (bytes) VALUES (1)", "refused"),
        ("SELECT 1; DROP TABLE netobs.flows", "refused"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "refused"),
        ("SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String')", "refused"),
        ("SELECT 1 INTO OUTFILE '/tmp/x'", "refused"),
        ("SYSTEM SHUTDOWN", "refused"),
    ):
        with pytest.raises(Exception, match=why):
            client.query(sql)
    assert client.query("SELECT count() FROM netobs.flows_1m").result_rows[0][0] > 0
