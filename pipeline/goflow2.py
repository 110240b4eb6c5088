"""goflow2's protobuf ``FlowMessage`` topic as a pipeline input (goflow2 collectors in front of netobs).

goflow2 v2 (``-transport=kafka -format=bin``) publishes one flow per Kafka record: a
``flowpb.FlowMessage`` (``pipeline/_goflow2_pb2.py``, generated from its ``pb/flow.proto``)
with a varint length prefix. Topics named in ``pipeline.goflow2_topics`` are consumed beside
``transport.kafka.topic`` by :class:`Goflow2Consumer`, and their records decoded here into
the netobs columns, so the same enrichment, store and delivery guarantees apply.

Decoding is columnar: the records of one poll are parsed together by
:mod:`pipeline._protowire` (numpy, one step per field position for all records at once;
the field numbers come from the generated descriptor). Parsing each record with upb and reading
its fields one attribute at a time runs at about half the rate (``goflow2.decode_upb`` in
``bench/bench_goflow2_input.py``). A record that is not a FlowMessage becomes an unreadable
message with its reason, which the pipeline counts and dead-letters.

Mapping (goflow2 → netobs column; raw counters stay raw, as netobs stores them):
``time_received_ns``/``time_flow_start_ns``/``time_flow_end_ns`` → ``time_received``/
``flow_start``/``flow_end`` (ns → ms; a missing start/end is the receive time);
``type`` → ``type`` (sflow, netflow5, netflow9, ipfix; FLOWUNKNOWN → unknown);
``sampler_address`` → ``exporter``; ``observation_domain_id`` → ``observation_domain``;
``sampling_rate`` → ``sampling_rate``; ``in_if``/``out_if``; ``src_addr``/``dst_addr`` (4 or
16 bytes → IPv6, IPv4 mapped); ``src_port``/``dst_port``, except ICMP/ICMPv6 without a
destination port, where ``dst_port`` = icmp_type*256 + icmp_code as netobs decodes it;
``proto``; ``etype``; ``tcp_flags``; ``ip_tos`` → ``tos``; ``src_mac``/``dst_mac``;
``vlan_id`` (802.1Q tag of a sampled packet) else ``src_vlan`` (IPFIX/NetFlow) → ``vlan``;
``packets``; ``bytes``; ``layer_stack`` containing Geneve/GRE → ``tunnel_type``;
``next_hop`` (else ``bgp_next_hop``) → ``next_hop``; ``src_as``/``dst_as``;
``src_net``/``dst_net`` (prefix lengths) → ``src_mask``/``dst_mask``;
``observation_point_id`` → ``observation_point``.

``direction``: goflow2 has none by default (stored as ``unknown``, so OVS bridge IPFIX
from goflow2 would count both observations); run goflow2 with the ``-mapping`` of its
docs/mapping.md that adds ``flow_direction`` (IE 61) as field 42 and it is ingress/egress.

No counterpart: ``tunnel_id``/``tunnel_src``/``tunnel_dst``
(goflow2 keeps only the addresses it decoded last). goflow2 fields with no netobs column:
sequence_num, forwarding_status, ip_ttl, ip_flags, ipv6_flow_label, fragment_id/offset,
next_hop_as, bgp_communities, as_path, mpls_*, layer_size, ipv6_routing_header_*.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from netobs import schema
from netobs.batch import FlowBatch
from netobs.config import KafkaTransportConfig
from netobs.transport.base import Message
from netobs.transport.kafka import KafkaBatchConsumer, batch_messages
from pipeline import _goflow2_pb2 as flowpb
from pipeline import _protowire

log = logging.getLogger(__name__)

FlowMessage = flowpb.FlowMessage  # type: ignore[attr-defined]  # built at import by protobuf

#: goflow2 FlowType → netobs ``type``.
FLOW_TYPES = ("unknown", "sflow", "netflow5", "netflow9", "ipfix")
_GENEVE, _GRE = FlowMessage.Geneve, FlowMessage.GRE
_F = {f.name: f.number for f in FlowMessage.DESCRIPTOR.fields}
#: The goflow2 varint fields read.
_SCALARS = (
    "type",
    "time_received_ns",
    "time_flow_start_ns",
    "time_flow_end_ns",
    "observation_domain_id",
    "sampling_rate",
    "in_if",
    "out_if",
    "src_port",
    "dst_port",
    "proto",
    "etype",
    "tcp_flags",
    "ip_tos",
    "src_mac",
    "dst_mac",
    "vlan_id",
    "src_vlan",
    "packets",
    "bytes",
    "icmp_type",
    "icmp_code",
    "src_as",
    "dst_as",
    "src_net",
    "dst_net",
    "observation_point_id",
)
#: The length-delimited fields read (addresses, and the decoded layer stack for tunnels).
_BYTES = ("sampler_address", "src_addr", "dst_addr", "layer_stack", "next_hop", "bgp_next_hop")
#: goflow2's documented custom field for IPFIX/NetFlow v9 flowDirection (IE 61), which its
#: ``-mapping`` file adds (docs/mapping.md: ``flow_direction``, index 42, varint; 0 ingress,
#: 1 egress). Absent (the default goflow2 setup): direction ``unknown``.
FLOW_DIRECTION = 42
_NO_DIRECTION = (1 << 64) - 1
_VARINTS = tuple(_F[name] for name in _SCALARS) + (FLOW_DIRECTION,)
_ABSENT = (0,) * len(_SCALARS) + (_NO_DIRECTION,)
_DIRECTIONS = ("ingress", "egress", "unknown")
_LENS = tuple(_F[name] for name in _BYTES)
_MAX_RECORD = 1 << 20  # a FlowMessage is ~100-300 bytes; anything near 1 MiB is not one
_PAD = 16
_TUNNELS = ("", "geneve", "gre")
_SCHEMA = schema.arrow_schema()
_U64 = np.uint64
_BYTE = np.uint64(0xFF)
_V4MAPPED = np.frombuffer(b"\x00" * 10 + b"\xff\xff", dtype=np.uint8)


@dataclass
class Decoded:
    """The good records of a list as one flow table (in order), and the bad ones with why."""

    table: pa.Table
    good: np.ndarray  # indices of the records that are rows of ``table``, ascending
    bad: list[tuple[int, str]] = field(default_factory=list)


def decode(values: Sequence[bytes | None]) -> Decoded:
    """Decode length-prefixed FlowMessage records into one flow table; bad ones listed by index."""
    records = [v if v is not None else b"" for v in values]
    n = len(records)
    lens = np.fromiter(map(len, records), dtype=np.int64, count=n)
    ends = np.cumsum(lens)
    starts = ends - lens
    buf = np.frombuffer(b"".join(records) + bytes(_PAD), dtype=np.uint8)
    size, prefix = _protowire.varints(buf, starts, 5)
    why = _frame_errors(lens, size, prefix)
    framed = np.flatnonzero([not w for w in why]) if why else np.arange(n)
    fields = _protowire.parse(buf, starts[framed] + prefix[framed], ends[framed], _VARINTS, _LENS, _ABSENT)
    cols, problems = columns(fields, len(framed))
    for i in np.flatnonzero(fields.bad):
        problems[int(i)] = _protowire.REASONS[fields.bad[i]]
    bad = [(i, f"not goflow2 -format=bin: {w}") for i, w in enumerate(why) if w] if why else []
    good = framed
    if problems:
        bad += [(int(framed[i]), f"not a goflow2 FlowMessage: {w}") for i, w in problems.items()]
        bad.sort()
        keep = np.setdiff1d(np.arange(len(framed)), np.fromiter(problems, dtype=np.int64))
        cols = {k: v[keep] for k, v in cols.items()}
        good = framed[keep]
    return Decoded(_table(cols, len(good)), good, bad)


def _frame_errors(lens: np.ndarray, size: np.ndarray, prefix: np.ndarray) -> list[str]:
    """Why each record is not one varint-length-prefixed message ('' if it is); [] if all are."""
    wrong = (lens == 0) | (prefix == 0) | (size.astype(np.int64) != lens - prefix) | (lens > _MAX_RECORD)
    if not wrong.any():
        return []
    why = [""] * len(lens)
    for i in np.flatnonzero(wrong):
        if lens[i] == 0:
            why[i] = "empty record"
        elif prefix[i] == 0 or prefix[i] > lens[i]:
            why[i] = "truncated length prefix"
        elif lens[i] > _MAX_RECORD:
            why[i] = f"record of {lens[i]} bytes is too large for a FlowMessage"
        else:
            why[i] = f"length prefix says {size[i]} bytes, the record has {lens[i] - prefix[i]}"
    return why


def columns(f: _protowire.Parsed, n: int) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """netobs columns of ``n`` parsed FlowMessages, and why some of them are not usable."""
    problems = {int(i): "a field has the wrong wire type" for i in np.flatnonzero(f.wrong_wire)}
    v = {name: f.values[:, k] for k, name in enumerate(_SCALARS)}
    direction = np.minimum(f.values[:, len(_SCALARS)], 2).astype(np.int8)  # 0, 1, else unknown
    received = (v["time_received_ns"] // _U64(1_000_000)).astype(np.int64)
    start = (v["time_flow_start_ns"] // _U64(1_000_000)).astype(np.int64)
    end = (v["time_flow_end_ns"] // _U64(1_000_000)).astype(np.int64)
    start = np.where(start > 0, start, received)
    proto, dst_port = v["proto"], v["dst_port"]
    icmp = ((proto == 1) | (proto == 58)) & (dst_port == 0)
    dst_port = np.where(icmp, (v["icmp_type"] & _BYTE) << _U64(8) | (v["icmp_code"] & _BYTE), dst_port)
    vlan = np.where(v["vlan_id"] > 0, v["vlan_id"], v["src_vlan"])
    kinds = np.minimum(v["type"], len(FLOW_TYPES) - 1).astype(np.intp)
    cols = {
        "time_received": received,
        "flow_start": start,
        "flow_end": np.where(end > 0, end, start),
        "type": kinds,
        "exporter": _addresses(f, 0, n, problems),
        "observation_domain": v["observation_domain_id"].astype(np.uint32),
        "sampling_rate": np.minimum(v["sampling_rate"], 0xFFFFFFFF).astype(np.uint32),
        "direction": direction,
        "in_if": v["in_if"].astype(np.uint32),
        "out_if": v["out_if"].astype(np.uint32),
        "src_addr": _addresses(f, 1, n, problems),
        "dst_addr": _addresses(f, 2, n, problems),
        "src_port": v["src_port"].astype(np.uint16),
        "dst_port": dst_port.astype(np.uint16),
        "proto": proto.astype(np.uint8),
        "etype": v["etype"].astype(np.uint16),
        "tcp_flags": v["tcp_flags"].astype(np.uint16),
        "tos": v["ip_tos"].astype(np.uint8),
        "src_mac": v["src_mac"],
        "dst_mac": v["dst_mac"],
        "vlan": vlan.astype(np.uint16),
        "packets": v["packets"],
        "bytes": v["bytes"],
        "tunnel_type": _tunnels(f, n),
        "next_hop": _next_hop(f, n, problems),
        "src_as": v["src_as"].astype(np.uint32),
        "dst_as": v["dst_as"].astype(np.uint32),
        "src_mask": np.where(v["src_net"] <= 128, v["src_net"], 0).astype(np.uint8),
        "dst_mask": np.where(v["dst_net"] <= 128, v["dst_net"], 0).astype(np.uint8),
        "observation_point": v["observation_point_id"].astype(np.uint32),
    }
    return cols, problems


def _table(cols: dict[str, np.ndarray], n: int) -> pa.Table:
    """The flow table of decoded columns, in the schema's order; string columns built in C."""
    arrays = []
    for col in schema.FLOW_COLUMNS:
        values = cols.get(col.name)
        if col.name == "type":
            arrays.append(_strings(FLOW_TYPES, values.astype(np.int32)))  # type: ignore[union-attr]
        elif col.name == "tunnel_type":
            arrays.append(_strings(_TUNNELS, values.astype(np.int32)))  # type: ignore[union-attr]
        elif col.name == "direction":
            arrays.append(_strings(_DIRECTIONS, values.astype(np.int32)))  # type: ignore[union-attr]
        elif values is None and pa.types.is_string(col.arrow):
            empty = np.zeros(n + 1, dtype=np.int32)
            arrays.append(pa.StringArray.from_buffers(n, pa.py_buffer(empty), pa.py_buffer(b"")))
        elif pa.types.is_fixed_size_binary(col.arrow) or pa.types.is_timestamp(col.arrow):
            raw = np.ascontiguousarray(values if values is not None else np.zeros(n, dtype=col.numpy))
            if pa.types.is_timestamp(col.arrow):
                arrays.append(pa.array(raw.astype(np.int64, copy=False)).view(col.arrow))
            else:
                arrays.append(pa.FixedSizeBinaryArray.from_buffers(col.arrow, n, [None, pa.py_buffer(raw)]))
        elif values is not None and pa.types.is_integer(col.arrow):
            arrays.append(pa.array(values.astype(col.numpy, copy=False), type=col.arrow))
        else:  # anything else, or absent: the kernel's own conversion (zero-filled)
            arrays.append(
                FlowBatch({col.name: values} if values is not None else {}, n).to_arrow((col,)).column(0)
            )
    return pa.Table.from_batches([pa.RecordBatch.from_arrays(arrays, schema=_SCHEMA)])


