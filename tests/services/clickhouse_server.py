"""A real ClickHouse server (Debian's ``clickhouse-server`` 18.16) run by hand for driver tests.

It exercises the clickhouse-driver path (native protocol, columnar insert, auth, errors, reconnect)
against a real server. 18.16 is old: no TTL, DateTime64, IPv4/IPv6, Map, codecs, window functions.
Through clickhouse-driver never send inline ``INSERT ... VALUES (...)`` to it (it hangs); pass the
rows as a parameter: ``client.execute("INSERT INTO t (a, b) VALUES", rows)``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest

from tests.services import _require
from tests.services._proc import ManagedProcess, free_port

NETOBS_USER = "netobs"
NETOBS_PASSWORD = "netobs-test-pw"
#: A read-only user for the control endpoint's viewers: profile readonly=2 (reads only; the
#: endpoint raises it to 1 per query with its own settings), databases limited to these.
VIEWER_USER = "netobs_viewer"
VIEWER_PASSWORD = "viewer-test-pw"
VIEWER_DATABASES = ("netobs_sec",)

_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>{log_dir}/server.log</log>
    <errorlog>{log_dir}/server.err.log</errorlog>
    <size>50M</size>
    <count>1</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{tcp_port}</tcp_port>
  <http_port>{http_port}</http_port>
  <path>{data_dir}/</path>
  <tmp_path>{data_dir}/tmp/</tmp_path>
  <user_files_path>{data_dir}/user_files/</user_files_path>
  <format_schema_path>{data_dir}/format_schemas/</format_schema_path>
  <users_config>{users_xml}</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <shutdown_wait_unfinished>2</shutdown_wait_unfinished>
  <mlock_executable>false</mlock_executable>
</yandex>
"""

_USER = """    <{name}>
      <password>{password}</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </{name}>
"""

_VIEWER = """    <{name}>
      <password>{password}</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>viewer</profile>
      <quota>default</quota>
      <allow_databases>{databases}</allow_databases>
    </{name}>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default>
    <viewer><readonly>2</readonly><max_memory_usage>1000000000</max_memory_usage></viewer></profiles>
  <users>
{users}  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
"""


class ClickHouseError(RuntimeError):
    """The server could not be started; the message ends with the server log's tail."""


def find_server_command() -> list[str] | None:
    """The command that runs a ClickHouse server: ``$NETOBS_CLICKHOUSE_SERVER``, Debian's
    ``/usr/sbin/clickhouse-server`` (often not on a non-root PATH), or ``clickhouse server``."""
    env = os.environ.get("NETOBS_CLICKHOUSE_SERVER")
    if env:
        return env.split()
    for cand in (
        shutil.which("clickhouse-server"),
        "/usr/sbin/clickhouse-server",
        "/usr/bin/clickhouse-server",
    ):
        if cand and os.access(cand, os.X_OK):
            return [cand]
    single = shutil.which("clickhouse")
    return [single, "server"] if single else None


class ClickHouseServer(ManagedProcess):
    """One server in ``work_dir`` on free loopback ports; ports and data survive ``restart()``."""

    host = "127.0.0.1"

    def __init__(self, work_dir: Path | str, command: list[str] | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.command = command or find_server_command()
        self.port = 0
        self.http_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_dir = self.work_dir / "log"
        self.config_file = self.work_dir / "config.xml"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def client(self, **kwargs: Any) -> Any:
        """A clickhouse-driver ``Client`` for this server (user ``default`` unless given)."""
        from clickhouse_driver import Client

        kwargs.setdefault("connect_timeout", 5)
        kwargs.setdefault("send_receive_timeout", 30)
        return Client(self.host, port=self.port, **kwargs)

    def start(self, timeout: float = 60.0) -> ClickHouseServer:
        """Write the config (first start only), launch the server, wait until ``SELECT 1`` answers."""
        if self.proc and self.proc.poll() is None:
            return self
        if not self.command:
            raise ClickHouseError("clickhouse-server not found (apt-get install clickhouse-server)")
        self.prepare()
        cmd = [*self.command, f"--config-file={self.config_file}"]
        log = self.work_dir / "stdout.log"
        self.launch(cmd, self.work_dir, log, self._ready, timeout, ClickHouseError, "clickhouse-server")
        return self

    def prepare(self) -> ClickHouseServer:
        """Pick the ports and write the config without starting (a server that comes up late)."""
        if not self.config_file.exists():
            self.port, self.http_port = free_port(), free_port()
            self._write_config()
        return self

    def restart(self, timeout: float = 60.0) -> ClickHouseServer:
        return super().restart(timeout)

    def log_files(self) -> list[Path]:
        return [*super().log_files(), self.log_dir / "server.err.log", self.log_dir / "server.log"]

    def _write_config(self) -> None:
        data = self.work_dir / "data"
        for d in (data / "tmp", data / "user_files", data / "format_schemas", self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        users_xml = self.work_dir / "users.xml"
        users = _USER.format(name="default", password="") + _USER.format(
            name=NETOBS_USER, password=escape(NETOBS_PASSWORD)
        )
        users += _VIEWER.format(
            name=VIEWER_USER,
            password=escape(VIEWER_PASSWORD),
            databases="".join(f"<database>{d}</database>" for d in VIEWER_DATABASES),
        )
        users_xml.write_text(_USERS.format(users=users))
        self.config_file.write_text(
            _CONFIG.format(
                log_dir=escape(str(self.log_dir)),
                data_dir=escape(str(data)),
                users_xml=escape(str(users_xml)),
                tcp_port=self.port,
                http_port=self.http_port,
            )
        )

    def _ready(self) -> bool:
        client = self.client(connect_timeout=1, send_receive_timeout=5)
        try:
            return bool(client.execute("SELECT 1") == [(1,)])
        except Exception:  # not listening yet
            return False
        finally:
            client.disconnect()


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    """A running ClickHouse 18.16 server for the session; skips (laptop) or fails (CI) without one."""
    server = ClickHouseServer(tmp_path_factory.mktemp("clickhouse"))
    if not server.command:
        _require.unavailable("clickhouse-server not installed (run scripts/install-services.sh)")
    try:
        server.start()
    except (ClickHouseError, OSError) as exc:
        _require.unavailable(f"ClickHouse server failed to start: {exc}")
    yield server
    server.stop()
