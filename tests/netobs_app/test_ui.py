"""``netobs ui``: the flow explorer over an existing store, run as the real command (a subprocess).

Each store is filled through the real path first (the live bank's sFlow and IPFIX over UDP →
collectors → pipeline, in one ``Runtime``), then the filling process stops and ``netobs ui``
serves it: a ClickHouse 18.16 server (the distributed mode's store; the legacy dialect, no
rollups, no findings/violations tables) and an embedded chdb directory. The answers are compared
with direct SQL on the same store, the page is opened in headless Chromium (screenshots in
var/test-artifacts/ui/), and the security defaults are checked on the real command.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from analytics.scenario import live
from dashboards.explorer_http import ExplorerApi
from netobs.audit import AUDIT_TABLE
from netobs.auth import Principal, hash_token, new_token
from netobs.config import ControlAuthConfig
from netobs.queryservice import QueryService
from netobs_app import demo
from netobs_app.runtime import Runtime
from netobs_app.settings import Settings
from tests.services._proc import free_port
from tests.services._require import unavailable
from tests.services.settle import settle

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("NETOBS_CACHE", Path.home() / ".cache" / "netobs"))
NODE_MODULES = CACHE / "npm" / "node_modules"
ARTIFACTS = ROOT / "var" / "test-artifacts" / "ui"
NETOBS = [sys.executable, "-m", "netobs_app"]
#: Minutes of the live bank each store gets (the violation starts at 0:45, the burst at 1:00).
MINUTES = 2
SCALED = "bytes * if(sampling_rate = 0, 1, sampling_rate)"


# ---- the command's refusals (no service) ---------------------------------------------------------
def _netobs(*args: str, config: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = [*NETOBS, *(["-c", str(config)] if config else []), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETOBS__")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def test_ui_refuses_a_directory_that_holds_no_store(tmp_path):
    out = _netobs("ui", "--chdb", str(tmp_path / "nothing"))
    assert out.returncode == 2, out.stderr
    assert "no netobs store at" in out.stderr
    (tmp_path / "empty").mkdir()
    out = _netobs("ui", "--chdb", str(tmp_path / "empty"))
    assert out.returncode == 2 and "no netobs store at" in out.stderr, out.stderr


def test_ui_listens_on_loopback_only_without_tls_and_principals(tmp_path):
    """As ``run``: a non-loopback listener without TLS and principals is a configuration error."""
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "x").write_text("")
    out = _netobs("ui", "--chdb", str(tmp_path / "store"), "--listen", f"0.0.0.0:{free_port()}")
    assert out.returncode == 2, out.stderr
    assert "not a loopback address" in out.stderr


def test_ui_says_what_a_bad_server_address_is():
    out = _netobs("ui", "--clickhouse", "no-port-here")
    assert out.returncode == 2 and "HOST:PORT" in out.stderr, out.stderr


# ---- filling a store through the real path ---------------------------------------------------------
def _fill(store: dict[str, Any], root: Path) -> tuple[Settings, Runtime, int, int]:
    """MINUTES minutes of the live bank into ``store`` (settings' store section); returns the
    settings, the still running runtime, and the first and last simulated times (ms)."""
    seed = secrets.randbelow(2**31)
    print(f"live bank seed {seed}")
    base = Settings.model_validate({
        "collector": {"listeners": [{"listen": f"127.0.0.1:{free_port()}", "protocol": "auto"},
                                    {"listen": f"127.0.0.1:{free_port()}", "protocol": "auto"}],
                      "batch_max_delay_ms": 100},
        "pipeline": {"max_batch_delay_ms": 200},
        "store": store,
        "control": {"listen": f"127.0.0.1:{free_port()}"},
        "analytics": {"schedule_interval_s": 0},
    })  # fmt: skip
    settings, inv_path, _ = demo.demo_settings(base, root)
    if store.get("type") == "chdb":  # demo_settings puts the store under root: keep the one asked for
        settings = settings.model_copy(update={"store": base.store})
    bank = live.live_bank()
    inv_path.write_text(yaml.safe_dump(live.inventory(bank), sort_keys=False))
    runtime = Runtime(settings, collect=True, process=True, schedule=False)
    runtime.start()
    sender = demo.Sender(demo._targets(settings))
    try:
        sim = live.LiveBank(bank, sender, seed, rate=2.0)
        now = int(time.time() * 1000)
        first = now - MINUTES * 60_000
        for t in range(first, now + 25_000, 1000):
            sim.step(t)
    finally:
        sender.close()
    _settle(runtime)
    return settings, runtime, first, now + 25_000


def _settle(runtime: Runtime, timeout_s: float = 120) -> None:
    settle(runtime.health, timeout_s)


# ---- running `netobs ui` ------------------------------------------------------------------------
class Ui:
    """``netobs ui`` as a subprocess with a viewer token and no anonymous role."""

    def __init__(self, tmp: Path, *args: str):
        self.token = new_token()
        self.address = f"127.0.0.1:{free_port()}"
        config = {
            "control": {
                "listen": self.address,
                "auth": {
                    "anonymous_role": "none",
                    "principals": [
                        {"name": "ui-test", "role": "viewer", "token_sha256": hash_token(self.token)}
                    ],
                },
            }
        }
        cfg = tmp / f"ui-{secrets.token_hex(3)}.yaml"
        cfg.write_text(yaml.safe_dump(config))
        self.cmd = [*NETOBS, "-c", str(cfg), "ui", *args]
        self.log = tmp / f"{cfg.stem}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("NETOBS__")}
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True,
                                     cwd=ROOT, env=env)  # fmt: skip
        self.banner = ""

    def wait_ready(self, timeout_s: float = 90) -> Ui:
        deadline = time.monotonic() + timeout_s
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"netobs ui ended ({self.proc.returncode}): {self.log.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"http://{self.address}/livez", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        else:
            raise AssertionError(f"netobs ui did not come up: {self.log.read_text()[-2000:]}")
        self.banner = self.proc.stdout.readline() + self.proc.stdout.readline()
        return self

    def get(self, path: str, auth: str | None = "bearer", **params: Any) -> tuple[int, Any]:
        q = urllib.parse.urlencode(params)
        req = urllib.request.Request(f"http://{self.address}{path}" + (f"?{q}" if q else ""))
        if auth == "bearer":
            req.add_header("Authorization", f"Bearer {self.token}")
        elif auth == "basic":
            req.add_header(
                "Authorization", "Basic " + base64.b64encode(f"default:{self.token}".encode()).decode()
            )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                body = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            body, status = e.read(), e.code
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode("utf-8", "replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


def _snap(ui: Ui, name: str) -> dict[str, Any]:
    node, chromium = shutil.which("node"), shutil.which("chromium") or "/usr/bin/chromium"
    if node is None or not Path(chromium).exists() or not (NODE_MODULES / "playwright-core").is_dir():
        unavailable(
            f"node, {chromium} and {NODE_MODULES}/playwright-core are needed (scripts/install-services.sh)"
        )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [node, str(Path(__file__).with_name("explorer_snap.mjs")), f"http://{ui.address}/explorer/", ui.token,
         str(ARTIFACTS), name],
        capture_output=True, text=True, timeout=180, cwd=str(CACHE / "npm"),
        env={**os.environ, "NODE_PATH": str(NODE_MODULES), "CHROMIUM": chromium},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in seen, seen["error"]
    assert seen["console"] == [] and seen["pageErrors"] == [] and seen["failed"] == [], seen
    return seen


def _range(first: int, last: int) -> dict[str, str]:
    return {"from": str(first - 300_000), "to": str(last + 120_000)}


def _top_matches(ui: Ui, rng: dict[str, str], direct: dict[str, int]) -> dict[str, Any]:
    status, top = ui.get("/explorer/api/top", by="src_center", limit="50", **rng)
    assert status == 200, top
    assert {r["key"]: r["bytes"] for r in top["rows"]} == pytest.approx(direct, rel=1e-12)
    status, series = ui.get("/explorer/api/series", by="src_center", **rng)
    assert status == 200, series
    total = sum(sum(s["values"]) for s in series["series"]) * series["interval_s"] / 8
    assert total == pytest.approx(sum(direct.values()), rel=1e-9)
    return top


# ---- against a ClickHouse 18.16 server -------------------------------------------------------------
@pytest.mark.integration
def test_ui_serves_the_explorer_over_a_clickhouse_server(clickhouse_server, tmp_path):
    database = f"netobs_ui_{secrets.token_hex(3)}"
    store = {"type": "clickhouse", "database": database,
             "clickhouse": {"host": clickhouse_server.host, "port": clickhouse_server.port}}  # fmt: skip
    _, runtime, first, last = _fill(store, tmp_path / "fill")
    runtime.stop()
    client = clickhouse_server.client()
    direct = dict(client.execute(f"SELECT src_center, sum({SCALED}) FROM {database}.flows WHERE counted = 1 "
                                 "GROUP BY src_center"))  # fmt: skip
    assert set(direct) >= {"dc1", "dc2", "dc3"}, direct
    ui = Ui(
        tmp_path, "--clickhouse", f"{clickhouse_server.host}:{clickhouse_server.port}", "--database", database
    )
    try:
        ui.wait_ready()
        assert f"http://{ui.address}/explorer/" in ui.banner and "older than ClickHouse 19" in ui.banner
        rng = _range(first, last)
        assert ui.get("/explorer/api/top", auth=None, **rng)[0] == 401  # no anonymous role
        top = _top_matches(ui, rng, direct)
        assert top["source"] == "flows"  # no rollups on a pre-19 server
        status, meta = ui.get("/explorer/api/meta")
        assert status == 200 and meta["dialect"] == "legacy" and "no rollups" in meta["notes"][0]
        status, events = ui.get("/explorer/api/events", **rng)
        assert (
            status == 200 and events["violations"] == [] and "ClickHouse 19 or later" in events["unsupported"]
        )
        status, values = ui.get("/explorer/api/values", column="src_tenant", prefix="TENANT0", **rng)
        assert (
            status == 200
            and values["values"]
            and all(v["value"].startswith("tenant0") for v in values["values"])
        )
        assert ui.get("/clickhouse/", auth="basic", query="SELECT 1")[0] == 404  # a server has its own
        seen = _snap(ui, "ui-clickhouse-18")
        panels = {p["id"]: p for p in seen["panels"]}
        assert "no rollups" in seen["note"] and seen["topRows"] > 0 and seen["canvases"] >= 3
        assert not any(
            panels[i]["shown"] for i in ("p-series", "p-sankey-center", "p-sankey-tenant", "p-top")
        )
        assert panels["p-events"]["shown"] and not panels["p-events"]["error"]
        assert "ClickHouse 19 or later" in panels["p-events"]["text"]
    finally:
        assert ui.stop() == 0, ui.log.read_text()[-2000:]
    audit = client.execute(f"SELECT principal, outcome, count() FROM {database}.{AUDIT_TABLE.name} "
                           "WHERE route = '/explorer/api/top' GROUP BY principal, outcome")  # fmt: skip
    assert ("ui-test", "ok") in {(p, o) for p, o, _ in audit}, audit


# ---- against an embedded store ---------------------------------------------------------------------
@pytest.mark.integration
def test_ui_serves_an_embedded_store_that_no_other_process_holds(tmp_path):
    path = tmp_path / "chdb"
    store = {"type": "chdb", "database": "netobs", "chdb": {"path": str(path)}}
    settings, runtime, first, last = _fill(store, tmp_path / "fill")
    try:
        db = settings.store.database
        rows = runtime.store.query_arrow(f"SELECT src_center, sum({SCALED}) AS b, count() AS n FROM `{db}`.flows "
                                         "WHERE counted = 1 GROUP BY src_center").to_pylist()  # fmt: skip
        direct = {r["src_center"]: r["b"] for r in rows}
        flows = sum(r["n"] for r in rows)
        # The legacy dialect's SQL (raw flows, intDiv buckets) gives what the modern one (rollups) gives.
        queries = QueryService(runtime.store, db, ControlAuthConfig())
        viewer = Principal("v", "viewer")
        rng = _range(first, last)
        answers = {}
        for dialect in ("modern", "legacy"):
            api = ExplorerApi(lambda sql: queries.run(viewer, sql), db, dialect)
            series = api.series({**rng, "by": "src_center"})
            answers[dialect] = (
                {r["key"]: r["bytes"] for r in api.top({**rng, "by": "src_center"})["rows"]},
                series["times_ms"],
                {s["key"]: s["values"] for s in series["series"]},
                api.top({**rng, "by": "src_center"})["source"],
            )
        assert answers["modern"][3] == "rollup" and answers["legacy"][3] == "flows"
        assert answers["legacy"][0] == direct  # integers summed from raw flows
        assert answers["modern"][0] == pytest.approx(direct, rel=1e-12)  # the rollups hold floats
        # per series the same total; the rollups spread a record over the minutes it spans, the raw
        # flows put it in the minute it ended, so single buckets may differ
        totals = {d: {k: sum(v) for k, v in answers[d][2].items()} for d in answers}
        assert totals["modern"] == pytest.approx(totals["legacy"], rel=1e-9)
        assert set(answers["legacy"][1]) <= set(answers["modern"][1])
        # while this process holds the directory, `netobs ui` says who has it
        busy = _netobs("ui", "--chdb", str(path), "--listen", f"127.0.0.1:{free_port()}")
        assert busy.returncode == 1 and "another process" in busy.stderr, busy.stderr
    finally:
        runtime.stop()
    ui = Ui(tmp_path, "--chdb", str(path))
    try:
        ui.wait_ready()
        assert "/clickhouse/" in ui.banner and "embedded store" in ui.banner
        top = _top_matches(ui, rng, direct)
        assert top["source"] == "rollup"
        status, count = ui.get(
            "/clickhouse/", auth="basic", query=f"SELECT count() FROM {db}.flows WHERE counted = 1"
        )
        assert status == 200 and int(str(count).strip()) == flows
        assert ui.get("/clickhouse/", auth=None, query="SELECT 1")[0] == 401
        status, events = ui.get("/explorer/api/events", **rng)
        assert status == 200 and "unsupported" not in events
        seen = _snap(ui, "ui-chdb")
        assert seen["note"] == "" and seen["topRows"] > 0
        assert not any(p["shown"] for p in seen["panels"] if p["id"] != "p-events"), seen["panels"]
    finally:
        assert ui.stop() == 0, ui.log.read_text()[-2000:]
