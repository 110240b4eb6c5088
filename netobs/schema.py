"""The flow record, as code: one ordered column list generates everything else.

From ``FLOW_COLUMNS`` come the ClickHouse DDL (single node and cluster variants, and a
legacy dialect for old servers), the Arrow schema used on the wire and for inserts, the
numpy dtypes the decoders fill, and the insert column list. Raw packet and byte counts
are stored with the sampling rate; scaling happens in queries (``bytes * sampling_rate``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

#: Bumped whenever a column is added, removed or changes type. Carried in every wire
#: message so that a consumer can refuse batches it does not understand.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Column:
    """One column of the flow record."""

    name: str
    ch_type: str  # ClickHouse type (modern dialect)
    arrow: pa.DataType
    doc: str
    #: ``collect`` columns are filled by decoders; ``enrich`` ones by the pipeline.
    group: str = "collect"
    codec: str = ""

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype a decoder fills for this column."""
        if pa.types.is_fixed_size_binary(self.arrow):
            return np.dtype(("V", self.arrow.byte_width))
        if pa.types.is_timestamp(self.arrow):
            return np.dtype("int64")  # milliseconds since the epoch, UTC
        if pa.types.is_string(self.arrow) or pa.types.is_dictionary(self.arrow):
            return np.dtype(object)
        return np.dtype(self.arrow.to_pandas_dtype())


_TS = pa.timestamp("ms", tz="UTC")
_IP = pa.binary(16)  # IPv6, or IPv4 as ::ffff:a.b.c.d
_STR = pa.string()

FLOW_COLUMNS: tuple[Column, ...] = (
    Column(
        "time_received",
        "DateTime64(3, 'UTC')",
        _TS,
        "When the collector received the datagram.",
        codec="Delta, ZSTD(1)",
    ),
    Column(
        "flow_start",
        "DateTime64(3, 'UTC')",
        _TS,
        "First packet of the flow (sFlow: the sample time).",
        codec="Delta, ZSTD(1)",
    ),
    Column(
        "flow_end",
        "DateTime64(3, 'UTC')",
        _TS,
        "Last packet of the flow (sFlow: the sample time).",
        codec="Delta, ZSTD(1)",
    ),
    Column(
        "type", "LowCardinality(String)", _STR, "Export protocol: sflow, ipfix, netflow9, netflow5, psamp."
    ),
    Column("exporter", "IPv6", _IP, "Address of the exporting agent (IPv4 mapped into IPv6)."),
    Column(
        "observation_domain",
        "UInt32",
        pa.uint32(),
        "IPFIX observation domain / NetFlow source id / sFlow sub-agent.",
    ),
    Column("sampling_rate", "UInt32", pa.uint32(), "1 in N packets sampled; 0 when unknown."),
    Column(
        "direction",
        "LowCardinality(String)",
        _STR,
        "ingress, egress or unknown, as the exporter reported it.",
    ),
    Column("in_if", "UInt32", pa.uint32(), "Input interface index."),
    Column("out_if", "UInt32", pa.uint32(), "Output interface index."),
    Column("src_addr", "IPv6", _IP, "Source address (inner, pod, address for tunnelled traffic)."),
    Column("dst_addr", "IPv6", _IP, "Destination address (inner for tunnelled traffic)."),
    Column("src_port", "UInt16", pa.uint16(), "Source port (0 for ICMP)."),
    Column("dst_port", "UInt16", pa.uint16(), "Destination port (ICMP: type*256+code)."),
    Column("proto", "UInt8", pa.uint8(), "IANA protocol number."),
    Column("etype", "UInt16", pa.uint16(), "Ethertype of the (inner) network layer: 0x0800 or 0x86dd."),
    Column("tcp_flags", "UInt16", pa.uint16(), "OR of TCP flags seen."),
    Column("tos", "UInt8", pa.uint8(), "IPv4 TOS / IPv6 traffic class."),
    Column("src_mac", "UInt64", pa.uint64(), "Source MAC address as a 48-bit number."),
    Column("dst_mac", "UInt64", pa.uint64(), "Destination MAC address as a 48-bit number."),
    Column("vlan", "UInt16", pa.uint16(), "802.1Q VLAN id (0 when untagged)."),
    Column("packets", "UInt64", pa.uint64(), "Raw (unscaled) packet count."),
    Column("bytes", "UInt64", pa.uint64(), "Raw (unscaled) byte count."),
    Column("tunnel_type", "LowCardinality(String)", _STR, "'' (none), geneve, vxlan or gre."),
    Column("tunnel_id", "UInt32", pa.uint32(), "Geneve VNI / VXLAN VNI / GRE key."),
    Column("tunnel_src", "IPv6", _IP, "Outer (node) source address of a tunnelled packet."),
    Column("tunnel_dst", "IPv6", _IP, "Outer (node) destination address of a tunnelled packet."),
)

#: What the pipeline names each end with (filled by enrichment; '' when unknown).
ENDPOINT_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("pod", "Pod name."),
    ("namespace", "Kubernetes namespace."),
    ("workload", "Owning workload (Deployment, StatefulSet, ...)."),
    ("node", "Kubernetes node."),
    ("tenant", "Tenant owning the address."),
    ("subnet", "Kube-OVN subnet or legacy network."),
    ("vpc", "Kube-OVN VPC."),
    ("zone", "Security zone."),
    ("center", "Data center."),
    ("site", "Site (a city)."),
)

FLOW_COLUMNS = (
    FLOW_COLUMNS
    + tuple(
        Column(
            f"{end}_{attr}", "LowCardinality(String)", _STR, f"{doc[:-1]} of the {end} end.", group="enrich"
        )
        for end in ("src", "dst")
        for attr, doc in ENDPOINT_ATTRIBUTES
    )
    + (
        Column(
            "path",
            "LowCardinality(String)",
            _STR,
            "intra_node, intra_center, cross_center, cross_site, external or '' (not enriched).",
            group="enrich",
        ),
        Column(
            "exporter_node", "LowCardinality(String)", _STR, "Node of the exporting agent.", group="enrich"
        ),
        Column(
            "exporter_center",
            "LowCardinality(String)",
            _STR,
            "Data center of the exporting agent.",
            group="enrich",
        ),
    )
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in FLOW_COLUMNS)
COLLECT_COLUMNS: tuple[Column, ...] = tuple(c for c in FLOW_COLUMNS if c.group == "collect")
BY_NAME: dict[str, Column] = {c.name: c for c in FLOW_COLUMNS}


def arrow_schema(columns: tuple[Column, ...] = FLOW_COLUMNS) -> pa.Schema:
    """The Arrow schema of a flow batch on the wire and at insert."""
    return pa.schema(
        [pa.field(c.name, c.arrow, nullable=False) for c in columns],
        metadata={b"netobs.schema_version": str(SCHEMA_VERSION).encode()},
    )


def numpy_dtypes(columns: tuple[Column, ...] = COLLECT_COLUMNS) -> dict[str, np.dtype]:
    """Column name → numpy dtype, for decoders that fill columns directly."""
    return {c.name: c.numpy for c in columns}
