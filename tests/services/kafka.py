"""A real single-node Apache Kafka 4.x broker (KRaft, broker+controller) for tests.

The jars come from ``scripts/install-services.sh`` (Maven Central, cached under
``$NETOBS_CACHE/kafka/libs``). The broker runs as a child process on free loopback ports and is
stopped by PID at teardown and at interpreter exit, so no JVM outlives the test session.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import _require
from tests.services._proc import ManagedProcess, free_port

REPO = Path(__file__).resolve().parents[2]
LOG4J_CONFIG = REPO / "scripts" / "kafka" / "log4j2.properties"
JVM_OPTS = "-Xms256m -Xmx512m -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true".split()
READY_LINE = "Kafka Server started"


class KafkaError(RuntimeError):
    """The broker could not be started or stopped; the message ends with the broker log's tail."""


def default_libs_dir() -> Path:
    """``$NETOBS_KAFKA_LIBS``, else ``$NETOBS_CACHE/kafka/libs`` (cache defaults to ~/.cache/netobs)."""
    if os.environ.get("NETOBS_KAFKA_LIBS"):
        return Path(os.environ["NETOBS_KAFKA_LIBS"])
    cache = os.environ.get("NETOBS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "netobs")
    return Path(cache) / "kafka" / "libs"


class KafkaBroker(ManagedProcess):
    """One KRaft broker+controller in ``work_dir``; ``start()``/``stop()``/``restart()`` by PID."""

    def __init__(
        self,
        work_dir: Path | str,
        *,
        libs_dir: Path | str | None = None,
        num_partitions: int = 1,
        java: str | None = None,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.libs_dir = Path(libs_dir) if libs_dir else default_libs_dir()
        self.num_partitions = num_partitions
        self.java = java or shutil.which("java") or "java"
        self.port = 0
        self.controller_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = self.work_dir / "logs" / "server.log"
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def check_installed(self) -> str | None:
        """Why this broker cannot run here, or None when java and the jars are present."""
        if not shutil.which(self.java):
            return "java not found (install a JDK 17+)"
        if not any(self.libs_dir.glob("kafka_2.13-*.jar")):
            return f"Kafka jars not in {self.libs_dir} (run scripts/install-services.sh)"
        return None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> KafkaBroker:
        """Write config and format storage (first start only), launch the JVM, wait until ready."""
        if self.proc and self.proc.poll() is None:
            return self
        why = self.check_installed()
        if why:
            raise KafkaError(why)
        self.prepare()
        if not self._formatted:
            self._format_storage()
            self._formatted = True
        cmd = self._java("kafka.Kafka", str(self.work_dir / "server.properties"))
        log = self.work_dir / "stdout.log"
        self.launch(cmd, self.work_dir, log, self._ready_check(), timeout, KafkaError, "broker")
        return self

    def prepare(self) -> KafkaBroker:
        """Pick the ports and write the config, without starting: a client can be pointed at
        ``bootstrap`` before the broker exists (a broker that comes up late)."""
        if not self.port:
            self.port, self.controller_port = free_port(), free_port()
            self._write_config()
        return self

    def restart(self, timeout: float = 90.0) -> KafkaBroker:
        return super().restart(timeout)

    def log_files(self) -> list[Path]:
        return [*super().log_files(), self.log_file]

    # ---- internals ---------------------------------------------------------------------------
    def _classpath(self) -> str:
        return str(self.libs_dir / "*")

    def _write_config(self) -> None:
        data = self.work_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": str(self.num_partitions),
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After kill() the controller refuses the new incarnation until the old session expires
            # (default 9 s); a short session makes crash/restart tests quick.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
        }
        text = "".join(f"{k}={v}\n" for k, v in props.items())
        (self.work_dir / "server.properties").write_text(text)

    def _java(self, *args: str) -> list[str]:
        return [
            self.java,
            *JVM_OPTS,
            f"-Dkafka.logs.dir={self.log_file.parent}",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            self._classpath(),
            *args,
        ]

    def _format_storage(self) -> None:
        # With a static controller.quorum.voters list, StorageTool format refuses --standalone.
        cmd = self._java(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _cluster_id(),
            "-c",
            str(self.work_dir / "server.properties"),
        )
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise KafkaError(f"kafka storage format failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")

    def _ready_check(self) -> Callable[[], bool]:
        """Ready = this run logged READY_LINE and an admin metadata call answers."""
        start_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        seen = False

        def ready() -> bool:
            nonlocal seen
            if not seen and self.log_file.exists():
                with open(self.log_file, "rb") as f:
                    f.seek(start_offset)
                    seen = READY_LINE.encode() in f.read()
            return seen and _metadata_ok(self.bootstrap)

        return ready


def _cluster_id() -> str:
    """A Kafka cluster id as ``StorageTool random-uuid`` makes it, without a JVM start.

    One in 32 such ids starts with '-', which the storage tool's argument parser then
    takes for an option; those are drawn again.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _metadata_ok(bootstrap: str) -> bool:
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=5000, client_id="netobs-test-ready"
        )
    except Exception:
        return False
    try:
        admin.describe_cluster()
        return True
    except Exception:
        return False
    finally:
        admin.close()


def wait_topic(bootstrap: str, name: str, partitions: int, timeout: float = 30.0) -> None:
    """Block until every partition of ``name`` has a leader in the cluster metadata."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="netobs-test-topics")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                (desc,) = admin.describe_topics([name])
                parts = desc.get("partitions") or []
                if (
                    desc.get("error_code", 0) == 0
                    and len(parts) == partitions
                    and all(p.get("leader", -1) >= 0 for p in parts)
                ):
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise KafkaError(f"topic {name} not visible with {partitions} partitions after {timeout:.0f}s")
    finally:
        admin.close()


# ---- pytest fixtures -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A running broker for the whole session; skips (laptop) or fails (CI) when it can't start."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"), num_partitions=3)
    why = broker.check_installed()
    if why:
        _require.unavailable(why)
    try:
        broker.start()
    except (KafkaError, OSError, subprocess.SubprocessError) as exc:
        _require.unavailable(f"Kafka broker failed to start: {exc}")
    yield broker
    broker.stop()


@pytest.fixture
def topic_factory(kafka_broker: KafkaBroker, request: pytest.FixtureRequest) -> Callable[..., str]:
    """``topic_factory(partitions=3) -> name``: a fresh, uniquely named topic, ready for use."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    base = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:80].strip("-.") or "test"

    def make(partitions: int = 3, **configs: str) -> str:
        name = f"{base}-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap, client_id="netobs-test-topics")
        try:
            admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=1, topic_configs=dict(configs))]
            )
        finally:
            admin.close()
        wait_topic(kafka_broker.bootstrap, name, partitions)
        return name

    return make


class SecureKafkaBroker(KafkaBroker):
    """A broker with a SASL_SSL listener besides PLAINTEXT: SCRAM-SHA-512 users (added at format
    time), a PEM key and certificate (openssl, self-signed for 127.0.0.1)."""

    def __init__(self, work_dir: Path | str, users: dict[str, str], **kwargs: Any) -> None:
        super().__init__(work_dir, **kwargs)
        self.users = users
        self.secure_port = 0
        self.ca_file = self.work_dir / "cert.pem"

    @property
    def secure_bootstrap(self) -> str:
        return f"127.0.0.1:{self.secure_port}"

    def _write_config(self) -> None:
        self.secure_port = free_port()
        key = self.work_dir / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(self.ca_file)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        keystore = self.work_dir / "keystore.pem"
        keystore.write_text(key.read_text() + self.ca_file.read_text())
        super()._write_config()
        props = (self.work_dir / "server.properties").read_text()
        plain, ctrl = f"PLAINTEXT://127.0.0.1:{self.port}", f"CONTROLLER://127.0.0.1:{self.controller_port}"
        secure = f"SASL_SSL://127.0.0.1:{self.secure_port}"
        props = props.replace(f"listeners={plain},{ctrl}", f"listeners={plain},{ctrl},{secure}")
        props = props.replace(f"advertised.listeners={plain}", f"advertised.listeners={plain},{secure}")
        props = props.replace("CONTROLLER:PLAINTEXT\n", "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL\n")
        props += (
            "sasl.enabled.mechanisms=SCRAM-SHA-512\n"
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
            "ssl.keystore.type=PEM\n"
            f"ssl.keystore.location={keystore}\n"
        )
        (self.work_dir / "server.properties").write_text(props)

    def _format_storage(self) -> None:
        scram = [
            a
            for n, pw in self.users.items()
            for a in ("--add-scram", f"SCRAM-SHA-512=[name={n},password={pw}]")
        ]
        cmd = self._java(
            "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(self.work_dir / "server.properties"),
            *scram,
        )  # fmt: skip
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise KafkaError(f"kafka storage format failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
