"""The collector's configuration section, mounted by the composition root (``netobs_app.settings``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from netobs.config import check_listen
from netobs.config_base import Section


class ListenerConfig(Section):
    protocol: Literal["auto", "sflow", "ipfix", "psamp", "netflow9", "netflow5"] = Field(
        "auto",
        description="Protocol of this port: 'auto' detects it from each datagram; any other value decodes "
        "every datagram as that protocol, so another protocol's datagrams are counted as decode errors "
        "(psamp is IPFIX on the wire and is decoded as such).",
    )
    listen: str = Field("0.0.0.0:6343", description="UDP address:port to receive exports on.")
    receive_buffer: int = Field(8 << 20, ge=0, description="SO_RCVBUF in bytes (0 = kernel default).")
    reuse_port: bool = Field(
        False,
        description="SO_REUSEPORT so several collector processes share a port (scale-out on one host; every "
        "process must set it). Off: the port is this process's alone and a second one fails to start.",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return check_listen(value, "listener address")


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
