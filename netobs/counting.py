"""The counting model: which observation of a packet counts it, and who opened its conversation.

One flow is reported several times: Open vSwitch bridge IPFIX reports it at the bridge's
ingress and at its egress on every node it crosses; sFlow samples it on every node it
enters; a probe on each node sees a cross-node flow twice; a router may see it on several
interfaces. netobs keeps every record as exported and decides, per record and without state
across records, whether it is *the* observation that counts its packets. Every figure that
netobs shows a person (rollups, dashboards, detectors, policy, reports) sums ``counted = 1``
rows only, through :data:`COUNTED` or the rollups built on it.

The rule (first that applies; evaluated over batches by :mod:`netobs.observations` in the pipeline):

1. **One observation per exporter, one exporter per node.** An exporter that reports the same packets at ingress and
   at egress (``dual``: OVS bridge IPFIX, a router exporting both directions of an interface)
   counts its ingress observation; its egress copy is ``dual_direction_copy``. ``dual`` is
   detected from the data (the same flow key at ingress and egress of one exporter) or set in
   ``counting.exporters``. Exporters that report once (probes marked egress, sFlow, per-flow
   IPFIX, NetFlow v5 without a direction) count every record they send. An exporter is one
   (address, protocol, observation domain); a node that runs several (sFlow and IPFIX, bridge IPFIX and
   a probe) counts through one of them, complete flow records before sampled packets
   (``other_exporter_of_node`` for the others; ``count: always`` keeps one counting).
2. **The packet's first covered node.** A node exporter (its address is a Kubernetes/OVS node)
   counts what it observed when the source end lives on its node (``source_node``). When the
   source end is not on a node that has a node exporter (an external client, a legacy host, a
   node without an exporter) the destination's node counts (``destination_node``). Other
   nodes' observations of the same packets are ``seen_at_source_node`` /
   ``seen_at_destination_node`` (not counted); a node that sees a flow neither of whose ends is
   on a covered node (a gateway between two outside ends) counts it (``transit_only``).
3. **Devices only where no node saw the packets.** A router, switch or probe that is not a
   node counts a flow only when neither end is on a covered node, and then only in the first
   center on the packet's path that has such a device: the source's center
   (``device_source_center``), else the destination's (``device_destination_center``), else
   the device is the only observer (``device_only``). Otherwise: ``seen_by_node`` /
   ``seen_by_other_device``.
4. ``counting.exporters`` can force ``count: always`` / ``never`` per exporter CIDR
   (``forced``, ``excluded``).

Coverage (which nodes have a node exporter, which centers a device exporter) is learned from
the exporters seen, persisted in ``observation_points``, and can be declared in config.
sFlow on both nodes of a cross-node path therefore counts the sender's samples only: the
estimate is not doubled. RFC 5103 biflows are decoded into two rows (``biflow`` 1 and 2),
each counted by the rule above, so both directions count.

**Initiator** (``initiator``: 'src' | 'dst' | ''), first method that decides, per record:
biflowDirection (``biflow``), ICMP echo request/reply (``icmp``), a single TCP SYN (``tcp_syn``)
or SYN-ACK (``tcp_synack``), a listening port known from metadata (``service_port``: Kubernetes
Services, container ports), a well-known port below 1024 against a higher one (``well_known``),
a registered service port (``registered_port``), an ephemeral port against a non-ephemeral one
(``ephemeral``), the lower port (``lower_port``, low confidence).
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Kinds of observation point (``observer`` column).
OBSERVERS: dict[str, str] = {
    "ovs_bridge_ipfix": "Open vSwitch bridge IPFIX on a node: reports ingress and egress of the bridge.",
    "ovs_perflow_ipfix": "Open vSwitch per-flow IPFIX (sample() action; sends observationPointId).",
    "ovs_sflow": "sFlow agent on a node (Open vSwitch): samples packets entering the datapath.",
    "node_ipfix": "IPFIX / NetFlow v9 from a node that reports each flow once (a probe on the node).",
    "node_netflow5": "NetFlow v5 from a node (no direction field).",
    "node_biflow": "RFC 5103 biflow records from a node.",
    "device_sflow": "sFlow from a switch or router (not a node).",
    "device_flow": "IPFIX / NetFlow from a router, switch or probe that is not a node.",
    "device_biflow": "RFC 5103 biflow records from a device that is not a node.",
}
#: Why a record counts (``counted = 1``) or not, as ``count_reason``.
REASONS: dict[str, str] = {
    "source_node": "counted: observed on the node of the source end, as the packet left it",
    "destination_node": "counted: the source end is not on a covered node; observed on the destination's node",
    "transit_only": "counted: a node observation of a flow neither of whose ends is on a covered node",
    "device_source_center": "counted: no node saw it; a device in the source's center",
    "device_destination_center": "counted: no node saw it; a device in the destination's center",
    "device_only": "counted: no node saw it and no device in either end's center; this device did",
    "forced": "counted: counting.exporters says count: always",
    "dual_direction_copy": "not counted: the egress copy of an exporter that reports ingress and egress",
    "other_exporter_of_node": "not counted: another exporter of the same node counts these packets",
    "seen_at_source_node": "not counted: the source's node reports the same packets",
    "seen_at_destination_node": "not counted: the destination's node reports the same packets",
    "seen_by_node": "not counted: a node reports the same packets",
    "seen_by_other_device": "not counted: a device nearer the source reports the same packets",
    "excluded": "not counted: counting.exporters says count: never",
    "legacy_rule": "decided by the pre-model rule (records stored before the counting model)",
}
COUNTING_REASONS = frozenset(r for r, doc in REASONS.items() if doc.startswith("counted"))
#: How the initiator was decided (``role_method``) and its confidence in percent.
ROLE_METHODS: dict[str, int] = {
    "biflow": 99,
    "icmp": 95,
    "tcp_syn": 95,
    "tcp_synack": 90,
    "service_port": 90,
    "well_known": 75,
    "registered_port": 70,
    "ephemeral": 60,
    "lower_port": 30,
}

# ---- SQL over the flows table ------------------------------------------------------------------
#: The one counting condition every query over raw ``flows`` uses.
COUNTED = "counted = 1"
#: One observation per exporter (rule 1), counted or not: an exporter's egress copy of packets it also
#: reported at ingress is left out, so each observation point's sampled packets are its own sample once.
ONE_PER_EXPORTER = "count_reason != 'dual_direction_copy'"
#: A pod (its namespace), a node or a named network on either end: what "named" means in coverage.
NAMED = (
    "(src_pod != '' OR src_namespace != '' OR src_node != '' OR src_subnet != '' OR "
    "dst_pod != '' OR dst_namespace != '' OR dst_node != '' OR dst_subnet != '')"
)
#: Client and server ends of a record, from the initiator (the source when not known).
IS_REPLY = "initiator = 'dst'"


def client(column: str) -> str:
    """``src_<column>`` of requests, ``dst_<column>`` of replies: the client end's value."""
    return f"if({IS_REPLY}, dst_{column}, src_{column})"


