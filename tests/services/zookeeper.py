"""A real ZooKeeper (Debian's ``zookeeperd`` 3.8) run by hand, and a ClickHouse server using it.

ClickHouse 18.16 has no ``insert_deduplication_token``; its ReplicatedMergeTree tables drop
a re-inserted block identical to a recent one, and they need ZooKeeper. ZooKeeper runs as
a standalone server on a free loopback port with its own data dir, stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import _require
from tests.services._proc import ManagedProcess, free_port
from tests.services.clickhouse_server import ClickHouseError, ClickHouseServer

ZOOKEEPER_JAR = Path(os.environ.get("NETOBS_ZOOKEEPER_JAR", "/usr/share/java/zookeeper.jar"))
MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"

_ZK_XML = """<?xml version="1.0"?>
<yandex>
  <zookeeper><node><host>127.0.0.1</host><port>{port}</port></node></zookeeper>
  <macros><shard>01</shard><replica>r1</replica></macros>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>{interserver_port}</interserver_http_port>
</yandex>
"""


#: A cluster of one shard with one replica (the server itself), so that ``ON CLUSTER`` DDL and
#: Distributed tables run on a single 18.16 server; the DDL queue lives in ZooKeeper.
CLUSTER = "netobs_test"
_CLUSTER_XML = """<?xml version="1.0"?>
<yandex>
  <remote_servers><{name}><shard><replica><host>127.0.0.1</host><port>{port}</port></replica></shard></{name}>
  </remote_servers>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
</yandex>
"""


class ZooKeeperError(RuntimeError):
    """ZooKeeper could not be started; the message ends with its log's tail."""


class ZooKeeper(ManagedProcess):
    """One standalone ZooKeeper in ``work_dir`` on a free loopback port."""

    host = "127.0.0.1"

    def __init__(self, work_dir: Path | str, java: str | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.java = java or shutil.which("java") or "java"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def check_installed(self) -> str | None:
        if not shutil.which(self.java):
            return "java not found (install a JDK 17+)"
        if not ZOOKEEPER_JAR.exists():
            return f"{ZOOKEEPER_JAR} missing (apt-get install zookeeperd; scripts/install-services.sh)"
        return None

    def start(self, timeout: float = 60.0) -> ZooKeeper:
        if self.proc and self.proc.poll() is None:
            return self
        why = self.check_installed()
        if why:
            raise ZooKeeperError(why)
        if not self.port:
            self.port = free_port()
            (self.work_dir / "data").mkdir(parents=True, exist_ok=True)
            (self.work_dir / "zoo.cfg").write_text(
                "tickTime=500\ninitLimit=10\nsyncLimit=5\n"
                f"dataDir={self.work_dir / 'data'}\nclientPort={self.port}\nclientPortAddress=127.0.0.1\n"
                "admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\nmaxClientCnxns=0\n"
            )
        cmd = [
            self.java,
            "-Xms64m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            f"-Dzookeeper.log.dir={self.work_dir}",
            "-cp",
            f"/etc/zookeeper/conf:{ZOOKEEPER_JAR}",
            MAIN,
            str(self.work_dir / "zoo.cfg"),
        ]
        self.launch(
            cmd,
            self.work_dir,
            self.work_dir / "zookeeper.log",
            self.ruok,
            timeout,
            ZooKeeperError,
            "zookeeper",
        )
        return self

    def ruok(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as s:
                s.sendall(b"ruok")
                return s.recv(16) == b"imok"
        except OSError:
            return False


def replicated_server(work_dir: Path, zk: ZooKeeper) -> ClickHouseServer:
    """A ClickHouse server (not started) whose config.d points at ``zk``, with what a replica
    needs besides: an interserver HTTP port (replicated merges and fetches go through it;
    without one a replicated table never merges and refuses inserts after ~300 parts)."""
    server = ClickHouseServer(work_dir)
    conf_d = Path(work_dir) / "config.d"
    conf_d.mkdir(parents=True, exist_ok=True)
    xml = _ZK_XML.format(port=zk.port, interserver_port=free_port())
    (conf_d / "zookeeper.xml").write_text(xml)
    return server


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeper]:
    """A running ZooKeeper for the session; skips (laptop) or fails (CI) without one."""
    zk = ZooKeeper(tmp_path_factory.mktemp("zookeeper"))
    why = zk.check_installed()
    if why:
        _require.unavailable(why)
    try:
        zk.start()
    except (ZooKeeperError, OSError) as exc:
        _require.unavailable(f"ZooKeeper failed to start: {exc}")
    yield zk
    zk.stop()


@pytest.fixture(scope="module")
def clickhouse_replicated(
    tmp_path_factory: pytest.TempPathFactory, zookeeper: ZooKeeper
) -> Iterator[ClickHouseServer]:
    """A ClickHouse 18.16 server with ZooKeeper, so its tables can be ReplicatedMergeTree."""
    server = replicated_server(tmp_path_factory.mktemp("clickhouse-zk"), zookeeper)
    if not server.command:
        _require.unavailable("clickhouse-server not installed (run scripts/install-services.sh)")
    try:
        server.start()
    except (ClickHouseError, OSError) as exc:
        _require.unavailable(f"ClickHouse server failed to start: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def clickhouse_cluster(
    tmp_path_factory: pytest.TempPathFactory, zookeeper: ZooKeeper
) -> Iterator[ClickHouseServer]:
    """A ClickHouse 18.16 server with ZooKeeper that is the one replica of cluster :data:`CLUSTER`."""
    work_dir = tmp_path_factory.mktemp("clickhouse-cluster")
    server = replicated_server(work_dir, zookeeper)
    if not server.command:
        _require.unavailable("clickhouse-server not installed (run scripts/install-services.sh)")
    server.port, server.http_port = free_port(), free_port()
    server._write_config()  # the ports are known before start, for the cluster definition
    (work_dir / "config.d" / "cluster.xml").write_text(_CLUSTER_XML.format(name=CLUSTER, port=server.port))
    try:
        server.start()
    except (ClickHouseError, OSError) as exc:
        _require.unavailable(f"ClickHouse server failed to start: {exc}")
    yield server
    server.stop()
