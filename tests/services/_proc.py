"""Process plumbing shared by the service fixtures: free ports, child lifetime, stopping by PID."""

from __future__ import annotations

import atexit
import ctypes
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


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


class ManagedProcess:
    """Life of a server process the tests start by hand: spawned with its output in a log file,
    tracked until stopped, stopped by PID (also at interpreter exit), restarted on the same
    ports and data. Subclasses provide ``start(timeout)``."""

    proc: subprocess.Popen | None = None
    #: Where the child's output goes (set by :meth:`spawn`).
    spawn_log: Path | None = None

    def spawn(self, cmd: list[str], cwd: Path, log: Path) -> None:
        self.spawn_log = log
        out = open(log, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                preexec_fn=die_with_parent,
            )
        finally:
            out.close()
        _RUNNING.add(self)

    def launch(
        self,
        cmd: list[str],
        cwd: Path,
        log: Path,
        ready: Callable[[], bool],
        timeout: float,
        error: type[Exception],
        name: str,
    ) -> None:
        """Spawn, then poll ``ready()`` until it holds; if the child exits or ``timeout`` passes
        first, stop it and raise ``error`` ending with the tail of its logs."""
        self.spawn(cmd, cwd, log)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise error(f"{name} exited with {self.proc.returncode}\n{self.log_tail()}")
                if ready():
                    return
                time.sleep(0.2)
            raise error(f"{name} not ready after {timeout:.0f}s\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def log_files(self) -> list[Path]:
        """The files whose tails explain a failed start; services add their own logs."""
        return [self.spawn_log] if self.spawn_log else []

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in self.log_files():
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts) or "(no log)"

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        proc, self.proc = self.proc, None
        _RUNNING.discard(self)
        terminate(proc, timeout)

    def kill(self) -> None:
        """SIGKILL at once (a crash); ``start()`` brings it back on the same ports and data."""
        proc, self.proc = self.proc, None
        _RUNNING.discard(self)
        kill(proc)

    def restart(self, timeout: float = 60.0):
        """Stop, then start again on the same ports and data directory."""
        self.stop()
        return self.start(timeout)  # type: ignore[attr-defined]


_RUNNING: set[ManagedProcess] = set()


@atexit.register
def _stop_all() -> None:
    for service in list(_RUNNING):
        service.stop()
