"""Health that degrades on real kernel drops; exclusive UDP ports; config check and dump."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys

import pytest

from collectors.config import ListenerConfig
from collectors.service import _bind
from collectors.sockstats import socket_drops
from netobs.config import HealthConfig
from netobs_app.health import HealthMonitor


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_kernel_drops_degrade_health_and_warn_once_per_interval(caplog):
    """Before: /health said ok while the kernel dropped 25,732 of 37,337 datagrams."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    clock = Clock()
    mon = HealthMonitor(HealthConfig(drop_window_s=60, warn_interval_s=60), clock=clock)
    try:
        assert mon.sample(socket_drops=socket_drops(rx)) == {}
        for _ in range(500):  # nothing reads: the tiny buffer overflows
            tx.sendto(b"x" * 1200, rx.getsockname())
        drops = socket_drops(rx)
        assert drops and drops > 0
        with caplog.at_level(logging.WARNING, "netobs.health"):
            clock.t += 1
            reasons = mon.sample(socket_drops=drops)
            assert f"dropped {drops} datagrams" in reasons["socket_drops"]
            clock.t += 1
            mon.sample(socket_drops=drops)  # still within the window: still degraded, no new warning
        assert len([r for r in caplog.records if "socket_drops" in r.getMessage()]) == 1
        clock.t += 61
        assert "socket_drops" not in mon.sample(socket_drops=drops)  # the window passed
    finally:
        rx.close()
        tx.close()


def test_silent_collector_lag_and_failing_jobs_degrade():
    clock = Clock()
    mon = HealthMonitor(HealthConfig(silent_after_s=300, consumer_lag_max=10), clock=clock)
    assert mon.sample(datagrams=0) == {}
    clock.t += 301
    r = mon.sample(datagrams=0, consumer_lag={"flows/0": 7, "flows/1": 9}, failing_jobs={"analyze": "boom"})
    assert set(r) == {"collector", "consumer_lag", "scheduled:analyze"}
    assert "flows/1: 9" in r["consumer_lag"]
    assert mon.sample(datagrams=5, consumer_lag={"flows/0": 1}) == {}


def test_second_process_on_a_port_fails_with_a_clear_message():
    first = _bind(ListenerConfig(listen="127.0.0.1:0"))
    port = first.getsockname()[1]
    try:
        with pytest.raises(OSError, match="already in use.*reuse_port"):
            _bind(ListenerConfig(listen=f"127.0.0.1:{port}"))
        # opt-in: every process sharing the port sets reuse_port
        a = _bind(ListenerConfig(listen="127.0.0.1:0", reuse_port=True))
        b = _bind(ListenerConfig(listen=f"127.0.0.1:{a.getsockname()[1]}", reuse_port=True))
        a.close()
        b.close()
    finally:
        first.close()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netobs_app", *args], capture_output=True, text=True, timeout=120
    )


def test_config_check_refuses_what_run_refuses(tmp_path, capsys):
    from netobs_app.cli import main

    cases = {
        "control:\n  listen: foo\n": "host:port",
        "control:\n  listen: 0.0.0.0:9464\n": "not a loopback address",
        "control:\n  auth:\n    principals_file: /nonexistent/p.yaml\n": "cannot read",
        "collector:\n  listeners:\n    - {listen: 'foo'}\n": "listen",
        "transport:\n  kafka:\n    security_protocol: SASL_SSL\n": "sasl_mechanism",
        "alerts:\n  sinks:\n    h: {type: webhook, url: 'http://127.0.0.1:1/'}\n": "secret",
    }
    for text, why in cases.items():
        f = tmp_path / "c.yaml"
        f.write_text(text)
        assert main(["config", "--check", str(f)]) == 2, text
        assert why in capsys.readouterr().err


@pytest.mark.slow
def test_config_check_prints_no_traceback(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("control:\n  listen: foo\n")
    p = run_cli("config", "--check", str(f))
    assert p.returncode == 2 and "host:port" in p.stderr and "Traceback" not in p.stderr, p.stderr


@pytest.mark.slow
def test_config_dump_masks_credentials_in_urls(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(
        "alerts:\n  sinks:\n    hook: {type: webhook, url: 'https://user:pw-secret@hooks.example/x?token=tok-secret', "
        "secret: hmac-secret}\n"
    )
    p = run_cli("--config", str(f), "config", "--dump")
    assert p.returncode == 0, p.stderr
    assert "pw-secret" not in p.stdout and "tok-secret" not in p.stdout and "hmac-secret" not in p.stdout
    assert "https://user:***@hooks.example/x?token=***" in p.stdout


def test_token_command_prints_a_token_and_the_entry_that_accepts_it(capsys):
    import yaml

    from netobs.auth import Authenticator
    from netobs.config import ControlAuthConfig
    from netobs_app.cli import main

    assert main(["token", "--name", "alice", "--role", "viewer", "--tenant", "A"]) == 0
    out = capsys.readouterr().out.splitlines()
    token, entry = out[0], yaml.safe_load("\n".join(out[2:]))
    auth = Authenticator(ControlAuthConfig(principals=entry))
    p = auth.authenticate({"authorization": f"Bearer {token}"}, None, "10.0.0.1")
    assert (p.name, p.role, p.tenants) == ("alice", "viewer", ("A",))
    assert token not in yaml.safe_dump(entry)  # only the hash is stored
