"""The labeled scenario generator: a decodable IPFIX capture with sampling, a valid inventory, labels."""

from __future__ import annotations

import itertools
import json

import pytest
import yaml

from analytics.scenario import ScenarioSpec, generate
from collectors.jsonl import iter_records


@pytest.mark.slow
def test_small_scenario(tmp_path):
    info = generate(ScenarioSpec(tenants=13, days=8), tmp_path)
    labels = json.loads((tmp_path / "labels.json").read_text())
    assert {lab["detector"] for lab in labels} == {
        "volume",
        "center_shift",
        "dr_traffic",
        "new_dependency",
        "asymmetric_path",
        "fanout",
        "elephant",
        "collection_gap",
    }
    inv = yaml.safe_load((tmp_path / "inventory.yaml").read_text())
    node_ips = {n["ip"] for s in inv["sites"] for c in s["centers"] for n in c["nodes"]}
    pod_ips = {p["ip"] for p in inv["pods"]}
    flows = [
        r for r in itertools.islice(iter_records(tmp_path / "exports.pcap"), 3000) if r["kind"] == "flow"
    ]
    assert len(flows) == 3000 and info["records"] > 100_000
    assert {r["sampling_rate"] for r in flows} == {1000}
    assert {r["exporter"] for r in flows} <= node_ips
    assert {r["src_addr"] for r in flows} <= pod_ips and {r["dst_addr"] for r in flows} <= pod_ips
    assert {r["type"] for r in flows} == {"ipfix"}
    cfg = yaml.safe_load((tmp_path / "analytics.yaml").read_text())
    kinds = sorted(w["kind"] for w in cfg["windows"])
    assert kinds == ["dr_drill", "maintenance"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"tenants": 3}, "at least 13 tenants"), ({"days": 6}, "7 days"), ({"sampling": 0}, "sampling")],
)
def test_a_scenario_too_small_for_its_anomalies_is_refused_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScenarioSpec(**kwargs)


def test_cli_refuses_a_too_small_scenario_with_exit_2(tmp_path, capsys):
    from netobs_app.cli import main

    assert main(["scenario", "generate", "--tenants", "3", "--out", str(tmp_path / "s")]) == 2
    assert "at least 13 tenants" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