def _strings(names: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(names)).cast(pa.string())


def _addresses(f: _protowire.Parsed, k: int, n: int, problems: dict[int, str]) -> np.ndarray:
    """Address field ``_BYTES[k]`` (4 or 16 bytes) → the 16-byte column (IPv4 mapped; absent: ``::``)."""
    off, ln = f.offsets[:, k], f.lengths[:, k]
    out = np.zeros((n, 16), dtype=np.uint8)
    for width, at in ((16, 0), (4, 12)):
        rows = np.flatnonzero(ln == width)
        if rows.size:
            out[rows, at:] = f.buf[off[rows, None] + np.arange(width)]
            if width == 4:
                out[rows, :12] = _V4MAPPED
    for i in np.flatnonzero((ln != 0) & (ln != 4) & (ln != 16)):
        problems.setdefault(int(i), f"{_BYTES[k]} of {ln[i]} bytes (expected 4 or 16)")
    return out.view(np.dtype(("V", 16))).reshape(n)


def _next_hop(f: _protowire.Parsed, n: int, problems: dict[int, str]) -> np.ndarray:
    """``next_hop``, else ``bgp_next_hop``, as netobs keeps it: an unset (0.0.0.0 / ::) hop is ``::``."""
    out = np.zeros(n, dtype=np.dtype(("V", 16)))
    for k in (5, 4):  # the IP next hop wins over the BGP one, as the netobs decoders choose
        hop = _addresses(f, k, n, problems)
        raw = hop.view(np.uint8).reshape(n, 16)
        unset = ~raw[:, 12:].any(axis=1) & ~raw[:, :10].any(axis=1)  # :: or ::ffff:0.0.0.0
        out = np.where(unset, out, hop)
    return out


