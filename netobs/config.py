"""One typed configuration tree for every netobs process.

A YAML file is the base; ``NETOBS__SECTION__KEY`` environment variables override it;
secrets are ``SecretStr`` (never printed, never logged); unknown keys are rejected with
their path; the loaded tree is frozen. Plug-ins are chosen by a ``type`` field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import yaml
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from netobs.config_base import Section
from netobs.counting import CountingConfig


class TLSConfig(Section):
    enabled: bool = Field(False, description="Use TLS for this connection.")
    ca_file: Path | None = Field(None, description="CA bundle to verify the server with.")
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(None, description="Client private key (mutual TLS).")
    verify: bool = Field(True, description="Verify the server certificate and host name.")


class InprocessTransportConfig(Section):
    max_batches: int = Field(
        64, ge=1, description="Queue bound; producers block when it is full (backpressure)."
    )


class KafkaTransportConfig(Section):
    bootstrap_servers: tuple[str, ...] = Field(
        ("127.0.0.1:9092",), description="Kafka bootstrap host:port list."
    )
    topic: str = Field("netobs-flows", description="Topic flow batches are published to.")
    group_id: str = Field("netobs-pipeline", description="Consumer group of the pipeline replicas.")
    compression: Literal["none", "gzip"] = Field(
        "none", description="Kafka-level compression; batches are already zstd-compressed Arrow IPC."
    )
    linger_ms: int = Field(20, ge=0, description="Producer linger.")
    request_timeout_ms: int = Field(30000, ge=1000, description="Producer/consumer request timeout.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism when security_protocol uses SASL."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (from env in production).")
    tls: TLSConfig = Field(default_factory=TLSConfig, description="TLS settings for SSL/SASL_SSL.")
    dead_letter_topic: str = Field(
        "netobs-dead-letter",
        description="Topic for messages the pipeline cannot process (headers say why); '' disables it.",
    )
    delivery_timeout_ms: int = Field(
        120_000,
        ge=1000,
        description="How long the producer keeps retrying a batch; a batch still not stored then goes to "
        "the spool (transport.spool) and is replayed when the broker is back.",
    )
    max_block_ms: int = Field(
        5000,
        ge=100,
        description="Longest a publish may block (waiting for topic metadata); then the batch is spooled.",
    )
    max_poll_interval_ms: int = Field(
        300_000,
        ge=1000,
        description="Longest gap between polls before the group evicts a consumer; the pipeline keeps "
        "polling (partitions paused) while its buffer is full or the store is down.",
    )


class SpoolConfig(Section):
    enabled: bool = Field(
        True,
        description="Keep batches the transport cannot take in an on-disk spool and replay them in order. "
        "In the embedded mode (in-process transport) every batch passes through it, so a crash loses "
        "none that reached it. Off: batches the transport refuses are dropped and counted.",
    )
    dir: Path | None = Field(
        None,
        description="Spool directory, one per process (default: store.chdb.path + '-spool' in the "
        "embedded mode, ./var/spool otherwise).",
    )
    max_bytes: int = Field(
        1 << 30, ge=1 << 20, description="Most bytes spooled; batches beyond it are dropped and counted."
    )
    max_age_s: float = Field(
        86_400, gt=0, description="Spooled batches older than this are dropped and counted (expired)."
    )
    segment_bytes: int = Field(8 << 20, ge=1 << 16, description="Size of one spool segment file.")
    max_inflight_bytes: int = Field(
        64 << 20,
        ge=1 << 20,
        description="Kafka: most bytes sent and not yet acknowledged; more waits in the spool (kafka-python "
        "does not bound its own buffer).",
    )


class TransportConfig(Section):
    type: Literal["inprocess", "kafka"] = Field("inprocess", description="Transport plug-in.")
    inprocess: InprocessTransportConfig = Field(default_factory=InprocessTransportConfig)
    kafka: KafkaTransportConfig = Field(default_factory=KafkaTransportConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)


class ChdbStoreConfig(Section):
    path: Path = Field(Path("./var/chdb"), description="Data directory of the embedded ClickHouse engine.")


class ClickHouseStoreConfig(Section):
    host: str = Field("127.0.0.1", description="ClickHouse server host.")
    port: int = Field(9000, ge=1, le=65535, description="Native protocol port (9440 for TLS).")
    user: str = Field("default", description="User name.")
    password: SecretStr = Field(SecretStr(""), description="Password (from env in production).")
    cluster: str | None = Field(
        None, description="Cluster name: tables are created ON CLUSTER as ReplicatedMergeTree + Distributed."
    )
    connect_timeout_s: float = Field(10, gt=0, description="Connect timeout.")
    send_receive_timeout_s: float = Field(300, gt=0, description="Send/receive timeout.")
    tls: TLSConfig = Field(default_factory=TLSConfig, description="TLS for the native protocol.")


class StoreConfig(Section):
    type: Literal["chdb", "clickhouse"] = Field("chdb", description="Store plug-in.")
    database: str = Field("netobs", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Database name.")
    retention_days: int = Field(90, ge=0, description="TTL of raw flows in days (0: keep forever).")
    insert_retries: int = Field(5, ge=0, description="Retries of a failed insert before giving up.")
    retry_backoff_s: float = Field(0.5, ge=0, description="First retry delay, doubled each retry.")
    rollup_1m_retention_days: int = Field(
        400, ge=0, description="TTL of the 1-minute rollup table in days (0: keep forever)."
    )
    rollup_1h_retention_days: int = Field(
        1830, ge=0, description="TTL of the 1-hour rollup table in days (0: keep forever)."
    )
    exporter_health_retention_days: int = Field(
        90, ge=0, description="TTL of the per-exporter, per-minute health table in days (0: keep forever)."
    )
    interface_counters_retention_days: int = Field(
        90, ge=0, description="TTL of the interface counter table in days (0: keep forever)."
    )
    packet_samples_retention_days: int = Field(
        7, ge=0, description="TTL of the pod packet samples (headers only) in days (0: keep forever)."
    )
    l7_conversations_retention_days: int = Field(
        90, ge=0, description="TTL of the L7 summaries per conversation in days (0: keep forever)."
    )
    replicated: bool = Field(
        False,
        description="Single server with ZooKeeper: ReplicatedMergeTree tables (path /clickhouse/tables/"
        "<database>/<table>), which drop identical re-inserted blocks on servers without "
        "insert_deduplication_token (pre-19). Ignored with clickhouse.cluster.",
    )
    chdb: ChdbStoreConfig = Field(default_factory=ChdbStoreConfig)
    clickhouse: ClickHouseStoreConfig = Field(default_factory=ClickHouseStoreConfig)


class ControlConfig(Section):
    listen: str = Field(
        "127.0.0.1:9464", description="HTTP endpoint of a running process: /metrics, /health, /query."
    )


class Settings(BaseSettings):
    """The kernel's sections of a netobs process's configuration (store, transport, control, counting).

    The composition root (``netobs_app.settings.Settings``) extends it with the sections the
    components own (analytics, policy, dashboards, alerts); the kernel never names them.
    """

    model_config = SettingsConfigDict(
        env_prefix="NETOBS__", env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    transport: TransportConfig = Field(default_factory=TransportConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    counting: CountingConfig = Field(
        default_factory=CountingConfig, description="The counting model (netobs.counting)."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment over the file (passed as init kwargs): env wins.
        return env_settings, init_settings


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the file and key."""


S = TypeVar("S", bound=BaseSettings)


@overload
def load(path: str | Path | None = None) -> Settings: ...
@overload
def load(path: str | Path | None, model: type[S]) -> S: ...
def load(path: str | Path | None = None, model: type[BaseSettings] = Settings) -> BaseSettings:
    """Load the YAML file at ``path`` (optional) into ``model``, apply env overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such configuration file") from None
        except OSError as e:
            raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping, not {type(loaded).__name__}")
        data = loaded
    try:
        return model(**data)
    except ValidationError as e:
        raise ConfigError(_format(e, path)) from None


def _format(err: ValidationError, path: str | Path | None) -> str:
    where = f"{path}: " if path else ""
    lines = []
    for item in err.errors():
        key = ".".join(str(x) for x in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"{where}unknown key '{key}'")
        else:
            lines.append(f"{where}'{key}': {item['msg']} (got {_short(item.get('input'))})")
    return "\n".join(lines)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def dump(settings: BaseSettings) -> str:
    """The effective configuration as YAML, secrets masked."""
    data = settings.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False)