def server(column: str) -> str:
    """The server end's value of ``<end>_<column>``."""
    return f"if({IS_REPLY}, src_{column}, dst_{column})"


#: Event time. A record's packets belong to [flow_start, flow_end]; exporters with broken
#: clocks (1970, the future) fall back to the collector's receive time. A record is spread
#: over at most MAX_SPAN_S before its end. The pipeline stores both ends as ``event_start`` and
#: ``event_end`` (netobs.observations.event_times).
MAX_EXPORT_LAG_S = 86_400
MAX_CLOCK_AHEAD_S = 300
MAX_SPAN_S = 86_400
#: Event time of a raw flow row (its end).
EVENT_TIME = "event_end"
#: Default watermark: a bucket is final this long after its end (``counting.allowed_lateness_s``).
ALLOWED_LATENESS_S = 600


def in_event_range(start: str, end: str, lateness_s: int = ALLOWED_LATENESS_S) -> str:
    """Rows whose event time is in [start, end): received from ``start`` (events precede receipt,
    bar a few minutes of clock skew) until ``lateness_s`` after ``end``."""
    return (
        f"time_received >= {start} - INTERVAL {MAX_CLOCK_AHEAD_S} SECOND "
        f"AND time_received < {end} + INTERVAL {int(lateness_s)} SECOND "
        f"AND event_end >= {start} AND event_end < {end}"
    )