def _tunnels(f: _protowire.Parsed, n: int) -> np.ndarray:
    """Index into ``_TUNNELS``: geneve/gre when goflow2's decoded layer stack holds one."""
    out = np.zeros(n, dtype=np.int8)
    ln = f.lengths[:, 3]
    rows = np.flatnonzero(ln > 2)  # Ethernet + IP alone holds no tunnel
    if rows.size:  # packed enums: one byte per layer (every LayerStack value is < 128)
        width = int(ln[rows].max())
        layers = f.buf[np.minimum(f.offsets[rows, 3, None] + np.arange(width), len(f.buf) - 1)]
        layers = np.where(np.arange(width) < ln[rows, None], layers, 0xFF)
        out[rows[(layers == _GRE).any(axis=1)]] = 2
        out[rows[(layers == _GENEVE).any(axis=1)]] = 1
    return out


@dataclass
class RunMessage(Message):
    """Consecutive records ``position[2]..last_offset`` of one partition as one flow table."""

    last_offset: int = -1


class Goflow2Consumer(KafkaBatchConsumer):
    """Consumes ``transport.kafka.topic`` (netobs batches) and goflow2 topics (one flow per record).

    A poll's goflow2 records become few :class:`RunMessage` objects (runs of consecutive
    good records of a partition), so the pipeline handles tables, not single flows. A
    bad record splits the run and is returned alone as unreadable (counted, dead-lettered).
    Runs never cross the end of a batch range recorded by a previous owner of the partition,
    so a replayed batch is rebuilt with exactly its recorded composition.
    """

    def __init__(
        self, cfg: KafkaTransportConfig, goflow2_topics: Sequence[str], records_per_poll: int = 20_000
    ):
        self.goflow2_topics = frozenset(goflow2_topics)
        self.records_per_poll = records_per_poll
        self.bad_records = 0
        self._plan_ends: dict[tuple[str, int], int] = {}
        super().__init__(cfg)  # subscribes to topics()

    def topics(self) -> list[str]:
        return [self.config.topic, *sorted(self.goflow2_topics - {self.config.topic})]

    def set_rebalance_handler(
        self,
        revoked: Callable[[list[tuple[str, int]]], None],
        assigned: Callable[[dict[tuple[str, int], tuple[int, int] | None]], None],
    ) -> None:
        def on_revoked(keys: list[tuple[str, int]]) -> None:
            for key in keys:
                self._plan_ends.pop(key, None)
            revoked(keys)

        def on_assigned(plans: dict[tuple[str, int], tuple[int, int] | None]) -> None:
            for key, plan in plans.items():
                if plan is None:
                    self._plan_ends.pop(key, None)
                else:
                    self._plan_ends[key] = plan[1]
            assigned(plans)

        super().set_rebalance_handler(on_revoked, on_assigned)

    def poll(self, timeout_s: float, max_messages: int = 100) -> list[Message]:
        mine = any(tp.topic in self.goflow2_topics for tp in self._c.assignment())
        polled = self._poll_records(timeout_s, self.records_per_poll if mine else max_messages)
        out: list[Message] = []
        for tp, records in polled.items():
            if tp.topic in self.goflow2_topics:
                out += self._runs(tp.topic, tp.partition, records)
            else:
                out += batch_messages(tp, records)
        return out

    def _runs(self, topic: str, partition: int, records: list) -> list[Message]:
        key = (topic, partition)
        out, bad, plan_done = runs(topic, partition, records, self._plan_ends.get(key))
        self.bad_records += bad
        if plan_done:
            self._plan_ends.pop(key, None)
        return out


