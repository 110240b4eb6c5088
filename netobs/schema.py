"""The flow record, as code: one ordered column list generates everything else.

From ``FLOW_COLUMNS`` come the ClickHouse DDL (single node and cluster variants, and a
legacy dialect for old servers), the Arrow schema used on the wire and for inserts, the
numpy dtypes the decoders fill, and the insert column list. Raw packet and byte counts
are stored with the sampling rate; scaling happens in queries (``bytes * sampling_rate``).
``COUNTER_COLUMNS`` does the same for interface counter records (sFlow counter samples),
the second record kind (``KINDS``) that travels on the wire and has its own table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

#: Bumped whenever a column is added, removed or changes type. Carried in every wire
#: message so that a consumer can refuse batches it does not understand.
#: 2: OVN Geneve ports, next hop / AS / masks, observation point; 3: biflow halves, counting model;
#: 4: planes, clusters, legacy hosts, NAT attribution (issue 20); 5: post-NAT addresses and ports.
SCHEMA_VERSION = 5


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
    #: DEFAULT expression given when converge adds the column to an existing table, so that rows
    #: stored before it existed read a meaningful value ('' : the type's default).
    backfill: str = ""

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype a decoder fills for this column."""
        if pa.types.is_fixed_size_binary(self.arrow):
            return np.dtype(("V", self.arrow.byte_width))
        if pa.types.is_timestamp(self.arrow):
            return np.dtype("int64")  # milliseconds since the epoch, UTC
        if pa.types.is_string(self.arrow) or pa.types.is_dictionary(self.arrow):
            return np.dtype(object)
        dtype: np.dtype = np.dtype(self.arrow.to_pandas_dtype())
        return dtype


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
    Column(
        "tunnel_type",
        "LowCardinality(String)",
        _STR,
        "'' (none), geneve, vxlan, gre, ipip, udp, ip (a repeated header of another protocol) or srv6.",
    ),
    Column("tunnel_id", "UInt32", pa.uint32(), "Geneve VNI / VXLAN VNI / GRE key."),
    Column("tunnel_src", "IPv6", _IP, "Outer (node) source address of a tunnelled packet."),
    Column("tunnel_dst", "IPv6", _IP, "Outer (node) destination address of a tunnelled packet."),
    Column(
        "tunnel_ovn_ingress_port",
        "UInt16",
        pa.uint16(),
        "OVN logical ingress port key from the Geneve OVN option (class 0x0102 type 0x80); 0: none.",
    ),
    Column(
        "tunnel_ovn_egress_port",
        "UInt16",
        pa.uint16(),
        "OVN logical egress port key from the Geneve OVN option (>= 32768: a multicast group); with "
        "tunnel_id (the datapath key) it names the logical port. 0: none.",
    ),
    Column(
        "next_hop",
        "IPv6",
        _IP,
        "Next hop router: sFlow extended router (else gateway BGP next hop), IPFIX/v9 IE 15/62 (else "
        "18/63), NetFlow v5 nexthop; :: when unknown.",
    ),
    Column("src_as", "UInt32", pa.uint32(), "Source autonomous system (0: unknown)."),
    Column("dst_as", "UInt32", pa.uint32(), "Destination (origin) autonomous system (0: unknown)."),
    Column("src_mask", "UInt8", pa.uint8(), "Source address prefix length (0: unknown)."),
    Column("dst_mask", "UInt8", pa.uint8(), "Destination address prefix length (0: unknown)."),
    Column(
        "observation_point",
        "UInt32",
        pa.uint32(),
        "IPFIX observationPointId (IE 138; OVS per-flow IPFIX sends it); 0: none.",
    ),
    Column(
        "biflow",
        "UInt8",
        pa.uint8(),
        "0: a one-way record; 1: the forward half of an RFC 5103 biflow record; 2: its reverse half "
        "(ends swapped, counters from the reverse IEs of enterprise 29305).",
    ),
    Column(
        "biflow_direction",
        "UInt8",
        pa.uint8(),
        "RFC 5103 biflowDirection (IE 239) as exported for the record: 0 arbitrary or absent, "
        "1 initiator (the record's source opened it), 2 reverseInitiator, 3 perimeter. Both halves "
        "carry the record's value.",
    ),
    Column(
        "post_nat_src_addr",
        "IPv6",
        _IP,
        "Source address after a NAT middlebox translated the packet, as the exporter reported it "
        "(IPFIX/NetFlow v9 IE 225 postNATSourceIPv4Address / 281 postNATSourceIPv6Address); :: when "
        "not reported.",
    ),
    Column(
        "post_nat_dst_addr",
        "IPv6",
        _IP,
        "Destination address after NAT (IE 226 postNATDestinationIPv4Address / 282 "
        "postNATDestinationIPv6Address); :: when not reported.",
    ),
    Column(
        "post_nat_src_port",
        "UInt16",
        pa.uint16(),
        "Source port after NAPT (IE 227 postNAPTSourceTransportPort); 0 when not reported.",
    ),
    Column(
        "post_nat_dst_port",
        "UInt16",
        pa.uint16(),
        "Destination port after NAPT (IE 228 postNAPTDestinationTransportPort); 0 when not reported.",
    ),
)

