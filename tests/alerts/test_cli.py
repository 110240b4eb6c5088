"""``netobs alerts send [--dry-run] [--since]`` through the real CLI on an embedded store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from netobs.config import ChdbStoreConfig, StoreConfig
from netobs.store import make_store
from netobs_app.cli import main
from tests.alerts.conftest import SECRET, finding, save_findings, save_violation
from tests.services._proc import free_port


@pytest.fixture
def config_file(tmp_path, receiver):
    path = tmp_path / "chdb"
    s = make_store(StoreConfig(retention_days=0, chdb=ChdbStoreConfig(path=path)))
    s.start()
    save_findings(s, finding(end=datetime.now(UTC).replace(microsecond=0)))  # firing now
    save_violation(s, severity="low")  # below the default threshold (warning)
    s.stop()
    cfg = tmp_path / "netobs.yaml"
    cfg.write_text(
        f"store: {{retention_days: 0, chdb: {{path: '{path}'}}}}\n"
        f"control: {{listen: '127.0.0.1:{free_port()}'}}\n"
        "alerts:\n"
        f"  sinks:\n    hook: {{type: webhook, url: '{receiver.url}', secret: {SECRET}, retries: 0}}\n"
        "  routes:\n    - {name: noc, sinks: [hook]}\n"
    )
    return str(cfg)


def test_dry_run_then_send_then_since(config_file, receiver, capsys):
    assert main(["-c", config_file, "alerts", "send", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "noc/hook: would send 1 alerts" in out.out and "[critical] firing findings/dr_traffic" in out.out
    assert receiver.requests == 0

    assert main(["-c", config_file, "alerts", "send"]) == 0
    assert "read 1 findings, 0 violations; sent 1 alerts; 0 failed" in capsys.readouterr().err
    assert len(receiver.alerts()) == 1
    assert main(["-c", config_file, "alerts", "send"]) == 0  # nothing new, nothing due
    assert len(receiver.alerts()) == 1

    assert main(["-c", config_file, "alerts", "send", "--dry-run", "--since", "2h"]) == 0
    assert "read 1 findings" in capsys.readouterr().err  # re-read, but already delivered: nothing due


def test_sink_down_exits_1_and_bad_since_is_usage(config_file, receiver, capsys):
    receiver.mode = "error"
    assert main(["-c", config_file, "alerts", "send"]) == 1
    assert "noc/hook: POST http://127.0.0.1" in capsys.readouterr().err
    receiver.mode = "ok"
    assert main(["-c", config_file, "alerts", "send"]) == 0  # delivered on the next run
    assert len(receiver.alerts()) == 1
    with pytest.raises(SystemExit) as e:
        main(["-c", config_file, "alerts", "send", "--since", "yesterday"])
    assert e.value.code == 2
