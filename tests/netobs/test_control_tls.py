"""The endpoint over TLS: server certificate, client certificates (mTLS) mapped to principals."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import urllib.error
import urllib.request

import pyarrow as pa
import pytest

from netobs.auth import Authenticator, hash_token
from netobs.config import ControlAuthConfig, ControlConfig, ControlTLSConfig, PrincipalConfig
from netobs.control import SQL_TYPE, ControlServer, RemoteError, Route, arrow_response, remote_query

pytestmark = pytest.mark.slow


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))  # fmt: skip
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("noc", "basicConstraints=CA:FALSE"),
                      ("stranger", "basicConstraints=CA:FALSE")):  # fmt: skip
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(d / f"{name}.key"),
                "-out", str(d / f"{name}.csr"))  # fmt: skip
        ext_file = d / f"{name}.ext"
        ext_file.write_text(ext + "\n")
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
                "-CAcreateserial", "-days", "1", "-extfile", str(ext_file), "-out", str(d / f"{name}.pem"))  # fmt: skip
    return d


@pytest.fixture(scope="module")
def tls_server(pki):
    auth = ControlAuthConfig(
        principals=(
            PrincipalConfig(name="noc", role="operator", cert_cn="noc"),
            PrincipalConfig(name="svc", role="viewer", token_sha256=hash_token("nbt_svc")),
        ),
        anonymous_role="none",
    )
    tls = ControlTLSConfig(
        cert_file=pki / "server.pem",
        key_file=pki / "server.key",
        client_ca_file=pki / "ca.pem",
        ca_file=pki / "ca.pem",
    )
    config = ControlConfig(listen="127.0.0.1:0", tls=tls, auth=auth)

    def whoami(req):
        assert req.principal is not None
        return arrow_response(pa.table({"who": [req.principal.name], "role": [req.principal.role]}))

    server = ControlServer(
        config, [Route("POST", "/query", whoami, role="viewer")], authenticator=Authenticator(auth)
    )
    server.start()
    yield server, config
    server.stop()


def call(server, pki, cert: str | None, token: str | None = None):
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    headers = {"Content-Type": SQL_TYPE} | ({"Authorization": f"Bearer {token}"} if token else {})
    req = urllib.request.Request(f"https://{server.address}/query", data=b"SELECT 1", headers=headers)
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        return pa.ipc.open_stream(r.read()).read_all().to_pylist()[0]


def test_client_certificate_maps_to_its_principal(tls_server, pki):
    server, _ = tls_server
    assert call(server, pki, "noc") == {"who": "noc", "role": "operator"}


def test_unknown_certificate_or_none_refused(tls_server, pki):
    server, _ = tls_server
    with pytest.raises(urllib.error.HTTPError) as e:
        call(server, pki, "stranger")
    assert e.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as e:
        call(server, pki, None)
    assert e.value.code == 401


def test_token_over_tls_and_the_cli_client(tls_server, pki, monkeypatch):
    server, config = tls_server
    assert call(server, pki, None, "nbt_svc") == {"who": "svc", "role": "viewer"}
    client_cfg = config.model_copy(update={"listen": server.address})
    monkeypatch.setenv("NETOBS_TOKEN", "nbt_svc")
    assert remote_query(client_cfg, "SELECT 1").to_pylist() == [{"who": "svc", "role": "viewer"}]
    monkeypatch.setenv("NETOBS_TOKEN", "nbt_wrong")
    with pytest.raises(RemoteError):
        remote_query(client_cfg, "SELECT 1")


def test_plain_http_to_the_tls_port_gets_nothing(tls_server):
    server, _ = tls_server
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://{server.address}/query", data=b"x", timeout=5).read()


def test_a_silent_client_does_not_stall_the_endpoint(tls_server, pki):
    import socket

    server, _ = tls_server
    host, port = server.address.rsplit(":", 1)
    silent = socket.create_connection((host, int(port)))  # connects, never says hello
    try:
        assert call(server, pki, "noc")["who"] == "noc"
    finally:
        silent.close()
