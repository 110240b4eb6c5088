"""A listener that cannot start ends the process with a non-zero status before anything says
ready; a listener that dies later is reported dead (the runtime then stops the process)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from collectors.config import CollectorConfig, ListenerConfig
from collectors.service import UdpCollector
from netobs.config import InprocessTransportConfig
from netobs.transport.inprocess import InprocessTransport

pytestmark = pytest.mark.integration


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_collect(tmp_path, state_dir: str) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        control = f"127.0.0.1:{s.getsockname()[1]}"
    config = tmp_path / "netobs.yaml"
    config.write_text(
        f"collector: {{state_dir: '{state_dir}', listeners: [{{listen: '127.0.0.1:{free_udp_port()}'}}]}}\n"
        f"control: {{listen: '{control}'}}\n"
        f"transport: {{spool: {{dir: '{tmp_path / 'spool'}'}}}}\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "netobs", "--config", str(config), "collect"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_uncreatable_state_dir_exits_non_zero(tmp_path):
    (tmp_path / "a-file").write_text("not a directory\n")
    r = run_collect(tmp_path, str(tmp_path / "a-file" / "state"))
    assert r.returncode == 1, r.stderr
    assert "cannot use template state" in r.stderr and "Traceback" not in r.stderr
    assert "netobs ready" not in r.stderr


def test_deeply_nested_template_file_exits_non_zero(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    config_port = free_udp_port()
    nested = "[" * 200_000 + "]" * 200_000  # the listener's template state file
    (state / f"templates-127.0.0.1_{config_port}.json").write_text(nested)
    control_port = free_udp_port()
    config = tmp_path / "netobs.yaml"
    config.write_text(
        f"collector: {{state_dir: '{state}', listeners: [{{listen: '127.0.0.1:{config_port}'}}]}}\n"
        f"control: {{listen: '127.0.0.1:{control_port}'}}\n"
        f"transport: {{spool: {{dir: '{tmp_path / 'spool'}'}}}}\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "netobs", "--config", str(config), "collect"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 1, r.stderr
    assert "RecursionError" in r.stderr and "cannot use template state" in r.stderr
    assert "netobs ready" not in r.stderr


def test_a_listener_that_dies_is_reported(tmp_path):
    cfg = CollectorConfig(listeners=(ListenerConfig(listen="127.0.0.1:0"),))
    c = UdpCollector(cfg, InprocessTransport(InprocessTransportConfig()).producer())
    c.start()
    try:
        assert c.dead() == {}
        c._sockets[0].close()  # the socket fails under the listener
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not c.dead():
            time.sleep(0.05)
        (why,) = c.dead().values()
        assert why
    finally:
        c.stop()
