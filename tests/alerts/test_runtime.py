"""``netobs run`` wiring: with ``alerts.enabled`` the process runs a notifier on its own store."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from netobs_app.runtime import Runtime
from netobs_app.settings import Settings
from tests.alerts.conftest import SECRET, finding, save_findings
from tests.services._proc import free_port


def test_run_starts_and_stops_the_notifier(tmp_path, receiver):
    settings = Settings(
        store={"retention_days": 0, "chdb": {"path": str(tmp_path / "chdb")}},
        control={"listen": f"127.0.0.1:{free_port()}"},
        collector={"listeners": []},
        analytics={"schedule_interval_s": 0},
        alerts={
            "enabled": True,
            "interval_s": 0.2,
            "sinks": {"hook": {"type": "webhook", "url": receiver.url, "secret": SECRET}},
            "routes": [{"name": "noc", "sinks": ["hook"]}],
        },
    )
    rt = Runtime(settings, collect=False, process=True)
    rt.start()
    try:
        assert rt.notifier is not None
        save_findings(rt.store, finding(end=datetime.now(UTC).replace(microsecond=0)))
        deadline = time.monotonic() + 20
        while not receiver.bodies and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        rt.stop()
    assert [a["name"] for a in receiver.alerts()] == ["dr_traffic"]
    assert rt.notifier._thread is None  # stopped with the process
