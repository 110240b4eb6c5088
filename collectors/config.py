"""The collectors' configuration sections (``collector``; ``sampler``: pod packet samples, ``netobs sample``),
mounted by the composition root (``netobs_app.settings``)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

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


class NamePrivacyConfig(Section):
    """What leaves the node of DNS query names, TLS server names and HTTP hosts."""

    mode: Literal["keep", "truncate", "hash"] = Field(
        "keep",
        description="keep: as seen; truncate: only the last `labels` labels (example.com); hash: "
        "HMAC-SHA256 with `hash_key` (h:<16 hex>), equal names stay equal within a deployment.",
    )
    labels: int = Field(2, ge=1, le=16, description="Labels kept by `truncate`.")


class PrivacyRule(NamePrivacyConfig):
    namespaces: tuple[str, ...] = Field(
        (), description="Capture pods' namespaces (a tenant's namespaces) this rule applies to."
    )


class PodInterfaceConfig(Section):
    """An interface to capture that OVS does not describe (static; tests, non-Kube-OVN nodes)."""

    ifname: str = Field(description="Host interface name.")
    pod: str = Field("", description="Pod behind it.")
    namespace: str = Field("", description="That pod's namespace.")


class SamplerConfig(Section):
    """``netobs sample``: a node agent capturing pod packet headers and their L7 context."""

    enabled: bool = Field(False, description="`netobs run`/`collect` also run the agent in-process.")
    node: str = Field("", description="This node's name (the `agent` column; default: the host name).")
    bridge: str = Field("br-int", description="OVS bridge whose pod ports are captured (Kube-OVN: br-int).")
    vsctl: tuple[str, ...] = Field(
        ("ovs-vsctl",), description="The ovs-vsctl command (add `--db=unix:...` for another ovsdb)."
    )
    follow_ovs: bool = Field(True, description="Capture every bridge port with an external_ids:iface-id.")
    interfaces: tuple[PodInterfaceConfig, ...] = Field((), description="Static interfaces to capture too.")
    poll_s: float = Field(2.0, gt=0, description="How often the bridge's pod ports are listed again.")
    sampling_rate: int = Field(100, ge=1, description="1:N packet sampling of header rows.")
    sampling_mode: Literal["deterministic", "random"] = Field(
        "deterministic", description="deterministic: every Nth packet per interface; random: probability 1/N."
    )
    filter: str = Field("", description="tcpdump (libpcap) filter expression; '' captures every packet.")

    @field_validator("filter")
    @classmethod
    def _compiles(cls, value: str) -> str:
        """`config --check` refuses what the agent would: a filter libpcap cannot compile."""
        from collectors.sampler._capture import BpfError, compile_bpf

        try:
            compile_bpf(value, 128)
        except BpfError as e:
            raise ValueError(str(e)) from None
        except OSError:  # no libpcap on this machine: the agent itself will say so
            pass
        return value

    l7_snap: int = Field(
        1024,
        ge=0,
        le=4096,
        description="Bytes after the transport header kept for the L7 dissectors (DNS messages, TLS "
        "hellos, HTTP heads); the kernel cuts every frame at 128 + l7_snap. 0: headers only, no L7.",
    )
    max_samples_per_s: float = Field(
        2000, ge=0, description="Per-pod cap on sampled header rows per second (0: none); excess counted."
    )
    max_l7_per_s: float = Field(
        500, ge=0, description="Per-pod cap on frames dissected for L7 per second (0: none); excess counted."
    )
    ring_block_kib: int = Field(64, ge=4, le=4096, description="Ring block size in KiB (a multiple of 4).")
    ring_blocks: int = Field(
        8, ge=2, le=1024, description="Ring blocks per interface (memory: blocks x size)."
    )
    fanout_workers: int = Field(
        1, ge=1, le=16, description="Rings per interface in one PACKET_FANOUT group (hash), one thread each."
    )
    flush_interval_s: float = Field(2.0, gt=0, description="Publish samples and L7 summaries this often.")
    max_pending_rows: int = Field(
        200_000, ge=1, description="Sample rows held between flushes; more are shed (counted)."
    )
    max_l7_frames_per_flush: int = Field(
        20_000, ge=1, description="Frames dissected in one tshark run; more are shed (counted)."
    )
    privacy: NamePrivacyConfig = Field(default_factory=NamePrivacyConfig, description="Default name privacy.")
    privacy_rules: tuple[PrivacyRule, ...] = Field(
        (), description="Per-tenant name privacy: the first rule naming the capture pod's namespace wins."
    )
    hash_key: SecretStr = Field(
        SecretStr(""), description="HMAC key of `hash` (from env/file; never logged)."
    )
    hash_key_file: Path | None = Field(None, description="File holding the HMAC key (wins over hash_key).")


_TARGET = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):\d{1,5}$")


def _targets(values: tuple[str, ...]) -> tuple[str, ...]:
    for v in values:
        if not _TARGET.match(v) or not 1 <= int(v.rsplit(":", 1)[1]) <= 65535:
            raise ValueError(f"target {v!r}: expected host:port (IPv6 as [addr]:port)")
    return values


class SflowExportConfig(Section):
    enabled: bool = Field(True, description="Export sFlow from each bridge.")
    targets: tuple[str, ...] = Field(
        ("127.0.0.1:6343",), description="Collector addresses (host:port) the samples go to."
    )
    sampling: int = Field(400, ge=1, description="One packet in N is sampled.")
    header: int = Field(128, ge=18, le=512, description="Bytes of each sampled packet's header exported.")
    polling: int = Field(30, ge=0, description="Interface counter polling interval in seconds (0: off).")

    _check_targets = field_validator("targets")(classmethod(lambda cls, v: _targets(v)))


class IpfixExportConfig(Section):
    enabled: bool = Field(False, description="Export bridge IPFIX from each bridge.")
    targets: tuple[str, ...] = Field(
        ("127.0.0.1:4739",), description="Collector addresses (host:port) the records go to."
    )
    sampling: int = Field(400, ge=1, description="One packet in N is sampled.")
    obs_domain_id: int = Field(
        1, ge=0, le=0xFFFFFFFF, description="IPFIX observation domain id of every record this node exports."
    )
    obs_point_id: int | None = Field(
        None, ge=0, le=0xFFFFFFFF, description="IPFIX observation point id (default: OVS's own)."
    )
    cache_active_timeout: int = Field(
        60, ge=0, le=4200, description="Seconds before a long flow's record is exported."
    )
    cache_max_flows: int = Field(
        4096, ge=0, description="Flow cache size (0: no cache, every sampled packet is a record)."
    )

    _check_targets = field_validator("targets")(classmethod(lambda cls, v: _targets(v)))


class ExportersConfig(Section):
    ovs_db: str = Field(
        "unix:/var/run/openvswitch/db.sock", description="OVSDB of the node (Kube-OVN: the host's socket)."
    )
    bridges: tuple[str, ...] = Field(
        ("br-int",), description="Bridges to export from: br-int and the underlay bridges (absent: skipped)."
    )
    node: str = Field("", description="This node's name (the DaemonSet sets it from spec.nodeName).")
    center: str = Field("", description="This node's data center (recorded with the exporter).")
    agent: str = Field(
        "",
        description="Address the exporter is known by (sFlow agent address; the DaemonSet sets the "
        "node's IP). Empty: OVS picks one.",
    )
    sflow: SflowExportConfig = Field(default_factory=SflowExportConfig)
    ipfix: IpfixExportConfig = Field(default_factory=IpfixExportConfig)
    timeout_s: int = Field(20, ge=1, description="ovs-vsctl timeout per call.")
