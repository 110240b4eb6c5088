"""A real Prometheus Alertmanager (Debian's ``prometheus-alertmanager`` 0.25) run by hand on loopback.

No cluster (``--cluster.listen-address=`` empty), its own storage directory, a receiver that
drops notifications; basic auth (a bcrypt hash in ``--web.config.file``) when asked for. Tests
post alerts with the notifier and read them back with ``GET /api/v2/alerts``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import _require
from tests.services._proc import ManagedProcess, free_port

BINARY = os.environ.get("NETOBS_ALERTMANAGER", "prometheus-alertmanager")
USER, PASSWORD = "noc", "am-test-pw"

_CONFIG = "route:\n  receiver: devnull\n  group_wait: 1h\nreceivers:\n  - name: devnull\n"


class AlertmanagerError(RuntimeError):
    """Alertmanager could not be started; the message ends with its log's tail."""


def _bcrypt(password: str) -> str | None:
    """A bcrypt hash for Alertmanager's web config (glibc's crypt; None where it is missing)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # removed in Python 3.13; the project runs 3.11

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    except (ImportError, AttributeError, OSError):
        return None


class Alertmanager(ManagedProcess):
    """One Alertmanager in ``work_dir`` on a free loopback port; with ``basic_auth`` it wants USER/PASSWORD."""

    host = "127.0.0.1"

    def __init__(self, work_dir: Path | str, basic_auth: bool = False) -> None:
        self.work_dir = Path(work_dir)
        self.basic_auth = basic_auth
        self.port = 0
        self.command = shutil.which(BINARY) or (
            "/usr/bin/prometheus-alertmanager" if Path("/usr/bin/prometheus-alertmanager").exists() else None
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> Alertmanager:
        if self.proc and self.proc.poll() is None:
            return self
        if not self.command:
            raise AlertmanagerError("prometheus-alertmanager not installed (scripts/install-services.sh)")
        self.port = self.port or free_port()
        (self.work_dir / "am.yml").write_text(_CONFIG)
        cmd = [
            self.command,
            f"--web.listen-address={self.host}:{self.port}",
            "--cluster.listen-address=",
            f"--storage.path={self.work_dir / 'data'}",
            f"--config.file={self.work_dir / 'am.yml'}",
        ]
        if self.basic_auth:
            hashed = _bcrypt(PASSWORD)
            if hashed is None:
                raise AlertmanagerError("no bcrypt available for Alertmanager basic auth")
            (self.work_dir / "web.yml").write_text(f"basic_auth_users:\n  {USER}: '{hashed}'\n")
            cmd.append(f"--web.config.file={self.work_dir / 'web.yml'}")
        log = self.work_dir / "alertmanager.log"
        self.launch(cmd, self.work_dir, log, self._ready, timeout, AlertmanagerError, "alertmanager")
        return self

    def _request(self, path: str) -> urllib.request.Request:
        req = urllib.request.Request(self.url + path)
        if self.basic_auth:
            req.add_header(
                "Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            )
        return req

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds as active now (resolved ones are not listed)."""
        with urllib.request.urlopen(self._request("/api/v2/alerts"), timeout=10) as resp:
            return list(json.load(resp))

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self._request("/-/ready"), timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    """A running Alertmanager with basic auth; skips (laptop) or fails (CI) without one."""
    am = Alertmanager(tmp_path_factory.mktemp("alertmanager"), basic_auth=True)
    if not am.command:
        _require.unavailable("prometheus-alertmanager not installed (run scripts/install-services.sh)")
    try:
        am.start()
    except (AlertmanagerError, OSError) as exc:
        _require.unavailable(f"Alertmanager failed to start: {exc}")
    yield am
    am.stop()
