"""``qos_marking`` and plane zones (issue 20): `netobs policy test` on a real embedded store."""

from __future__ import annotations

from analytics.policy.model import DSCP, TrafficClass
from tests.analytics.test_policy_cli import TESTDATA, run, settings  # noqa: F401 - the fixture


def test_mismarked_payment_traffic_and_the_storage_plane(settings, capsys):  # noqa: F811
    code, out, _ = run(["policy", "test", str(TESTDATA / "policy_qos_test.yaml")], settings, capsys)
    assert code == 0, out
    assert "3 passed" in out or "PASS" in out, out


def test_dscp_names():
    assert (DSCP["EF"], DSCP["AF41"], DSCP["CS1"], DSCP["AF11"], DSCP["CS0"]) == (46, 34, 8, 10, 0)
    assert TrafficClass(name="p", dscp=["ef", 34]).codes() == (34, 46)
