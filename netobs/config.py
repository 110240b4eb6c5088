"""One typed configuration tree for every netobs process.

A YAML file is the base; ``NETOBS__SECTION__KEY`` environment variables override it;
secrets are ``SecretStr`` (never printed, never logged); unknown keys are rejected with
their path; the loaded tree is frozen. Plug-ins are chosen by a ``type`` field.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from netobs.config_base import Section
from netobs.counting import CountingConfig


def check_listen(value: str, what: str = "address") -> str:
    """``host:port`` (IPv6 in brackets), port 0-65535; the host an address or a DNS name."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what} must be host:port (IPv6 as [addr]:port), got {value!r}")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        if host.startswith("[") or not _HOSTNAME.fullmatch(bare):
            raise ValueError(f"{what} host {host!r} is neither an IP address nor a host name") from None
    return value


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def listen_is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        "none",
        description="Kafka-level compression; batches are already compressed Arrow IPC (transport.wire_compression).",
    )
    linger_ms: int = Field(20, ge=0, description="Producer linger.")
    request_timeout_ms: int = Field(30000, ge=1000, description="Producer/consumer request timeout.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"] | None = (
        Field(
            None,
            description="SASL mechanism when security_protocol uses SASL. GSSAPI (Kerberos) needs the `gssapi` "
            "Python package and a keytab/credential cache in the environment (KRB5_CLIENT_KTNAME, KRB5CCNAME); "
            "OAUTHBEARER reads its token from sasl_oauth_token_file.",
        )
    )
    sasl_username: str | None = Field(None, description="SASL user name (PLAIN, SCRAM).")
    sasl_password: SecretStr | None = Field(None, description="SASL password (from env in production).")
    sasl_kerberos_service_name: str = Field(
        "kafka", description="GSSAPI: the Kerberos service name of the brokers (the principal's primary)."
    )
    sasl_kerberos_domain_name: str | None = Field(
        None, description="GSSAPI: the brokers' Kerberos host name, when it differs from the bootstrap host."
    )
    sasl_oauth_token_file: Path | None = Field(
        None,
        description="OAUTHBEARER: file holding the current access token (JWT), re-read at every "
        "authentication (e.g. a projected service-account token or a sidecar's output).",
    )

    @model_validator(mode="after")
    def _sasl(self) -> KafkaTransportConfig:
        sasl = self.security_protocol.startswith("SASL_")
        m = self.sasl_mechanism
        if sasl and m is None:
            raise ValueError(
                f"transport.kafka.security_protocol {self.security_protocol} needs sasl_mechanism"
            )
        if m is not None and not sasl:
            raise ValueError(
                f"transport.kafka.sasl_mechanism {m} needs security_protocol SASL_SSL or SASL_PLAINTEXT"
            )
        if m in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and (
            not self.sasl_username or self.sasl_password is None
        ):
            raise ValueError(f"transport.kafka.sasl_mechanism {m} needs sasl_username and sasl_password")
        if m == "OAUTHBEARER" and self.sasl_oauth_token_file is None:
            raise ValueError("transport.kafka.sasl_mechanism OAUTHBEARER needs sasl_oauth_token_file")
        return self

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
    idempotent: bool = Field(
        False,
        description="Idempotent producer (broker-assigned producer id and sequence numbers): a request "
        "the client retries after a lost answer is stored once by the broker. Off by default: every "
        "message carries an id the pipeline drops copies by (retries and spool replays alike), and "
        "kafka-python's idempotent producer stalled replays after a broker restart under load here. "
        "Needs acks=all (always set) and, on brokers before 2.8 with ACLs, IdempotentWrite.",
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
    wire_compression: Literal["lz4", "zstd", "none"] = Field(
        "lz4",
        description="Codec of the Arrow buffers of each published batch (Kafka messages, spool). lz4: ~10x less "
        "CPU per message than zstd for ~15-35 % more bytes; zstd: smallest messages, when the network or "
        "Kafka's disk is the limit. Consumers read any codec whatever their own setting.",
    )


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
    viewer_user: str | None = Field(
        None,
        description="A read-only server user (profile readonly=1, allow_databases: the netobs database) "
        "the control endpoint runs viewers' queries as; unset: the main user with readonly=1 per query.",
    )
    viewer_password: SecretStr = Field(SecretStr(""), description="Password of viewer_user.")


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


class PrincipalConfig(Section):
    name: str = Field(..., min_length=1, description="Who this is (shown in the query audit log).")
    role: Literal["viewer", "operator", "admin"] = Field(
        ...,
        description="viewer: read-only SELECT on netobs's own tables; operator: also writes them and reads "
        "system tables (what the netobs commands need); admin: any statement.",
    )
    tenants: tuple[str, ...] = Field(
        (),
        description="Viewer only: tenants whose flows it sees (rows where src_tenant or dst_tenant is one "
        "of them); tables without tenant columns are refused. Empty: every tenant.",
    )
    token_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 (hex) of the principal's bearer token (`netobs token new` prints both); the "
        "token itself is never stored.",
    )
    cert_cn: str | None = Field(
        None, description="Subject CN of the principal's client certificate (mutual TLS)."
    )
    expires: datetime | None = Field(None, description="When the credential stops being accepted (UTC).")

    @model_validator(mode="after")
    def _one_credential(self) -> PrincipalConfig:
        if self.token_sha256 is None and self.cert_cn is None:
            raise ValueError(f"principal {self.name!r} needs token_sha256 or cert_cn")
        if self.tenants and self.role != "viewer":
            raise ValueError(f"principal {self.name!r}: tenants bind viewers only, not {self.role}")
        if self.expires is not None and self.expires.tzinfo is None:
            object.__setattr__(self, "expires", self.expires.replace(tzinfo=UTC))
        return self


