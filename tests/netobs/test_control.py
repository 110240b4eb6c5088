"""The control endpoint: metrics, health, remote SQL with errors returned, not raised."""

import urllib.request

import pyarrow as pa
import pytest

from netobs.control import ControlServer, RemoteError, remote_health, remote_query
from netobs.query import format_table


def fake_query(sql):
    if "boom" in sql:
        raise ValueError("Code: 62. Syntax error")
    return pa.table({"n": [1, 2], "addr": [b"\x00" * 10 + b"\xff\xff" + bytes([10, 0, 0, 1]), b"\x00" * 16]})


@pytest.fixture
def server():
    s = ControlServer("127.0.0.1:0", query=fake_query, health=lambda: {"listeners": ["x"]})
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
