"""``netobs dashboards export|check|push`` end to end: files on disk, the real store, and for ``push`` a
local HTTP server standing in for Grafana's API (no Grafana server installs on the project's machines)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from netobs_app.cli import main
from tests.dashboards import _data

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose" / "grafana"


def _config(tmp_path: Path, root: Path, extra: str = "") -> Path:
    cfg = _data.settings(root)
    p = tmp_path / "netobs.yaml"
    p.write_text(
        f"store:\n  retention_days: 0\n  rollup_1m_retention_days: 0\n  rollup_1h_retention_days: 0\n"
        f"  exporter_health_retention_days: 0\n  interface_counters_retention_days: 0\n"
        f"  chdb: {{path: '{cfg.store.chdb.path}'}}\ncontrol: {{listen: '{cfg.control.listen}'}}\n{extra}"
    )
    return p


def test_export_writes_dashboards_and_provisioning(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NETOBS__STORE__CLICKHOUSE__PASSWORD", "do-not-write-me")
    monkeypatch.setenv("NETOBS__DASHBOARDS__DATASOURCE_HOST", "ch.dc1.bank")
    cfg = _config(tmp_path, tmp_path, "dashboards: {datasource_uid: ch-main, datasource_port: 9440}\n")
    assert main(["-c", str(cfg), "dashboards", "export", str(tmp_path / "out")]) == 0
    written = capsys.readouterr().out.split()
    assert len(written) == 8
    ds = yaml.safe_load((tmp_path / "out/provisioning/datasources/netobs.yaml").read_text())["datasources"][0]
    assert ds["uid"] == "ch-main" and ds["type"] == "grafana-clickhouse-datasource"
    # The embedded store: Grafana reads it through the control endpoint's ClickHouse HTTP interface.
    assert ds["jsonData"] == {"host": "ch.dc1.bank", "port": 9440, "protocol": "http", "path": "/clickhouse",
                              "secure": False, "username": "default", "defaultDatabase": "netobs"}  # fmt: skip
    assert ds["secureJsonData"] == {"password": "${NETOBS_GRAFANA_TOKEN}"}  # a viewer token
    texts = "".join(Path(p).read_text() for p in written)
    assert "do-not-write-me" not in texts
    provider = yaml.safe_load((tmp_path / "out/provisioning/dashboards/netobs.yaml").read_text())[
        "providers"
    ][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards/netobs"
    model = json.loads((tmp_path / "out/dashboards/tenant.json").read_text())
    assert model["uid"] == "netobs-tenant" and model["panels"][0]["datasource"]["uid"] == "ch-main"


def test_export_for_a_clickhouse_server_points_at_the_server(tmp_path, monkeypatch):
    monkeypatch.delenv("NETOBS__DASHBOARDS__DATASOURCE_HOST", raising=False)
    cfg = tmp_path / "ch.yaml"
    cfg.write_text(
        "store:\n  type: clickhouse\n  clickhouse: {host: ch.dc1.bank, port: 9000, user: reader}\n"
    )
    assert main(["-c", str(cfg), "dashboards", "export", str(tmp_path / "out")]) == 0
    ds = yaml.safe_load((tmp_path / "out/provisioning/datasources/netobs.yaml").read_text())["datasources"][0]
    assert ds["jsonData"] == {"host": "ch.dc1.bank", "port": 9000, "protocol": "native", "secure": False,
                              "username": "reader", "defaultDatabase": "netobs"}  # fmt: skip
    assert ds["secureJsonData"] == {"password": "${NETOBS__STORE__CLICKHOUSE__PASSWORD}"}


def test_committed_compose_export_is_current(tmp_path, monkeypatch):
    for name in ("NETOBS_CONFIG", "NETOBS__DASHBOARDS__DATASOURCE_HOST", "NETOBS__STORE__DATABASE"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "out"
    argv = ["-c", str(COMPOSE / "export.yaml"), "dashboards", "export", str(out)]
    assert main([*argv, "--password-env", "NETOBS_CLICKHOUSE_PASSWORD"]) == 0
    fresh = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert fresh and all((COMPOSE / p).read_text() == (out / p).read_text() for p in fresh), (
        "compose/grafana is stale: rerun the export command in compose/grafana/export.yaml"
    )


@pytest.mark.slow
def test_check_runs_every_panel_on_the_store(tmp_path, capsys):
    _data.fill(_data.settings(tmp_path))
    cfg = _config(tmp_path, tmp_path)
    argv = ["-c", str(cfg), "dashboards", "check", "--end", _data.END.isoformat(), "--hours", "3"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 38 + 9 + 6 + 5 and all(line.startswith("ok ") for line in lines), captured.out
    assert "0 errors" in captured.err
    assert any("'Center × center matrix': 3 rows (src_center, dst_center" in line for line in lines), lines


def test_check_fails_on_any_error(tmp_path, capsys):
    cfg = _config(tmp_path, tmp_path)  # a fresh store: no findings or violations table yet
    assert main(["-c", str(cfg), "dashboards", "check", "--hours", "1"]) == 1
    out = capsys.readouterr().out
    assert "ERROR netobs-compliance panel" in out and "violations" in out
    assert "ok    netobs-cross-center panel 5 'Center × center matrix': 0 rows" in out


class _Grafana(BaseHTTPRequestHandler):
    """A stand-in for Grafana (which cannot run here): just enough of its HTTP API, folders and
    dashboards/db, checking the token."""

    token = "glsa_test_token"
    requests: list[tuple[str, str, dict, dict]] = []
    folders: set[str] = set()

    def _answer(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else {}
        self.requests.append((method, self.path, dict(self.headers), body))
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            return self._answer(401, {"message": "invalid API key"})
        if method == "GET" and self.path.startswith("/api/folders/"):
            uid = self.path.rsplit("/", 1)[1]
            return (
                self._answer(200, {"uid": uid})
                if uid in self.folders
                else self._answer(404, {"message": "folder not found"})
            )
        if method == "POST" and self.path == "/api/folders":
            self.folders.add(body["uid"])
            return self._answer(200, {"uid": body["uid"], "title": body["title"]})
        if method == "POST" and self.path == "/api/dashboards/db":
            uid = body["dashboard"]["uid"]
            return self._answer(200, {"status": "success", "uid": uid, "url": f"/d/{uid}/x", "version": 1})
        return self._answer(404, {"message": "not found"})

    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def log_message(self, *args):
        pass


@pytest.fixture
def grafana():
    _Grafana.requests, _Grafana.folders = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Grafana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_push_posts_every_dashboard_with_overwrite(tmp_path, grafana, capsys, monkeypatch):
    monkeypatch.setenv("NETOBS__DASHBOARDS__GRAFANA_TOKEN", _Grafana.token)
    cfg = _config(tmp_path, tmp_path)
    assert main(["-c", str(cfg), "dashboards", "push", "--url", grafana]) == 0
    out = capsys.readouterr()
    assert out.out.split() == [
        f"/d/netobs-{n}/x"
        for n in ("cross-center", "tenant", "collection-health", "compliance", "l7", "planes-qos")
    ]
    assert _Grafana.token not in out.out + out.err
    posts = [r for r in _Grafana.requests if r[1] == "/api/dashboards/db"]
    assert [(m, p) for m, p, *_ in _Grafana.requests[:2]] == [
        ("GET", "/api/folders/netobs"),
        ("POST", "/api/folders"),
    ]
    assert len(posts) == 6
    for method, _, headers, body in posts:
        assert method == "POST" and headers["Authorization"] == f"Bearer {_Grafana.token}"
        assert headers["Content-Type"].startswith("application/json")
        assert body["overwrite"] is True and body["folderUid"] == "netobs" and body["dashboard"]["id"] is None
        assert body["dashboard"]["schemaVersion"] >= 39 and body["dashboard"]["panels"]
    # A second push finds the folder and overwrites the dashboards.
    assert main(["-c", str(cfg), "dashboards", "push", "--url", grafana]) == 0
    assert [r[1] for r in _Grafana.requests].count("/api/folders") == 1


def test_push_refused_token_is_a_clear_error(tmp_path, grafana, capsys, monkeypatch):
    monkeypatch.setenv("NETOBS__DASHBOARDS__GRAFANA_TOKEN", "wrong-token")
    assert main(["-c", str(_config(tmp_path, tmp_path)), "dashboards", "push", "--url", grafana]) == 1
    err = capsys.readouterr().err
    assert "401" in err and "wrong-token" not in err


def test_push_without_token_or_to_a_down_grafana_fails_cleanly(tmp_path, capsys, monkeypatch):
    cfg = str(_config(tmp_path, tmp_path))
    monkeypatch.delenv("NETOBS__DASHBOARDS__GRAFANA_TOKEN", raising=False)
    assert main(["-c", cfg, "dashboards", "push", "--url", "http://127.0.0.1:9"]) == 1
    assert "NETOBS__DASHBOARDS__GRAFANA_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("NETOBS__DASHBOARDS__GRAFANA_TOKEN", "tok-secret")
    assert main(["-c", cfg, "dashboards", "push", "--url", f"http://127.0.0.1:{_data._free_port()}"]) == 1
    err = capsys.readouterr().err
    assert "folder netobs" in err and "tok-secret" not in err