class ControlAuthConfig(Section):
    principals: tuple[PrincipalConfig, ...] = Field((), description="Who may use the control endpoint.")
    principals_file: Path | None = Field(
        None, description="YAML list of more principals (same fields), e.g. a mounted secret."
    )
    anonymous_role: Literal["none", "viewer", "operator"] = Field(
        "operator",
        description="Role of a request without credentials from a loopback peer (what local netobs "
        "commands get without a token); 'none' requires a credential from everyone. Never admin.",
    )
    allowed_hosts: tuple[str, ...] = Field(
        (),
        description="Host header names accepted besides the listen address and localhost (the name "
        "clients use behind DNS); any other Host is refused (DNS rebinding).",
    )
    allowed_origins: tuple[str, ...] = Field(
        (),
        description="Browser Origins allowed to call the endpoint (e.g. https://grafana.example); a "
        "request carrying any other Origin is refused (cross-site requests).",
    )
    token_file: Path | None = Field(
        None,
        description="Client side: file holding the token the netobs commands send ($NETOBS_TOKEN wins).",
    )
    query_timeout_s: int = Field(
        300, ge=1, description="max_execution_time of a viewer's query on the engine."
    )
    audit_retention_days: int = Field(
        400, ge=1, description="TTL of the query audit log table in days (none on servers before 19.x)."
    )


class ControlTLSConfig(Section):
    cert_file: Path | None = Field(None, description="Server certificate (PEM); with key_file turns TLS on.")
    key_file: Path | None = Field(None, description="Server private key (PEM).")
    client_ca_file: Path | None = Field(
        None,
        description="CA bundle client certificates are verified with (mutual TLS); a client presenting "
        "a certificate maps to the principal whose cert_cn is its subject CN.",
    )
    require_client_cert: bool = Field(
        False, description="Refuse TLS handshakes without a client certificate (needs client_ca_file)."
    )
    ca_file: Path | None = Field(None, description="Client side: CA bundle to verify the server with.")

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None

    @model_validator(mode="after")
    def _pairs(self) -> ControlTLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("control.tls: give both cert_file and key_file")
        if self.require_client_cert and self.client_ca_file is None:
            raise ValueError("control.tls.require_client_cert needs client_ca_file")
        return self


