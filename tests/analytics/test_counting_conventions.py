"""The counting model under every exporter convention: one bank's conversations exported as OVS bridge
IPFIX, OVS per-flow IPFIX, OVS sFlow, a probe marking egress, routers exporting ingress only, NetFlow v5,
RFC 5103 biflows, a mix across centers, and late out-of-order records, each through decode -> enrich ->
the embedded store; then a policy about who opens what is evaluated on each store. The seed is drawn when the test runs (printed, and in the failure message): a
convention that only passes for the seeds someone tried is not a pass."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analytics.scenario.conventions import CONVENTIONS
from netobs_app.cli import main

SEED = int(np.random.SeedSequence().entropy % 2**32)
pytestmark = pytest.mark.slow  # one scenario ingest per convention: seconds each


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_every_conversation_is_counted_once_with_its_roles(convention, tmp_path, capsys):
    code = main(["scenario", "counting", str(tmp_path), "--conventions", convention, "--seed", str(SEED),
                 "--output", "json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    print(f"seed {SEED}")  # shown with a failure
    (result,) = out["results"]
    context = f"seed {SEED}: {json.dumps(result, default=str)[:3000]}"
    assert result["decode_rejects"] == 0, context
    assert not result["outside_bound"], context
    assert all(t["within_bound"] for t in result["totals"].values()), context
    assert result["roles_right"] >= 0.95, context
    assert result["unobservable"] == 0 or convention == "router_ingress", context  # routers miss intra-node
    near = result["policy"].pop("near_misses")
    for rule, v in result["policy"].items():  # who opened it: replies are never judged as requests
        assert (v["precision"], v["recall"], v["replies_flagged"]) == (1.0, 1.0, 0), f"{rule}: {context}"
    # near-misses that must not be flagged were there and seen (sampling may hide a few, not all)
    for kind in ("reply_of_pod_to_internet_client", "shared_service_across_tenants", "declared_replication_pair",
                 "exempt_before_expiry"):  # fmt: skip
        assert near[kind]["seen"] > 0 and near[kind]["flagged"] == 0, f"{kind}: {context}"
    after = near["flagged_after_expiry"]
    assert after["seen"] > 0 and after["flagged"] == after["seen"], context
    assert code == 0, context


def test_an_unknown_convention_is_refused_with_exit_2(tmp_path, capsys):
    assert (
        main(["scenario", "counting", str(tmp_path), "--conventions", "ovs_bridge_ipfix,carrier_pigeon"]) == 2
    )
    assert "unknown conventions ['carrier_pigeon']" in capsys.readouterr().err
    assert main(["scenario", "generate", "--out", str(tmp_path / "g"), "--convention", "carrier_pigeon"]) == 2
    assert "unknown convention 'carrier_pigeon'" in capsys.readouterr().err