# Event time of rows stored before the counting model (the pipeline computes it for new rows;
# the rule is netobs.counting's, repeated here as SQL because the kernel's schema is its base).
_MS = "toUnixTimestamp64Milli"
_EVENT_END_SQL = (
    f"if({_MS}(flow_end) > {_MS}(time_received) - 86400000 AND {_MS}(flow_end) <= {_MS}(time_received) + 300000, "
    "flow_end, time_received)"
)
_EVENT_START_SQL = (
    f"if({_MS}(flow_start) > 0 AND flow_start <= flow_end AND {_EVENT_END_SQL} = flow_end, "
    f"greatest(flow_start, {_EVENT_END_SQL} - INTERVAL 1 DAY), {_EVENT_END_SQL})"
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
    (
        "plane",
        "Network plane (business, management, storage, backup, ...): the subnet's, else the attachment's.",
    ),
    ("cluster", "Kubernetes cluster."),
    ("host", "Legacy host or VM (from the CMDB)."),
)

#: Attributes stored as plain ``String``: a bank has some 100k pods, and a batch of flows names
#: tens of thousands of them. LowCardinality pays a hash insert per distinct value per insert
#: (measured: the two pod columns were 60% of the whole Arrow → ClickHouse conversion of a
#: flow, and plain strings made the insert 35% faster and the parts 5% smaller).
HIGH_CARDINALITY_ATTRIBUTES = frozenset({"pod"})

