"""Process plumbing shared by the service fixtures: free ports, child lifetime, stopping by PID."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Looked up in the parent: between fork and exec the child must not load libraries or take locks.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """Child pre-exec hook: the kernel sends SIGTERM if the spawning thread dies without cleanup.

    PR_SET_PDEATHSIG follows the *thread* that forked, so start services from a long-lived thread.
    """
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def terminate(proc: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; nothing if already gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def kill(proc: subprocess.Popen | None) -> None:
    """SIGKILL at once (a crash)."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(10)
