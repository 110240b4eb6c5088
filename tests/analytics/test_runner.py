"""The whole analysis on real chdb: a labeled scenario through decode → enrich → store → analyze.

Eight simulated days: one of history, seven analysed, exported under a convention drawn at test time
(the project's first, or one of the counting matrix's wire conventions: per-point packet sampling,
sFlow, NetFlow v5, biflows, routers, late data) with the seed's noise and lateness, at 1:1000 on a
small bank (``VOLUME`` real bytes per 5 minutes per tenant and center: sFlow makes a record per sampled
packet). The volume detector needs weeks of history and must stay quiet rather than guess; the
others must find what was injected wherever the convention can show it, with at most two false
findings a day. Reruns must update findings, not duplicate them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jsonschema
import numpy as np
import pytest

from analytics.findings import schema
from analytics.scenario import generate
from analytics.scenario.generate import CONVENTIONS
from netobs_app.scenario import draw_spec

#: Detectors that need no more than a day of history.
HISTORY_FREE = ("collection_gap", "dr_traffic", "fanout", "elephant", "new_dependency", "center_shift",
                "asymmetric_path")  # fmt: skip


#: Real bytes per 5 minutes per tenant and center: a small bank (sFlow makes a record per sampled packet),
#: big enough that an hour's asymmetric path leaves packet sampling the evidence to tell it every time (about
#: 13 sampled requests and 53 replies at each point, where the detector needs some 21 together; at 1e7 it is
#: 9 times in 10, and below 7e6 it is scored as not observable).
VOLUME = 2e7


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    seed = int(os.environ.get("NETOBS_TEST_SEED") or np.random.SeedSequence().entropy % 2**32)
    convention = os.environ.get("NETOBS_TEST_CONVENTION") or CONVENTIONS[seed % len(CONVENTIONS)]
    print(f"seed {seed} convention {convention}")
    root = tmp_path_factory.mktemp("scenario")
    generate(draw_spec(seed, convention, 13, 8, 1000, volume=VOLUME), root)
    (root / "spec.json").write_text(json.dumps({"seed": seed, "convention": convention}))
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
    convention = json.loads((scenario / "spec.json").read_text())["convention"]
    # the analysed week ends where the bank's traffic does, not a day after a last sFlow sample dated
    # by its datagram a second past midnight (a day of every exporter "silent")
    end_ms = json.loads((scenario / "span.json").read_text())["end_ms"]
    assert out["window"].endswith(time.strftime("%Y-%m-%d", time.gmtime(end_ms / 1000))), out["window"]
    for det in HISTORY_FREE:
        row = rows[det]
        print(convention, row)
        # labels the convention cannot show are left out, each with its reason; one label per detector
        # here, so one false finding in the week costs F1 0.67: the wire conventions are held to full
        # recall and the issue's bar of <= 2 false findings a day, the project's own to F1 >= 0.9
        assert row["detected"] == row["labels"], row
        assert row["false_per_day"] <= 2, row
        if convention == "probe_both_ends" and row["labels"]:
            assert row["f1"] >= 0.9, row
    # One day of history: volume baselines are not warm, so no guessing, and it says so.
    assert rows["volume"]["findings"] == 0, rows["volume"]
    assert out["notes"]["volume"]["tenant/center"]["scales"]["5m"]["cold"] > 0
    assert out["ewma_reference"]
    # inside the planned windows only what they did not plan for (a scan) is reported above info
    above = out["above_info_in_planned"]
    allowed = {"fanout"}
    assert {f["detector"] for f in above} <= allowed, above


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
