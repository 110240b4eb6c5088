"""One typed configuration tree for every netobs process.

A YAML file is the base; ``NETOBS__SECTION__KEY`` environment variables override it;
secrets are ``SecretStr`` (never printed, never logged); unknown keys are rejected with
their path; the loaded tree is frozen. Plug-ins are chosen by a ``type`` field.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from netobs.config_base import Section
from netobs.counting import CountingConfig


class TLSConfig(Section):
    enabled: bool = Field(False, description="Use TLS for this connection.")
    ca_file: Path | None = Field(None, description="CA bundle to verify the server with.")
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(None, description="Client private key (mutual TLS).")
    verify: bool = Field(True, description="Verify the server certificate and host name.")


class ListenerConfig(Section):
    protocol: Literal["auto", "sflow", "ipfix", "psamp", "netflow9", "netflow5"] = Field(
        "auto",
        description="Protocol of this port: 'auto' detects it from each datagram; any other value decodes "
        "every datagram as that protocol, so another protocol's datagrams are counted as decode errors "
        "(psamp is IPFIX on the wire and is decoded as such).",
    )
    listen: str = Field("0.0.0.0:6343", description="UDP address:port to receive exports on.")
    receive_buffer: int = Field(8 << 20, ge=0, description="SO_RCVBUF in bytes (0 = kernel default).")
    reuse_port: bool = Field(True, description="SO_REUSEPORT so several collector processes share a port.")


class ExporterSamplingConfig(Section):
    exporters: tuple[str, ...] = Field(
        ..., min_length=1, description="Exporter addresses or CIDRs this sampling rate applies to."
    )
    sampling_rate: int = Field(
        ...,
        ge=1,
        description="1-in-N rate assumed when neither the datagram nor options data give one. 1 means the "
        "exported counts are already scaled (Open vSwitch IPFIX multiplies by its sampling period itself).",
    )
    note: str = Field("", description="Why (shown in `config --dump`; e.g. the exporter's own setting).")

    @field_validator("exporters")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"not an address or CIDR: {cidr!r}") from None
        return value


class CollectorConfig(Section):
    listeners: tuple[ListenerConfig, ...] = Field(
        (ListenerConfig(listen="0.0.0.0:6343"), ListenerConfig(listen="0.0.0.0:4739")),
        description="UDP listeners (sFlow on 6343 and IPFIX on 4739 by default).",
    )
    batch_max_records: int = Field(8192, ge=1, description="Publish a batch once it holds this many flows.")
    batch_max_delay_ms: int = Field(200, ge=1, description="Publish a non-empty batch at least this often.")
    drain_max_datagrams: int = Field(
        256,
        ge=1,
        description="Datagrams read from a socket before they are decoded together; more wait in the socket "
        "for the next round (a bound on latency and memory per round, not a loss).",
    )
    exporter_sampling: tuple[ExporterSamplingConfig, ...] = Field(
        (),
        description="Per-exporter sampling rates for exports that carry none, tried in order before "
        "default_sampling_rate.",
    )
    default_sampling_rate: int = Field(
        0,
        ge=0,
        description="Sampling rate assumed when neither datagram, options data nor exporter_sampling give one "
        "(0: unknown; such flows are counted once and reported as unsampled per exporter).",
    )
    state_dir: Path | None = Field(
        None,
        description="Directory where IPFIX / NetFlow v9 template state is saved (on stop and every "
        "state_save_interval_s) and loaded on start, so a restarted collector decodes at once. None: not kept.",
    )
    state_save_interval_s: float = Field(
        60, gt=0, description="How often the template state is saved while running (with state_dir)."
    )
    max_templates_per_exporter: int = Field(
        4096,
        ge=1,
        description="Templates kept per exporter (IPFIX / NetFlow v9); more are refused and counted.",
    )
    allowed_exporters: tuple[str, ...] = Field(
        (),
        description="CIDRs exporters must come from; datagrams from elsewhere are dropped and counted (empty: any).",
    )
    max_fields_per_template: int = Field(
        512, ge=1, description="Fields a template may have; longer ones are refused and counted."
    )
    srv6_exporters: tuple[str, ...] = Field(
        (),
        description="CIDRs of exporters whose sampled packet headers (sFlow raw headers, PSAMP sections) are "
        "SRv6 decapsulated: an IPv6 packet with a Segment Routing Header carrying IPv4, IPv6 or Ethernet "
        "gives the inner addresses as the flow's, the outer ones as tunnel_src / tunnel_dst "
        "(tunnel_type srv6). Empty: none.",
    )


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
    replicated: bool = Field(
        False,
        description="Single server with ZooKeeper: ReplicatedMergeTree tables (path /clickhouse/tables/"
        "<database>/<table>), which drop identical re-inserted blocks on servers without "
        "insert_deduplication_token (pre-19). Ignored with clickhouse.cluster.",
    )
    chdb: ChdbStoreConfig = Field(default_factory=ChdbStoreConfig)
    clickhouse: ClickHouseStoreConfig = Field(default_factory=ClickHouseStoreConfig)


class PipelineConfig(Section):
    max_batch_rows: int = Field(100_000, ge=1, description="Rows gathered before one insert.")
    max_batch_delay_ms: int = Field(1000, ge=1, description="Longest a row waits before it is inserted.")
    max_buffered_rows: int = Field(
        300_000,
        ge=1,
        description="Rows held across all partitions before the pipeline pauses consumption (backpressure).",
    )
    dead_letter_dir: Path | None = Field(
        None,
        description="Directory for dead letters when the transport has no dead-letter topic (in-process); "
        "unset: unprocessable messages are only logged and counted.",
    )
    max_unknown_retries: int = Field(
        10,
        ge=0,
        description="Retries of a batch the store fails with an error no one classified (see "
        "netobs/store/errors.py); then it goes to the dead-letter destination. Transient errors (disk "
        "full, too many parts, read-only replica, network) are retried without limit.",
    )
    goflow2_topics: tuple[str, ...] = Field(
        (),
        description="Kafka topics written by goflow2 collectors (goflow2 -transport=kafka -format=bin: one "
        "protobuf FlowMessage per record), consumed besides transport.kafka.topic by the same consumer "
        "group and enriched and stored like netobs batches; records that are not FlowMessages are "
        "counted and dead-lettered. Needs transport.type kafka.",
    )
    goflow2_records_per_poll: int = Field(
        20_000, ge=1, description="Most goflow2 records (one flow each) taken by one poll."
    )


class ControlConfig(Section):
    listen: str = Field(
        "127.0.0.1:9464", description="HTTP endpoint of a running process: /metrics, /health, /query."
    )


class KubernetesEnrichConfig(Section):
    enabled: bool = Field(
        False, description="Watch pods, namespaces, nodes and Kube-OVN CRDs for enrichment."
    )
    in_cluster: bool = Field(
        False, description="Use the pod's service account (in-cluster config) instead of a kubeconfig."
    )
    kubeconfig: Path | None = Field(
        None, description="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)."
    )
    context: str | None = Field(None, description="kubeconfig context (default: the current one).")
    kube_ovn: bool = Field(True, description="Also watch subnets/vpcs/ips.kubeovn.io.")
    watch_timeout_s: int = Field(300, ge=1, description="Server-side timeout of one watch request.")
    max_backoff_s: float = Field(30.0, gt=0, description="Longest wait between reconnects after errors.")


class MetadataTopicConfig(Section):
    enabled: bool = Field(
        False,
        description="Distributed mode: the metadata sources (inventory, Kubernetes) publish every change to "
        "a compacted Kafka topic (connection settings from transport.kafka) and every pipeline replica "
        "builds its metadata view from that topic, so all replicas name flows alike. Off: each process "
        "applies its sources directly (embedded mode, no Kafka needed).",
    )
    topic: str = Field(
        "netobs-metadata",
        description="The topic: cleanup.policy=compact, one partition (one order for every replica), keyed "
        "by object (pod/<namespace>/<name>, network/<name>, ...), tombstones for deletions; created "
        "when missing.",
    )
    replication_factor: int = Field(
        1, ge=1, description="Replication factor when netobs creates the topic (3 on a production cluster)."
    )
    sync_timeout_s: float = Field(
        60,
        gt=0,
        description="How long a starting replica waits to have read the topic up to its end before it "
        "names flows (then it goes on, logging a warning).",
    )


class EnrichConfig(Section):
    inventory: Path | None = Field(
        None, description="Inventory YAML (sites, centers, nodes, networks, namespaces, static pods)."
    )
    kubernetes: KubernetesEnrichConfig = Field(default_factory=KubernetesEnrichConfig)
    metadata_topic: MetadataTopicConfig = Field(default_factory=MetadataTopicConfig)


class Settings(BaseSettings):
    """The kernel's sections of a netobs process's configuration.

    The composition root (``netobs_app.settings.Settings``) extends it with the sections the
    components own (analytics, policy, dashboards, alerts); the kernel never names them.
    """

    model_config = SettingsConfigDict(
        env_prefix="NETOBS__", env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    collector: CollectorConfig = Field(default_factory=CollectorConfig)
    transport: TransportConfig = Field(default_factory=TransportConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    enrich: EnrichConfig = Field(default_factory=EnrichConfig)
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