def runs(
    topic: str, partition: int, records: list, plan_end: int | None = None
) -> tuple[list[Message], int, bool]:
    """One partition's polled goflow2 records as messages: (messages, bad records, plan end reached).

    Consecutive good records form one :class:`RunMessage`; a bad record is a message of its
    own (``table`` None, its reason, its bytes); a run never crosses ``plan_end``, the last
    offset of a batch a previous owner recorded. Never raises: if decoding itself fails,
    every record is returned as unreadable with the error.
    """
    try:
        decoded = decode([r.value for r in records])
    except Exception as e:  # a decoder bug must not stop the consumer: the records are kept aside
        log.exception("goflow2 decoding of %d records of %s:%d failed", len(records), topic, partition)
        why = f"goflow2: decoder failed: {type(e).__name__}: {e}"
        return (
            [Message(None, (topic, partition, r.offset), error=why, raw=r.value) for r in records],
            len(records),
            False,
        )
    bad = dict(decoded.bad)
    out: list[Message] = []
    row, run, plan_done = 0, 0, False  # first row and length of the run being built

    def close(last: int) -> None:
        nonlocal row, run
        if run:
            first = records[last - run + 1].offset
            table = decoded.table.slice(row, run)
            out.append(RunMessage(table, (topic, partition, first), last_offset=records[last].offset))
            row, run = row + run, 0

    for i, r in enumerate(records):
        if i in bad:
            close(i - 1)
            out.append(Message(None, (topic, partition, r.offset), error=f"goflow2: {bad[i]}", raw=r.value))
            continue
        run += 1
        if plan_end is not None and not plan_done and r.offset >= plan_end:
            close(i)
            plan_done = True
    close(len(records) - 1)
    return out, len(bad), plan_done