FLOW_COLUMNS = (
    FLOW_COLUMNS
    + tuple(
        Column(
            f"{end}_{attr}",
            "String" if attr in HIGH_CARDINALITY_ATTRIBUTES else "LowCardinality(String)",
            _STR,
            f"{doc[:-1]} of the {end} end.",
            group="enrich",
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
            "cluster_path",
            "LowCardinality(String)",
            _STR,
            "intra_cluster, cross_cluster (two clusters), cross_cloud (two clusters in two clouds) or '' "
            "(an end outside every cluster).",
            group="enrich",
        ),
        Column(
            "src_nat",
            "LowCardinality(String)",
            _STR,
            "How the source end was named behind a NAT/EIP: '' (not translated), fip, snat, dnat, "
            "snat_join (a pre-NAT observation of the same conversation), snat_subnet (only the subnet), "
            "postnat (the record's own post-NAT elements), postnat_join (another record's post-NAT elements).",
            group="enrich",
        ),
        Column(
            "dst_nat", "LowCardinality(String)", _STR, "The same for the destination end.", group="enrich"
        ),
        Column(
            "nat_confidence",
            "UInt8",
            pa.uint8(),
            "Confidence, in percent, of the NAT attribution of the end(s) named behind a NAT (the lower "
            "of the two); 0: no attribution.",
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
        # ---- the counting model (netobs.counting): filled by the pipeline, one decision per record
        Column(
            "event_start",
            "DateTime64(3, 'UTC')",
            _TS,
            "Start of the record's event time: flow_start, sanitized (netobs.counting).",
            group="enrich",
            codec="Delta, ZSTD(1)",
            backfill=_EVENT_START_SQL,
        ),
        Column(
            "event_end",
            "DateTime64(3, 'UTC')",
            _TS,
            "End of the record's event time: flow_end, or time_received when the exporter's clock is off "
            "by more than a day behind or five minutes ahead. Buckets, windows and baselines use it.",
            group="enrich",
            codec="Delta, ZSTD(1)",
            backfill=_EVENT_END_SQL,
        ),
        Column(
            "observer",
            "LowCardinality(String)",
            _STR,
            "Kind of observation point that exported the record (netobs.counting.OBSERVERS).",
            group="enrich",
        ),
        Column(
            "counted",
            "UInt8",
            pa.uint8(),
            "1 when this record is the observation that counts its traffic (netobs.counting); 0 for "
            "the other observations of the same packets, kept for path and loss analysis.",
            group="enrich",
            backfill="NOT (type = 'ipfix' AND direction = 'egress')",  # the rule before the model
        ),
        Column(
            "count_reason",
            "LowCardinality(String)",
            _STR,
            "Why the record counts or not (netobs.counting.REASONS).",
            group="enrich",
            backfill="'legacy_rule'",
        ),
        Column(
            "initiator",
            "LowCardinality(String)",
            _STR,
            "Which end opened the conversation: 'src' (this record is a request), 'dst' (a reply) "
            "or '' (not known).",
            group="enrich",
        ),
        Column(
            "role_method",
            "LowCardinality(String)",
            _STR,
            "How the initiator was decided (netobs.counting.ROLE_METHODS).",
            group="enrich",
        ),
        Column(
            "role_confidence",
            "UInt8",
            pa.uint8(),
            "Confidence in the initiator, in percent (0: not known).",
            group="enrich",
        ),
    )
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in FLOW_COLUMNS)
COLLECT_COLUMNS: tuple[Column, ...] = tuple(c for c in FLOW_COLUMNS if c.group == "collect")
BY_NAME: dict[str, Column] = {c.name: c for c in FLOW_COLUMNS}


# ---- interface counters (sFlow counter samples) ------------------------------------------------
#: Bumped like SCHEMA_VERSION, for the interface counter record.
COUNTER_SCHEMA_VERSION = 1
#: Record kinds a transport message can carry (:mod:`netobs.wire` puts the kind in its header).
FLOWS, COUNTERS = "flows", "counters"
KIND_KEY = b"netobs.kind"

_C32 = "32-bit counter as exported (0 when the agent does not have it)."
_C64 = "64-bit counter as exported."
#: Counters of RFC 3635's dot3StatsTable (sFlow Ethernet record 0:2), in the record's order.
ETHERNET_COUNTERS = (
    "alignment_errors",
    "fcs_errors",
    "single_collisions",
    "multiple_collisions",
    "sqe_test_errors",
    "deferred_transmissions",
    "late_collisions",
    "excessive_collisions",
    "internal_mac_tx_errors",
    "carrier_sense_errors",
    "frame_too_longs",
    "internal_mac_rx_errors",
    "symbol_errors",
)


def _u32(name: str, doc: str = _C32) -> Column:
    return Column(name, "UInt32", pa.uint32(), doc, codec="T64, ZSTD(1)")


def _u64(name: str, doc: str = _C64) -> Column:
    return Column(name, "UInt64", pa.uint64(), doc, codec="T64, ZSTD(1)")


#: One row per counter sample, in the order the decoder builds its rows (collectors.counters).
#: Counters are raw snapshots; per-interval deltas, wrap and reset handling are query-time
#: (:mod:`netobs.counter_rates`), like the sampling rate of flows.
COUNTER_COLUMNS: tuple[Column, ...] = (
    (
        BY_NAME["time_received"],
        Column("type", "LowCardinality(String)", _STR, "Export protocol: sflow."),
        Column("exporter", "IPv6", _IP, "sFlow agent address (IPv4 mapped into IPv6)."),
        Column("observation_domain", "UInt32", pa.uint32(), "sFlow sub-agent id."),
        Column("source_id", "UInt32", pa.uint32(), "sFlow data source: class << 24 | index."),
        Column("if_index", "UInt32", pa.uint32(), "ifIndex of the interface."),
        Column("if_type", "UInt32", pa.uint32(), "ifType (IANA; 6: ethernetCsmacd)."),
        Column("if_speed", "UInt64", pa.uint64(), "ifSpeed in bits per second (0: unknown)."),
        Column("if_direction", "UInt32", pa.uint32(), "0 unknown, 1 full duplex, 2 half, 3 in, 4 out."),
        Column("if_status", "UInt32", pa.uint32(), "Bit 0: ifAdminStatus up, bit 1: ifOperStatus up."),
        _u64("in_octets"),
        _u64("in_packets", "Unicast + multicast + broadcast packets received (each a 32-bit counter)."),
        _u32("in_errors"),
        _u32("in_discards"),
        _u64("out_octets"),
        _u64("out_packets", "Unicast + multicast + broadcast packets sent (each a 32-bit counter)."),
        _u32("out_errors"),
        _u32("out_discards"),
    )
    + tuple(_u32(name, f"dot3Stats counter (RFC 3635). {_C32}") for name in ETHERNET_COUNTERS)
    + (
        Column("of_dpid", "UInt64", pa.uint64(), "OpenFlow datapath id (OVS record 0:1004; 0: none)."),
        Column("of_port", "UInt32", pa.uint32(), "OpenFlow port number (OVS record 0:1004)."),
        Column("if_name", "LowCardinality(String)", _STR, "ifName, when the agent sends it (OVS 0:1005)."),
        _u32("in_unicast_packets"),
        _u32("in_multicast_packets"),
        _u32("in_broadcast_packets"),
        _u32("in_unknown_protos"),
        _u32("out_unicast_packets"),
        _u32("out_multicast_packets"),
        _u32("out_broadcast_packets"),
        Column("promiscuous", "UInt32", pa.uint32(), "ifPromiscuousMode: 1 when promiscuous."),
        Column("exporter_node", "LowCardinality(String)", _STR, "Node of the agent.", group="enrich"),
        Column(
            "exporter_center", "LowCardinality(String)", _STR, "Data center of the agent.", group="enrich"
        ),
    )
)
COUNTER_NAMES: tuple[str, ...] = tuple(c.name for c in COUNTER_COLUMNS)
COUNTER_COLLECT_COLUMNS: tuple[Column, ...] = tuple(c for c in COUNTER_COLUMNS if c.group == "collect")
COUNTER_BY_NAME: dict[str, Column] = {c.name: c for c in COUNTER_COLUMNS}

# ---- pod packet samples and their L7 context (``netobs sample``) ----------------------------------
#: Bumped like SCHEMA_VERSION, for the two packet-sample record kinds.
SAMPLE_SCHEMA_VERSION = 1
PACKET_SAMPLES, L7 = "packet_samples", "l7_conversations"
#: Attributes of both ends the pipeline names on samples and L7 rows (a subset of the flows').
SAMPLE_ATTRIBUTES = ("pod", "namespace", "workload", "node", "tenant", "zone", "center")


def _lc(name: str, doc: str, group: str = "collect") -> Column:
    return Column(name, "LowCardinality(String)", _STR, doc, group=group)


def _ends(group: str = "enrich") -> tuple[Column, ...]:
    return tuple(
        Column(f"{end}_{attr}", "String" if attr in HIGH_CARDINALITY_ATTRIBUTES else "LowCardinality(String)",
               _STR, f"{attr} of the {end} end at the packet's time.", group=group)
        for end in ("src", "dst") for attr in SAMPLE_ATTRIBUTES
    )  # fmt: skip


_FIVE_TUPLE = (
    BY_NAME["src_addr"],
    BY_NAME["dst_addr"],
    BY_NAME["src_port"],
    BY_NAME["dst_port"],
    BY_NAME["proto"],
)
_CAPTURE = (
    _lc("agent", "Node the sampling agent runs on."),
    _lc("capture_if", "Interface captured on (host end of the pod's port on the bridge)."),
    Column("capture_pod", "String", _STR, "Pod of that interface (OVS external_ids), at capture time."),
    _lc("capture_namespace", "Namespace of that pod (OVS external_ids)."),
)
#: One row per sampled packet: headers only (never a payload byte), with the sampling rate.
SAMPLE_COLUMNS: tuple[Column, ...] = (
    BY_NAME["time_received"],
    Column(
        "packet_time", "DateTime64(3, 'UTC')", _TS, "When the packet was captured.", codec="Delta, ZSTD(1)"
    ),
    *_CAPTURE,
    _lc("direction", "from_pod (the pod sent it) or to_pod."),
    *_FIVE_TUPLE,
    Column("tcp_flags", "UInt16", pa.uint16(), "TCP flags."),
    Column("tos", "UInt8", pa.uint8(), "IP TOS / traffic class."),
    Column("ttl", "UInt8", pa.uint8(), "IP TTL / hop limit."),
    Column("vlan", "UInt16", pa.uint16(), "802.1Q VLAN id (0: untagged)."),
    Column("etype", "UInt16", pa.uint16(), "EtherType."),
    Column("wire_len", "UInt32", pa.uint32(), "Frame length on the wire (bytes)."),
    Column(
        "payload_len", "UInt32", pa.uint32(), "Transport payload length (from the headers; never the bytes)."
    ),
    _lc("payload_class", "What the payload's first bytes look like: none, tls, http, dns, text, binary."),
    Column("sampling_rate", "UInt32", pa.uint32(), "1:N packet sampling of the agent (scale counts by it)."),
    _lc("sampling_mode", "deterministic (every Nth) or random (probability 1/N)."),
    *_ends(),
)
#: One row per conversation and agent flush: what the handshakes, DNS messages and HTTP heads said.
L7_COLUMNS: tuple[Column, ...] = (
    BY_NAME["time_received"],
    Column("first_seen", "DateTime64(3, 'UTC')", _TS, "First packet of the conversation in this summary."),
    Column("last_seen", "DateTime64(3, 'UTC')", _TS, "Last packet of the conversation in this summary."),
    *_CAPTURE,
    Column("src_addr", "IPv6", _IP, "Client address (who sent the query / hello / request)."),
    Column("dst_addr", "IPv6", _IP, "Server address."),
    Column("src_port", "UInt16", pa.uint16(), "Client port."),
    Column("dst_port", "UInt16", pa.uint16(), "Server port."),
    BY_NAME["proto"],
    _lc("l7_protocol", "dns, tls, http, or '' (payload seen, protocol not recognised)."),
    _lc("encryption", "tls (encrypted), plaintext (HTTP or printable text), opaque (binary, not TLS), ''."),
    Column("packets", "UInt32", pa.uint32(), "Packets of the conversation the agent looked at."),
    Column("dns_qname", "String", _STR, "DNS query name (hashed or truncated per tenant by config)."),
    Column("dns_qname_length", "UInt16", pa.uint16(), "Length of the query name as seen (before privacy)."),
    Column("dns_qtype", "UInt16", pa.uint16(), "DNS query type (1 A, 28 AAAA, 16 TXT, ...)."),
    Column("dns_rcode", "UInt16", pa.uint16(), "DNS response code (0 NOERROR, 3 NXDOMAIN, ...)."),
    Column("dns_answers", "String", _STR, "Answer addresses / names, comma separated (at most 16)."),
    _lc("tls_version", "TLS version: negotiated (ServerHello) or highest offered (ClientHello only)."),
    _lc("tls_cipher", "Cipher suite the server chose (0x....)."),
    Column("tls_sni", "String", _STR, "Server name the client asked for (hashed or truncated by config)."),
    _lc("tls_alpn", "ALPN protocols offered/chosen."),
    Column("tls_ja3", "String", _STR, "JA3 of the ClientHello."),
    Column("tls_ja4", "String", _STR, "JA4 of the ClientHello."),
    _lc("http_method", "HTTP request method."),
    Column("http_host", "String", _STR, "HTTP Host header (hashed or truncated like names)."),
    Column("http_path", "String", _STR, "Path template (numbers and ids replaced by {}; no query)."),
    Column("http_status", "UInt16", pa.uint16(), "HTTP response status."),
    *_ends(),
)
#: Record kind → (its columns, its schema version).
KINDS: dict[str, tuple[tuple[Column, ...], int]] = {
    FLOWS: (FLOW_COLUMNS, SCHEMA_VERSION),
    COUNTERS: (COUNTER_COLUMNS, COUNTER_SCHEMA_VERSION),
    PACKET_SAMPLES: (SAMPLE_COLUMNS, SAMPLE_SCHEMA_VERSION),
    L7: (L7_COLUMNS, SAMPLE_SCHEMA_VERSION),
}


def arrow_schema(columns: tuple[Column, ...] = FLOW_COLUMNS, kind: str = FLOWS) -> pa.Schema:
    """The Arrow schema of a batch of ``kind`` on the wire and at insert.

    Flow batches carry no kind (their metadata is what it was before counters existed);
    other kinds name themselves under ``netobs.kind`` so that consumers can dispatch.
    """
    metadata = {b"netobs.schema_version": str(KINDS[kind][1]).encode()}
    if kind != FLOWS:
        metadata[KIND_KEY] = kind.encode()
    return pa.schema([pa.field(c.name, c.arrow, nullable=False) for c in columns], metadata=metadata)


def kind_of(table: pa.Table | pa.RecordBatch) -> str:
    """The record kind a batch declares in its schema metadata (flows when it declares none)."""
    meta: dict[bytes, bytes] = table.schema.metadata or {}
    return meta.get(KIND_KEY, FLOWS.encode()).decode("ascii", "replace")


def numpy_dtypes(columns: tuple[Column, ...] = COLLECT_COLUMNS) -> dict[str, np.dtype]:
    """Column name → numpy dtype, for decoders that fill columns directly."""
    return {c.name: c.numpy for c in columns}