#: Column pairs swapped to orient a record from client to server.
_PAIRS = ("addr", "port", "mac", "as", "mask") + (
    "pod", "namespace", "workload", "node", "tenant", "subnet", "vpc", "zone", "center", "site",
)  # fmt: skip


#: ICMP carries no ports: exporters put ``type * 256 + code`` in dst_port (src_port 0). A reply's
#: type names its request's (echo reply 0 → echo request 8, timestamp 14 → 13, information 16 → 15,
#: address mask 18 → 17; ICMPv6 echo reply 129 → 128), so a turned reply joins its request's
#: conversation instead of forming one of its own (server "port" 0).
_ICMP_TYPE = "toUInt16(intDiv(dst_port, 256))"
ICMP_REQUEST_PORT = (
    f"toUInt16(if(proto = 1, transform({_ICMP_TYPE}, [0, 14, 16, 18], [8, 13, 15, 17], {_ICMP_TYPE}), "
    f"transform({_ICMP_TYPE}, [129], [128], {_ICMP_TYPE})) * 256 + dst_port % 256)"
)
_ICMP = "proto IN (1, 58)"


def oriented(source: str, where: str = "") -> str:
    """``source`` (a table) with each reply turned around: ``src_*`` is the client, ``dst_*`` the
    server, for every record (requests as they are). ``is_reply`` says which rows were turned.
    An ICMP reply keeps its ports, its type turned into its request's (:data:`ICMP_REQUEST_PORT`)."""
    special = {
        "src_port": f"if({IS_REPLY} AND NOT {_ICMP}, dst_port, src_port) AS src_port",
        "dst_port": f"if({IS_REPLY}, if({_ICMP}, {ICMP_REQUEST_PORT}, src_port), dst_port) AS dst_port",
    }
    swaps = ", ".join(
        special.get(f"{a}_{c}", f"if({IS_REPLY}, {b}_{c}, {a}_{c}) AS {a}_{c}")
        for c in _PAIRS
        for a, b in (("src", "dst"), ("dst", "src"))
    )
    w = f" WHERE {where}" if where else ""
    return f"(SELECT * REPLACE ({swaps}), {IS_REPLY} AS is_reply FROM {source}{w})"


# ---- configuration -----------------------------------------------------------------------------
class ExporterCounting(BaseModel):
    """Counting policy of the exporters in ``match`` (CIDRs of exporter addresses)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    match: tuple[str, ...] = Field(description="Exporter addresses or CIDRs this entry applies to.")
    observer: Literal["auto", *OBSERVERS.keys()] = Field(  # type: ignore[valid-type]
        "auto", description="Kind of observation point (auto: from the protocol, the address and the data)."
    )
    directions: Literal["auto", "dual", "single"] = Field(
        "auto",
        description="dual: reports the same packets at ingress and egress (count ingress); single: once; "
        "auto: detected from the data.",
    )
    count: Literal["auto", "always", "never"] = Field(
        "auto", description="auto: the counting model decides; always / never: override it."
    )
    center: str = Field("", description="Data center of a device exporter (routers are not nodes).")

    @field_validator("match", mode="before")
    @classmethod
    def _cidrs(cls, v: object) -> tuple[str, ...]:
        items = [v] if isinstance(v, str) else list(v or ())  # type: ignore[call-overload]
        out = tuple(str(ipaddress.ip_network(str(c).strip(), strict=False)) for c in items)
        if not out:
            raise ValueError("at least one exporter address or CIDR is needed")
        return out


class CountingConfig(BaseModel):
    """The counting model's settings (see :mod:`netobs.counting`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    exporters: tuple[ExporterCounting, ...] = Field(
        (), description="Per-exporter observation kind, direction convention and count override."
    )
    covered_nodes: Literal["learned", "all"] = Field(
        "learned",
        description="Which nodes have a node exporter: learned from the exporters seen (persisted), or all "
        "nodes of the inventory (a DaemonSet on every node).",
    )
    allowed_lateness_s: int = Field(
        ALLOWED_LATENESS_S,
        ge=0,
        description="A time bucket is final this long after its end (the watermark): analytics judge only "
        "final buckets; exporters' active timeouts and transport delays must fit in it.",
    )
    dual_detect_rows: int = Field(
        200_000,
        ge=0,
        description="Records of an exporter examined for ingress/egress pairs before it is taken as single "
        "(0: never detect).",
    )
