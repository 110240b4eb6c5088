"""SIGKILL of the embedded process under load: what loses flows is only what had not reached the
spool (datagrams in the kernel's socket buffer, flows younger than ``batch_max_delay_ms`` in the
collector). Killed 0.3 s after the last datagram (> 0.2 s, the default delay), the restarted
process must therefore end with every flow sent, once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from collectors.decoder import Decoder
from collectors.replay import load_payloads
from netobs.control import remote_health, remote_query

pytestmark = pytest.mark.integration

SFLOW = "tests/testdata/ovs-sflow.pcap"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(config, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "netobs", "--config", str(config), "run"], stdout=log, stderr=log
    )


def wait_ready(proc: subprocess.Popen, control: str, logfile) -> None:
    for _ in range(150):
        assert proc.poll() is None, logfile.read_text()
        try:
            remote_health(control)
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"netobs run did not come up:\n{logfile.read_text()}")


def count(control: str) -> int:
    return int(remote_query(control, "SELECT count() AS n FROM netobs.flows").column("n")[0].as_py())


def test_sigkill_under_load_loses_nothing_that_reached_the_spool(tmp_path):
    payloads = load_payloads(SFLOW)
    per_round = sum(len(Decoder().decode(p, "127.0.0.9", 0).flows) for p in payloads)
    udp, control = free_port(socket.SOCK_DGRAM), f"127.0.0.1:{free_port()}"
    config = tmp_path / "netobs.yaml"
    config.write_text(
        f"collector: {{listeners: [{{listen: '127.0.0.1:{udp}'}}]}}\n"
        f"store: {{chdb: {{path: '{tmp_path / 'chdb'}'}}}}\n"
        f"control: {{listen: '{control}'}}\n"
    )
    logfile = tmp_path / "run.log"
    with open(logfile, "w") as log:
        proc = start(config, log)
        try:
            wait_ready(proc, control, logfile)
            rounds = 0
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.9", 0))
                end = time.monotonic() + 3.0
                while time.monotonic() < end and rounds < 2000:  # ~1k datagrams/s for 3 s
                    for p in payloads:
                        s.sendto(p, ("127.0.0.1", udp))
                    rounds += 1
                    time.sleep(len(payloads) / 1000)
            time.sleep(0.3)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            sent = rounds * per_round
            proc = start(config, log)  # the restarted process replays what the spool kept
            wait_ready(proc, control, logfile)
            deadline, got = time.monotonic() + 60, 0
            while time.monotonic() < deadline:
                got = count(control)
                if got >= sent:
                    time.sleep(2)  # a duplicate would show now
                    got = count(control)
                    break
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
    assert got == sent, f"{sent} flows sent, {got} stored after SIGKILL and restart"
