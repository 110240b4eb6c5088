"""The whole analysis on real chdb: a labeled scenario through decode → enrich → store → analyze.

Eight simulated days: one of history, seven analysed. The volume detector needs weeks of
history and must stay quiet rather than guess; the others must find exactly what was injected. Reruns must update findings, not duplicate them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest

from analytics.findings import schema
from analytics.scenario import ScenarioSpec, generate


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenario")
    generate(ScenarioSpec(tenants=13, days=8), root)
    return root


def netobs(*args, timeout=900):
    r = subprocess.run(
        [sys.executable, "-m", "netobs", *args], capture_output=True, text=True, timeout=timeout
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.mark.slow
def test_evaluate_scores_history_free_detectors(scenario):
    (out,) = json.loads(netobs("scenario", "evaluate", str(scenario), "--days", "8", "--output", "json"))[
        "results"
    ]
    rows = {r["detector"]: r for r in out["netobs"]}
    for detector in (
        "collection_gap",
        "dr_traffic",
        "fanout",
        "elephant",
        "new_dependency",
        "center_shift",
    ):  # a center's share is stable enough to judge after a day
        assert rows[detector]["f1"] == 1.0, rows[detector]
    # Known gap (issue 12, open): the scenario's center-local asymmetry is missed; the cross-center one
    # is found and nothing false is reported.
    asym = rows["asymmetric_path"]
    assert asym["detected"] >= 1 and asym["findings"] == asym["detected"], asym
    # One day of history: volume baselines are not warm, so no guessing, and it says so.
    assert rows["volume"]["findings"] == 0, rows["volume"]
    assert out["notes"]["volume"]["tenant/center"]["scales"]["5m"]["cold"] > 0
    assert out["ewma_reference"]
    assert all(f["detector"] == "fanout" for f in out["above_info_in_planned"])  # only unplanned kinds


@pytest.mark.slow
def test_analyze_reruns_update_findings(scenario, tmp_path):
    config = tmp_path / "netobs.yaml"
    config.write_text(
        f"store: {{retention_days: 0, rollup_1m_retention_days: 0, rollup_1h_retention_days: 0, "
        f"exporter_health_retention_days: 0, chdb: {{path: '{scenario / 'chdb'}'}}}}\n"
        "control: {listen: '127.0.0.1:1'}\n"
    )
    window = [
        "--from",
        "2025-10-31T00:00:00Z",
        "--to",
        "2025-11-02T00:00:00Z",
        "--analytics",
        str(scenario / "analytics.yaml"),
    ]
    first = netobs("--config", str(config), "analyze", *window, "--output", "jsonl").splitlines()
    for line in first:  # what analyze writes is what the schema says
        jsonschema.validate(json.loads(line), schema())
    second = netobs("--config", str(config), "analyze", *window, "--output", "jsonl").splitlines()
    assert first and [json.loads(x)["id"] for x in first] == [json.loads(x)["id"] for x in second]
    count = netobs(
        "--config", str(config), "query", "--format", "tsv", "SELECT count() FROM netobs.findings FINAL"
    )
    assert int(count.splitlines()[1]) == len(first)


@pytest.mark.slow
def test_analyze_on_empty_store_finds_nothing(tmp_path):
    config = tmp_path / "netobs.yaml"
    config.write_text(
        f"store: {{chdb: {{path: '{tmp_path / 'chdb'}'}}}}\ncontrol: {{listen: '127.0.0.1:1'}}\n"
    )
    out = netobs(
        "--config", str(config), "analyze", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z"
    )
    assert out.startswith("0 findings")
