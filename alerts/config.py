"""Configuration of the alert notifier: sinks (Alertmanager, webhook, e-mail), routes, schedule.

The alerts own this section; the composition root (``netobs_app.settings``) mounts it in the
one Settings tree as ``alerts``. Sinks are chosen by their ``type`` field; routes name sinks by their key in ``sinks``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from netobs.config_base import Section

#: One scale for the findings' (info, warning, critical) and the policies' (info … critical) severities.
SEVERITY_RANK: dict[str, int] = {"info": 0, "low": 1, "warning": 2, "medium": 2, "high": 3, "critical": 4}
Severity = Literal["info", "low", "warning", "medium", "high", "critical"]


class HttpTLSConfig(Section):
    ca_file: Path | None = Field(
        None, description="CA bundle to verify the server with (default: system CAs)."
    )
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(None, description="Client private key (mutual TLS).")
    verify: bool = Field(True, description="Verify the server certificate and host name.")


class AlertmanagerSinkConfig(Section):
    type: Literal["alertmanager"] = Field(description="Sink plug-in: Prometheus Alertmanager API v2.")
    url: str = Field(description="Base URL of Alertmanager, e.g. http://alertmanager:9093.")
    username: str | None = Field(None, description="Basic-auth user name (with password).")
    password: SecretStr | None = Field(None, description="Basic-auth password (from env in production).")
    bearer_token: SecretStr | None = Field(None, description="Bearer token (instead of basic auth).")
    tls: HttpTLSConfig = Field(default_factory=HttpTLSConfig, description="TLS options for https URLs.")
    timeout_s: float = Field(10, gt=0, description="Timeout of one HTTP request.")
    retries: int = Field(2, ge=0, description="Retries of a failed POST within one run.")
    backoff_s: float = Field(0.5, ge=0, description="First retry delay, doubled each retry.")
    resolve_timeout_s: float = Field(
        300,
        gt=0,
        description="Alertmanager's resolve_timeout: a firing alert not re-sent within it expires there, so "
        "routes to this sink must repeat more often (checked).",
    )

    @model_validator(mode="after")
    def _one_auth(self) -> AlertmanagerSinkConfig:
        if self.bearer_token is not None and (self.username or self.password is not None):
            raise ValueError("give either username/password or bearer_token, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both username and password")
        return self


class WebhookSinkConfig(Section):
    type: Literal["webhook"] = Field(description="Sink plug-in: JSON batches POSTed to a URL.")
    url: str = Field(description="URL the batches are POSTed to.")
    secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key: the signature over 'timestamp.body' goes in the signature header, "
        "the timestamp in X-Netobs-Timestamp (receivers refuse old ones: replay window). Required unless "
        "unsigned.",
    )
    unsigned: bool = Field(
        False, description="Send without a signature (only for receivers that authenticate otherwise)."
    )
    signature_header: str = Field("X-Netobs-Signature", description="Header carrying 'sha256=<hex>'.")
    bearer_token: SecretStr | None = Field(None, description="Bearer token sent in Authorization.")
    tls: HttpTLSConfig = Field(default_factory=HttpTLSConfig, description="TLS options for https URLs.")
    timeout_s: float = Field(10, gt=0, description="Timeout of one HTTP request.")
    retries: int = Field(2, ge=0, description="Retries of a failed POST within one run.")
    backoff_s: float = Field(0.5, ge=0, description="First retry delay, doubled each retry.")
    max_batch: int = Field(500, ge=1, description="Most alerts in one POST.")

    @model_validator(mode="after")
    def _signed(self) -> WebhookSinkConfig:
        if self.secret is None and not self.unsigned:
            raise ValueError("webhook sink: set secret (HMAC signing, the default) or unsigned: true")
        return self


class EmailSinkConfig(Section):
    type: Literal["email"] = Field(description="Sink plug-in: one SMTP digest per run and route.")
    host: str = Field(description="SMTP server host.")
    port: int = Field(587, ge=1, le=65535, description="SMTP port (587 STARTTLS, 465 implicit TLS).")
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="STARTTLS upgrade, implicit TLS (SMTPS), or none (loopback relays only)."
    )
    username: str | None = Field(None, description="SMTP login (with password).")
    password: SecretStr | None = Field(None, description="SMTP password (from env in production).")
    tls: HttpTLSConfig = Field(default_factory=HttpTLSConfig, description="Certificate checks for TLS.")
    sender: str = Field(description="From address.")
    to: tuple[str, ...] = Field(min_length=1, description="Recipients.")
    subject_prefix: str = Field("[netobs]", description="Start of every subject.")
    timeout_s: float = Field(30, gt=0, description="SMTP connection timeout.")


SinkConfig = Annotated[
    AlertmanagerSinkConfig | WebhookSinkConfig | EmailSinkConfig, Field(discriminator="type")
]


class RouteConfig(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Name of the route (in delivery state).")
    sinks: tuple[str, ...] = Field(min_length=1, description="Keys of alerts.sinks this route delivers to.")
    min_severity: Severity = Field("info", description="Alerts at or above this severity match.")
    sources: tuple[Literal["findings", "violations"], ...] = Field(
        (), description="Sources that match (empty: both)."
    )
    labels: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Label → accepted values; an alert matches when one of its values (comma-separated "
        "labels such as tenant or center hold several) is accepted, for every label given.",
    )
    group_by: tuple[str, ...] = Field(
        (), description="Labels splitting one run's alerts into separate deliveries (empty: one per run)."
    )
    repeat_interval_s: float = Field(
        240, gt=0, description="An unchanged firing alert is sent again at most this often."
    )
    continue_matching: bool = Field(
        False, description="Also try the next routes when this one matches (else the first match wins)."
    )


class LinksConfig(Section):
    generator_url: str = Field(
        "", description="Base URL of the netobs UI/Grafana; '{source}', '{id}', '{name}' are filled in."
    )
    runbook_url: str = Field(
        "", description="Runbook link template; '{source}' and '{name}' (detector or rule) are filled in."
    )
    report_url: str = Field(
        "", description="Report link template for violations; '{policy}', '{rule}', '{id}' are filled in."
    )


class AlertsConfig(Section):
    enabled: bool = Field(False, description="Start the notifier inside `netobs run`/`pipeline`.")
    interval_s: float = Field(60, gt=0, description="How often the notifier runs inside a process.")
    min_severity: Severity = Field("warning", description="Rows below this severity are not read.")
    initial_lookback_s: int = Field(
        3600, ge=0, description="On the very first run, read findings and violations this far back."
    )
    findings_resolve_after_s: int = Field(
        900, gt=0, description="A finding's alert resolves when no newer window had it for this long."
    )
    violations_resolve_after_s: int = Field(
        7200, gt=0, description="A violation's alert resolves when no newer window had it for this long."
    )
    max_rows: int = Field(5000, ge=1, description="Most rows read per source and run (the rest next run).")
    state_retention_days: int = Field(
        30, ge=1, description="Delivery state untouched this long is dropped (TTL)."
    )
    links: LinksConfig = Field(default_factory=LinksConfig, description="Links put into annotations.")
    sinks: dict[str, SinkConfig] = Field(default_factory=dict, description="Sinks by name.")
    routes: tuple[RouteConfig, ...] = Field((), description="Routes, tried in order.")

    @model_validator(mode="after")
    def _routes_name_sinks(self) -> AlertsConfig:
        if self.enabled and not self.routes:
            raise ValueError("alerts.enabled needs at least one route (and its sinks)")
        names = [r.name for r in self.routes]
        if len(set(names)) != len(names):
            raise ValueError(f"route names must be unique: {names}")
        for r in self.routes:
            for s in r.sinks:
                sink = self.sinks.get(s)
                if sink is None:
                    raise ValueError(f"route {r.name!r} names unknown sink {s!r} (have {sorted(self.sinks)})")
                if isinstance(sink, AlertmanagerSinkConfig) and r.repeat_interval_s >= sink.resolve_timeout_s:
                    raise ValueError(
                        f"route {r.name!r}: repeat_interval_s {r.repeat_interval_s} must be below sink "
                        f"{s!r} resolve_timeout_s {sink.resolve_timeout_s} (Alertmanager would expire alerts)"
                    )
        return self
