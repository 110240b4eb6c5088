"""The control endpoint: metrics, health, remote SQL with errors returned, not raised."""

import urllib.request

import pyarrow as pa
import pytest

from netobs.control import (
    ControlServer,
    RemoteError,
    Route,
    arrow_response,
    health_routes,
    metrics_route,
    remote_health,
    remote_query,
    text,
)
from netobs.query import format_table


def fake_query(sql):
    if "boom" in sql:
        raise ValueError("Code: 62. Syntax error")
    return pa.table({"n": [1, 2], "addr": [b"\x00" * 10 + b"\xff\xff" + bytes([10, 0, 0, 1]), b"\x00" * 16]})


def query_route(req):
    try:
        return arrow_response(fake_query(req.body.decode()))
    except ValueError as e:
        return text(400, str(e))


@pytest.fixture
def server():
    routes = [metrics_route(), *health_routes(lambda: {"listeners": ["x"]})]
    s = ControlServer("127.0.0.1:0", [*routes, Route("POST", "/query", query_route, role="viewer")])
    s.start()
    yield s
    s.stop()


def test_query_health_metrics(server):
    t = remote_query(server.address, "SELECT 1")
    assert t.column("n").to_pylist() == [1, 2]
    assert remote_health(server.address)["listeners"] == ["x"]
    body = urllib.request.urlopen(f"http://{server.address}/metrics").read().decode()
    assert "netobs_build_info" in body


def test_query_error_comes_back(server):
    with pytest.raises(RemoteError, match="Syntax error"):
        remote_query(server.address, "boom")


def test_refused_when_nothing_listens(server):
    addr = server.address
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        remote_query(addr, "SELECT 1")


def test_format_table_renders_addresses():
    text = format_table(fake_query("x"))
    assert "10.0.0.1" in text and "::" in text
    assert format_table(fake_query("x"), "tsv").splitlines()[0] == "n\taddr"


def test_route_table_is_extensible_and_refuses_simple_types():
    s = ControlServer("127.0.0.1:0")
    s.add_route(Route("GET", "/explore", lambda req: text(200, "hi")))
    with pytest.raises(ValueError, match="already served"):
        s.add_route(Route("GET", "/explore", lambda req: text(200, "again")))
    with pytest.raises(ValueError, match="simple content type"):
        s.add_route(Route("POST", "/form", lambda req: text(200, ""), content_types=("text/plain",)))
    s.start()
    try:
        assert urllib.request.urlopen(f"http://{s.address}/explore").read() == b"hi\n"
    finally:
        s.stop()
