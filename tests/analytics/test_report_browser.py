"""The HTML compliance report as a reader sees it: rendered by headless Chromium (playwright-core and
Debian's Chromium, installed by scripts/install-services.sh) at a screen and a narrow width.

The report's violations are drawn at test time (seed printed): extra conversations from web pods to
staging on random ports, with random sizes and times, on top of the fixed bank of ``test_report``. The
page must show every violating conversation with its sample flows (as the data says and as the flows
were made), count every record in one category, and never cut a word or widen the page. Screenshots go
to var/test-artifacts/report/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from analytics.policy.fixtures import flows_table
from analytics.report.cli import add_parsers
from netobs.config import ChdbStoreConfig, ControlConfig, StoreConfig
from netobs.store import make_store
from netobs_app.settings import Settings
from tests.analytics.test_policy_rules import BANK_POLICY, STAGING, WEB, flow
from tests.analytics.test_report import _flows
from tests.services._require import unavailable

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("NETOBS_CACHE", Path.home() / ".cache" / "netobs"))
NODE_MODULES = CACHE / "npm" / "node_modules"
ARTIFACTS = ROOT / "var" / "test-artifacts" / "report"
PERIOD = ["--from", "2026-06-01T00:00:00Z", "--to", "2026-06-01T06:00:00Z"]


def _tools() -> tuple[str, str]:
    node, chromium = shutil.which("node"), shutil.which("chromium") or "/usr/bin/chromium"
    if node is None or not Path(chromium).exists() or not (NODE_MODULES / "playwright-core").is_dir():
        unavailable(
            f"node, {chromium} and {NODE_MODULES}/playwright-core are needed (scripts/install-services.sh)"
        )
    return node, chromium


def _drawn(rng: random.Random) -> list[dict]:
    """1-3 extra web → staging conversations (distinct ports the fixture does not use), 1-4 flows each."""
    out = []
    for port in rng.sample([8080, 8443, 9090, 5432, 6379, 10250], rng.randrange(1, 4)):
        for _ in range(rng.randrange(1, 5)):
            t = f"2026-06-01T{rng.randrange(6):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"
            out.append(flow(WEB, STAGING, port, time=t, sport=rng.randrange(32768, 61000),
                            bytes=rng.randrange(100, 10**7), exporter="192.0.2.1", type="sflow",
                            sampling_rate=1))  # fmt: skip
    return out


@pytest.mark.slow
def test_the_html_report_shows_every_violation_with_its_evidence_in_a_browser(tmp_path, capsys):
    node, chromium = _tools()
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    extra = _drawn(random.Random(seed))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(
        store=StoreConfig(retention_days=0, chdb=ChdbStoreConfig(path=tmp_path / "chdb")),
        control=ControlConfig(listen=f"127.0.0.1:{port}"),
    )
    store = make_store(settings.store)
    store.start()
    store.insert(flows_table(_flows() + extra))
    store.stop()
    out = tmp_path / "r.html"
    p = argparse.ArgumentParser(prog="netobs")
    add_parsers(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(
        ["report", "--policy", str(BANK_POLICY), *PERIOD, "--format", "html", "--out", str(out)]
    )
    assert args.func(args, settings) == 0, capsys.readouterr()
    csv_rows = (tmp_path / "r.html.violations.csv").read_text().splitlines()[1:]

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [node, str(Path(__file__).with_name("report_browser.mjs")), str(out), str(ARTIFACTS)],
        capture_output=True, text=True, timeout=240, cwd=str(CACHE / "npm"),
        env={**os.environ, "NODE_PATH": str(NODE_MODULES), "CHROMIUM": chromium},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    (ARTIFACTS / "browser.json").write_text(json.dumps(seen, indent=1))
    assert "error" not in seen, seen.get("error")
    assert (seen["console"], seen["pageErrors"], seen["requests"]) == ([], [], [])  # self-contained
    for width in ("screen", "narrow"):
        view = seen[width]
        assert view["pageOverflow"] <= 0 and view["overflow"] == [], (width, view["overflow"])
        assert view["cutWords"] == [], (width, view["cutWords"])
    page = seen["screen"]
    tables = {t["caption"]: t["rows"] for t in page["tables"]}

    # every record in exactly one category: the categories add up to the total received
    cats = tables["Every record, by category"][1:]
    total = next(int(r[1].replace(",", "")) for r in cats if r[0] == "total")
    assert (
        sum(int(r[1].replace(",", "")) for r in cats if r[0] != "total")
        == total
        == len(_flows()) + len(extra)
    )

    # every violating conversation is listed (fewer than 5 per rule here, so all of them) ...
    listing = next(rows for cap, rows in tables.items() if "violating conversations; shown" in cap)
    header = listing[0]
    shown = [dict(zip(header, r, strict=True)) for r in listing[1:]]
    assert len(shown) == len(csv_rows) > 0
    drawn_ports = {f["dst_port"] for f in extra}
    prod = {r["port"] for r in shown if r["rule"] == "prod-nonprod-separation"}
    assert {f"{p}/tcp" for p in drawn_ports} <= prod, (prod, drawn_ports)
    # ... with its sample flows under its own heading: the drawn flows' ports, sizes and times
    headings = page["headings"]
    for row in shown:
        assert f"{row['rule']} · {row['id']}" in headings, (row, headings)
    evidence_tables = [t for t in page["tables"] if t["caption"].startswith("prod-nonprod-separation · ")]
    samples = [dict(zip(t["rows"][0], r, strict=True)) for t in evidence_tables for r in t["rows"][1:]]
    for port in drawn_ports:
        flows = sorted((f for f in extra if f["dst_port"] == port), key=lambda f: -f["bytes"])
        mine = [s for s in samples if s["dport"] == str(port)]
        assert 1 <= len(mine) <= 3 and len(mine) == min(3, len(flows)), (port, mine, flows)
        made = {
            (str(f["src_port"]), f"{f['bytes']:,}", f["time"].replace("T", " ").rstrip("Z")) for f in flows
        }
        assert {(s["sport"], s["bytes"], s["first seen"]) for s in mine} <= made, (mine, made)
        assert all(s["source"] == "10.244.1.10" and s["proto"] == "tcp" for s in mine), mine