class HealthConfig(Section):
    drop_window_s: float = Field(
        60, gt=0, description="Health is degraded while the kernel dropped datagrams within this window."
    )
    consumer_lag_max: int = Field(
        1_000_000,
        ge=1,
        description="Health is degraded while the Kafka consumer lags more records than this.",
    )
    silent_after_s: float = Field(
        300,
        gt=0,
        description="Health is degraded when a listener received no datagram for this long (since start "
        "or since its last one).",
    )
    warn_interval_s: float = Field(
        60, gt=0, description="Each degraded reason is logged as a warning at most this often."
    )


class LeaderElectionConfig(Section):
    enabled: bool = Field(
        False,
        description="Run the analytics and alerts scheduler only while holding a Kubernetes Lease (several "
        "replicas of `netobs schedule`, one working).",
    )
    namespace: str = Field("netobs", description="Namespace of the Lease (the chart sets the release's).")
    lease_name: str = Field("netobs-scheduler", description="Name of the Lease.")
    identity: str = Field("", description="This replica's name in the Lease (default: the host name).")
    in_cluster: bool = Field(True, description="Use the pod's service account (else kubeconfig).")
    kubeconfig: Path | None = Field(None, description="kubeconfig file when not in cluster.")
    lease_duration_s: float = Field(15, gt=0, description="A leader silent this long is replaced.")
    renew_deadline_s: float = Field(10, gt=0, description="A leader that cannot renew this long stops.")
    retry_period_s: float = Field(2, gt=0, description="Between two acquire or renew attempts.")


class ControlConfig(Section):
    listen: str = Field(
        "127.0.0.1:9464",
        description="HTTP(S) endpoint of a running process: /query, /metrics, /health, /livez, /readyz. "
        "A non-loopback address needs control.tls and control.auth principals.",
    )
    metrics_listen: str | None = Field(
        None,
        description="A second, plain HTTP listener serving only /metrics, /health, /livez and /readyz "
        "(no queries), e.g. 0.0.0.0:9465 for a Prometheus outside the host or container.",
    )
    tls: ControlTLSConfig = Field(default_factory=ControlTLSConfig)
    auth: ControlAuthConfig = Field(default_factory=ControlAuthConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return check_listen(value, "control.listen")

    @field_validator("metrics_listen")
    @classmethod
    def _metrics_listen(cls, value: str | None) -> str | None:
        return None if value is None else check_listen(value, "control.metrics_listen")

    @model_validator(mode="after")
    def _exposed(self) -> ControlConfig:
        if listen_is_loopback(self.listen):
            return self
        if not self.tls.enabled or not (self.auth.principals or self.auth.principals_file):
            raise ValueError(
                f"control.listen {self.listen} is not a loopback address: the query endpoint leaves the "
                "host only with TLS (control.tls.cert_file/key_file) and authentication "
                "(control.auth.principals); use control.metrics_listen to expose /metrics alone"
            )
        return self

    startup_wait_s: float = Field(
        300,
        ge=0,
        description="How long a process waits at start for Kafka and the ClickHouse server, retrying with "
        "backoff, before it gives up and exits 1 (0: give up at once).",
    )
    leader_election: LeaderElectionConfig = Field(default_factory=LeaderElectionConfig)
    startup_max_backoff_s: float = Field(
        15, gt=0, description="Longest pause between two start attempts (the first is 0.5 s, then doubled)."
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
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not a text file (a YAML configuration is UTF-8 text)") from None
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


_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:\s]*)(:[^/@\s]*)?@")
_URL_SECRET_PARAM = re.compile(
    r"(?P<key>[?&;](?:token|access_token|api_key|apikey|key|secret|password|passwd|pwd|auth|sig|signature)=)[^&;#\s]*",
    re.IGNORECASE,
)


def mask_url_credentials(text: str) -> str:
    """``https://user:pw@host/?token=x`` → ``https://user:***@host/?token=***``."""
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _URL_SECRET_PARAM.sub(lambda m: f"{m['key']}***", text)


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_url_credentials(value)
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def dump(settings: BaseSettings) -> str:
    """The effective configuration as YAML, secrets masked (SecretStr fields and credentials
    inside URLs)."""
    data = _mask(settings.model_dump(mode="json"))
    return yaml.safe_dump(data, sort_keys=False)
