"""sFlow version 5 decoder (sflow.org/sflow_version_5.txt) into columnar batches.

Each flow sample is one sampled packet: ``packets = 1``, ``bytes = frame_length`` (raw,
unscaled; for Ethernet it includes the FCS, as the spec says), ``sampling_rate`` as sent,
``flow_start = flow_end = time_received``. The exporter column is the datagram's agent
address (the UDP source when the agent address is unset).

Interfaces (``in_if`` / ``out_if``) keep the sFlow *compact* encoding of §5 "interface":
the top two bits are the format and the low 30 bits the value. Format 0 is a plain
ifIndex (``0x3FFFFFFF`` = the agent itself / internal); format 1 (``0x40000000 | reason``)
means the packet was dropped, e.g. ``0x40000000 | 256`` unknown; format 2
(``0x80000000 | n``) means it went out of ``n`` interfaces (flooded; ``n = 0`` unknown).
Expanded samples (format and value in separate words) are folded into the same form, so
one query (``out_if >= 0x40000000``) finds all discards and floods.

Extended router records (0:1002) give ``next_hop`` and the prefix lengths ``src_mask`` /
``dst_mask``; extended gateway records (0:1003) give ``src_as`` / ``dst_as`` (and
``next_hop``, its BGP next hop, when no router record came). Like goflow2 (producer_sf.go),
``dst_as`` is the last AS of the destination AS path (the origin AS; sflowtool and pmacct
read it there too), or the router's own AS when the path is empty (a local destination),
and ``src_as`` falls back to the router's AS when the agent sends 0. Unlike goflow2, which
reads only the first path segment, every segment is walked: the last AS of the last one.

The per-datagram work runs in C (``collectors/_native/sflow.c``) when that extension is
built: it parses the flow samples into native column buffers and keeps the sequence
state, while counter samples are still decoded here. This Python code stays the
reference and the fallback (``NETOBS_NATIVE=0`` forces it); the tests compare the two.
"""

from __future__ import annotations

import importlib
import logging
import os
import struct
from types import ModuleType

import numpy as np

from collectors import packet
from collectors._columns import (
    DIRECTION_NAMES,
    PackedRows,
    batch,
    constant,
    constant_text,
    directions,
    text,
    transpose,
)
from collectors._sequence import LATE_WINDOW, MAX_STREAMS, SequenceTracker
from collectors._sflow_counters import counter_row
from collectors.counters import COUNTER_COLUMNS, COUNTER_NAMES, CounterBatch
from collectors.stats import ExporterStats
from netobs import schema
from netobs.batch import FlowBatch

log = logging.getLogger(__name__)

IF_FORMAT_SHIFT = 30
IF_VALUE_MASK = 0x3FFFFFFF
IF_DISCARDED = 1 << IF_FORMAT_SHIFT
IF_MULTIPLE = 2 << IF_FORMAT_SHIFT

_U32 = struct.Struct(">I")
_HEAD_V4 = struct.Struct(">4sIIII")  # agent, sub-agent, sequence, uptime ms, samples
_HEAD_V6 = struct.Struct(">16sIIII")
_TLV = struct.Struct(">II")  # data format (enterprise << 12 | format), length
_FLOW = struct.Struct(">IIIIIIII")  # seq, source id, rate, pool, drops, input, output, records
_FLOW_X = struct.Struct(">IIIIIIIIIII")  # expanded: source type/index, in/out format+value
_COUNTERS = struct.Struct(">III")  # seq, source id, records
_COUNTERS_X = struct.Struct(">IIII")  # expanded: seq, source type, source index, records
_RAW = struct.Struct(">IIII")  # header protocol, frame length, stripped, header length
_ETH_REC = struct.Struct(">I6s2x6s2xI")  # length, src mac, dst mac, type
_IPV4_REC = struct.Struct(">II4s4sIIII")  # length, proto, src, dst, sport, dport, flags, tos
_IPV6_REC = struct.Struct(">II16s16sIIII")
_SWITCH_REC = struct.Struct(">IIII")  # src vlan, src prio, dst vlan, dst prio
_ROUTER_MASKS = struct.Struct(">II")  # extended router, after the next hop: src, dst mask length
_GATEWAY_AS = struct.Struct(">IIII")  # after the next hop: router AS, src AS, src peer AS, segments
#: next_hop, src_as, dst_as, src_mask, dst_mask of a sample with no router / gateway record.
_NO_ROUTE = (packet.ZERO_ADDR, 0, 0, 0, 0)
ROUTE_FIELDS = ("next_hop", "src_as", "dst_as", "src_mask", "dst_mask")

_DTYPES = schema.numpy_dtypes()
_CODE = np.dtype("u1")  # text columns travel as small codes in the packed row
#: The packed row of one flow sample: datagram fields, sample fields, then PacketInfo.
ROW_FIELDS = tuple(
    (name, _CODE if _DTYPES[name] == np.dtype(object) else _DTYPES[name])
    for name in (
        "time_received",
        "exporter",
        "observation_domain",
        "sampling_rate",
        "in_if",
        "out_if",
        "direction",
        "bytes",
    )
    + packet.PacketInfo._fields
    + ROUTE_FIELDS
)
_TUNNEL_NAMES = np.array(["", "geneve", "vxlan", "gre", "srv6"], dtype=object)  # packet.h PKT_TUNNEL_*
_TUNNEL_CODES = {name: i for i, name in enumerate(_TUNNEL_NAMES)}
_TUNNEL_AT = packet.PacketInfo._fields.index("tunnel_type")
_VLAN_AT = packet.PacketInfo._fields.index("vlan")
_COLUMN_DTYPES = tuple(np.dtype(dt) for _, dt in ROW_FIELDS)
_U64, _OBJECT = np.dtype(np.uint64), np.dtype(object)
#: The native columns grouped by dtype: (column indexes) per group, and (dtype, names).
_BY_DTYPE: dict[np.dtype, list[int]] = {}
for _i, _dt in enumerate(_COLUMN_DTYPES):
    _BY_DTYPE.setdefault(_dt, []).append(_i)
_GROUPS = tuple(tuple(v) for v in _BY_DTYPE.values())
_GROUP_NAMES = tuple((dt, tuple(ROW_FIELDS[i][0] for i in v), len(v)) for dt, v in _BY_DTYPE.items())
#: Collect columns sFlow never fills (zeros, or '' for text), as :func:`complete` would add them.
_ABSENT = tuple(
    (name, _OBJECT if dt == _OBJECT else dt)
    for name, dt in _DTYPES.items()
    if name not in dict(ROW_FIELDS) and name not in ("flow_start", "flow_end", "type", "packets")
)


_MAX_FIXED = 1024  # flush shapes (rows, zero columns) whose fixed columns are kept
_MAX_MIXED = 16  # mixes of direction / tunnel codes kept per flush shape...
_MAX_MIXED_ROWS = 64  # ...of at most this many rows (a datagram's)
_MAX_FIXED_ROWS = 4096  # (larger flushes are rare: they build theirs)


class _Fixed:
    """The columns of a flush of ``n`` sFlow rows that do not depend on the rows' values: the
    type, ``packets`` = 1, the collect columns sFlow never fills (zeros, '' for text), the
    native columns that are 0 in every row (the bits of ``zeros``, by ROW_FIELDS index), and the
    text of a direction or tunnel type alike in every row. Read-only views of shared arrays
    (see :func:`collectors._columns.constant`), so one set serves every flush of that shape.
    ``groups``: (index, dtype, names, count) of each dtype group's columns that are not all 0."""

    __slots__ = ("n", "columns", "groups", "_texts", "_mixed")

    def __init__(self, n: int, zeros: int = 0) -> None:
        self.n = n
        cols = {"type": constant_text("sflow", n), "packets": constant(_U64, 1, n)}
        for name, dtype in _ABSENT:
            cols[name] = constant_text("", n) if dtype is _OBJECT else constant(dtype, 0, n)
        groups = []
        for i, ((dtype, _names, _size), indexes) in enumerate(zip(_GROUP_NAMES, _GROUPS, strict=True)):
            names = []
            for c in indexes:
                if zeros >> c & 1:
                    cols[ROW_FIELDS[c][0]] = constant(dtype, 0, n)
                else:
                    names.append(ROW_FIELDS[c][0])
            if names:
                groups.append((i, dtype, tuple(names), len(names)))
        self.columns = cols
        self.groups = tuple(groups)
        self._texts: dict[str, np.ndarray] = {}
        self._mixed: dict[tuple[int, bytes], np.ndarray] = {}

    def text(self, value: str) -> np.ndarray:
        """``n`` times ``value`` (a direction or tunnel type), as :func:`constant_text`."""
        arr = self._texts.get(value)
        if arr is None:
            arr = self._texts[value] = constant_text(value, self.n)
        return arr

    def texts(self, names: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """``names[codes]`` for codes that differ between rows (a datagram mixing tunnelled and
        plain packets), shared read-only like :meth:`text` when the same mix came before."""
        key = (id(names), codes.tobytes())
        arr = self._mixed.get(key)
        if arr is None:
            arr = names.take(codes)
            if len(self._mixed) < _MAX_MIXED and self.n <= _MAX_MIXED_ROWS:  # (bounded memory)
                arr.flags.writeable = False
                self._mixed[key] = arr
        return arr


def native_module(force: bool = False) -> ModuleType | None:
    """The C decoder (``collectors._native_sflow``), or None if not built or, unless
    ``force``, if ``NETOBS_NATIVE=0``."""
    if not force and os.environ.get("NETOBS_NATIVE", "") == "0":
        return None
    try:
        _native_sflow = importlib.import_module("collectors._native_sflow")
    except ImportError:
        return None
    if _native_sflow.WIDTHS != tuple(dt.itemsize for dt in _COLUMN_DTYPES):  # a stale build
        log.warning("collectors._native_sflow does not match ROW_FIELDS; using the Python decoder")
        return None
    return _native_sflow


class SflowDecoder:
    """Accumulates samples from many datagrams; :meth:`flush` returns the batches.

    ``native`` chooses the C decoder (True: required, whatever ``NETOBS_NATIVE`` says;
    False: never); by default it is used when built and ``NETOBS_NATIVE`` is not 0.
    """

    def __init__(self, default_sampling_rate: int = 0, native: bool | None = None) -> None:
        self.default_sampling_rate = default_sampling_rate
        self._rows = PackedRows(ROW_FIELDS)
        self._counters: list[tuple] = []
        self._srv6 = False  # the option of the datagram being decoded (Python path)
        #: Rows of the last flush with sampling rate 0 (-1: not counted), for Decoder.flush.
        self.unrated = -1
        self.sequences = SequenceTracker("sflow", "datagrams")
        # Per data source and sample kind: a sample's number counts that source's samples.
        self.sample_sequences = SequenceTracker("sflow", "samples", gaps=False)
        module = native_module(force=bool(native)) if native is not False else None
        if native and module is None:
            raise ImportError("collectors._native_sflow is not built")
        # In native mode the C state holds the pending rows and both sequence trackers.
        self._native = module.State(MAX_STREAMS, LATE_WINDOW) if module is not None else None
        self._fixed_by_rows: dict[tuple[int, int], _Fixed] = {}
        self._take_nonzero = hasattr(self._native, "take_nonzero")

    @property
    def native(self) -> bool:
        """Whether datagrams go through the C decoder."""
        return self._native is not None

    def streams(self) -> tuple[int, int]:
        """How many (datagram, sample) sequence streams are tracked."""
        if self._native is not None:
            return self._native.streams()
        return len(self.sequences), len(self.sample_sequences)

    def feed(
        self, buf: bytes, exporter_addr: bytes, time_ms: int, stats: ExporterStats, srv6: bool = False
    ) -> None:
        """Decode one datagram into the pending rows; problems go to ``stats``. ``srv6``: open
        SRv6 packets in raw headers (collector.srv6_exporters)."""
        if self._native is not None:
            found = self._native.feed(buf, exporter_addr, time_ms, stats, srv6)
            if found is not None:  # counter samples: (records offset, end, count, source) each
                agent, sub_agent, samples = found
                for off, end, nrec, source in samples:
                    self._counter(buf, off, end, nrec, (time_ms, agent, sub_agent, source), stats)
            return
        if len(buf) < 8 or _U32.unpack_from(buf, 0)[0] != 5:
            stats.error("sflow:bad_version")
            return
        atype = _U32.unpack_from(buf, 4)[0]
        head = _HEAD_V4 if atype == 1 else _HEAD_V6 if atype == 2 else None
        if head is None or len(buf) < 8 + head.size:
            stats.error("sflow:bad_header")
            return
        agent, sub_agent, seq, _uptime, nsamples = head.unpack_from(buf, 8)
        agent = packet.V4_PREFIX + agent if atype == 1 else agent
        if agent.count(0) == 16 or agent == packet.V4_PREFIX + bytes(4):
            agent = exporter_addr
        self.sequences.check((exporter_addr, agent, sub_agent), seq, 1, stats)
        before = len(self._rows)
        self._srv6 = srv6
        self._samples(buf, 8 + head.size, nsamples, (time_ms, agent, sub_agent), stats)
        stats.flow_records += len(self._rows) - before

    def pending_rows(self) -> tuple[int, int]:
        """(flow rows, counter rows) fed since the last flush."""
        native = self._native
        return (len(native) if native is not None else len(self._rows)), len(self._counters)

    @property
    def pending(self) -> bool:
        """Whether a flush would return anything."""
        return bool(self._rows.buf or self._counters or (self._native is not None and len(self._native)))

    def flush(self) -> tuple[FlowBatch, CounterBatch]:
        """Everything fed since the last flush, as one flow batch and one counter batch."""
        crows, self._counters = self._counters, []
        counters = (
            CounterBatch(transpose(crows, COUNTER_NAMES, COUNTER_COLUMNS)) if crows else CounterBatch.empty()
        )
        cols = self._take()
        if cols is None:
            return FlowBatch.empty(), counters
        n = len(cols["time_received"])
        if cols["direction"].dtype != _OBJECT:
            cols["direction"] = directions(cols["direction"])
        if cols["tunnel_type"].dtype != _OBJECT:
            cols["tunnel_type"] = text(_TUNNEL_NAMES, cols["tunnel_type"])
        if self.default_sampling_rate:
            rate = cols["sampling_rate"]
            cols["sampling_rate"] = np.where(rate == 0, np.uint32(self.default_sampling_rate), rate)
        cols["flow_start"] = cols["flow_end"] = cols["time_received"]
        return batch(cols, n), counters

    def _fixed(self, n: int, zeros: int = 0) -> _Fixed:
        """The columns alike in every flush of ``n`` rows whose all-zero columns are the bits of
        ``zeros`` (see :class:`_Fixed`), cached: a flush per datagram (``Decoder.decode``) would
        otherwise build ~20 views per call."""
        key = (n, zeros)
        fixed = self._fixed_by_rows.get(key)
        if fixed is None:
            if n > _MAX_FIXED_ROWS:  # (larger flushes are rare: they build theirs)
                return _Fixed(n, zeros)
            if len(self._fixed_by_rows) >= _MAX_FIXED:  # (bounded: datagrams of many shapes)
                self._fixed_by_rows.clear()
            fixed = self._fixed_by_rows[key] = _Fixed(n, zeros)
        return fixed

    def _take(self) -> dict[str, np.ndarray] | None:
        """The pending rows as columns (text columns still as codes unless alike in every row,
        and the columns sFlow never fills), or None."""
        native = self._native
        if native is not None:
            # One buffer per dtype, read as one (columns, rows) array whose rows are the columns
            # (a flush per datagram would otherwise pay an array per column); the columns that
            # are 0 in every row are left out and come from the cached zeros of _Fixed.
            if self._take_nonzero:
                taken = native.take_nonzero(_GROUPS)
                if taken is None:
                    return None
                n, raw, direction, tunnel, self.unrated, zeros = taken
            else:  # (an older build of the extension)
                taken = native.take_groups(_GROUPS)
                if taken is None:
                    return None
                n, raw, direction, tunnel, self.unrated = taken
                zeros = 0
            fixed = self._fixed(n, zeros)
            cols = fixed.columns.copy()
            for i, dtype, names, size in fixed.groups:
                cols.update(zip(names, np.ndarray((size, n), dtype, raw[i])))  # noqa: B905
            # The text of the direction and tunnel codes, as directions() and text() make it:
            # the C side says whether one code is in every row (else -1).
            cols["direction"] = (
                fixed.text(DIRECTION_NAMES[min(direction, 2)])
                if direction >= 0
                else fixed.texts(DIRECTION_NAMES, np.minimum(cols["direction"], 2))
            )
            cols["tunnel_type"] = (
                fixed.text(_TUNNEL_NAMES[tunnel])
                if tunnel >= 0
                else fixed.texts(_TUNNEL_NAMES, cols["tunnel_type"])
            )
            return cols
        rows = self._rows.take()
        if not len(rows):
            return None
        self.unrated = -1  # not counted: Decoder.flush looks
        # Each field of the structured rows is a strided view: copy it into a column of its own,
        # as the native path's columns are (consumers view columns as other dtypes, e.g. the
        # exporter as two words in SamplingDefaults.apply).
        cols = _Fixed(len(rows)).columns
        cols.update((name, np.ascontiguousarray(rows[name])) for name, _ in ROW_FIELDS)
        return cols

    def _samples(self, buf: bytes, off: int, count: int, dgram: tuple, stats: ExporterStats) -> None:
        end = len(buf)
        check = self.sample_sequences.check
        expected = self.sample_sequences.expected
        _time, agent, sub_agent = dgram
        for _ in range(count):
            if off + 8 > end:
                stats.error("sflow:truncated_sample")
                return
            fmt, length = _TLV.unpack_from(buf, off)
            body, off = off + 8, off + 8 + length
            if off > end:
                stats.error("sflow:truncated_sample")
                return
            if fmt == 1 and length >= _FLOW.size:
                seq, src, rate, _pool, _drops, i, o, nrec = _FLOW.unpack_from(buf, body)
                key = (agent, sub_agent, src)
                if expected.get(key) == seq:  # in sequence: skip the call (hot path)
                    expected[key] = (seq + 1) & 0xFFFFFFFF
                else:
                    check(key, seq, 1, stats)
                self._flow(buf, body + _FLOW.size, off, nrec, dgram + (src, rate, i, o), stats)
            elif fmt == 3 and length >= _FLOW_X.size:
                seq, stype, sidx, rate, _pool, _drops, ifm, ifv, ofm, ofv, nrec = _FLOW_X.unpack_from(
                    buf, body
                )
                src = (stype & 0xFF) << 24 | sidx & 0xFFFFFF
                check((agent, sub_agent, src), seq, 1, stats)
                i = (ifm & 3) << IF_FORMAT_SHIFT | ifv & IF_VALUE_MASK
                o = (ofm & 3) << IF_FORMAT_SHIFT | ofv & IF_VALUE_MASK
                self._flow(buf, body + _FLOW_X.size, off, nrec, dgram + (src, rate, i, o), stats)
            elif fmt == 2 and length >= _COUNTERS.size:
                seq, src, nrec = _COUNTERS.unpack_from(buf, body)
                check((agent, sub_agent, src, "counters"), seq, 1, stats)
                self._counter(buf, body + _COUNTERS.size, off, nrec, dgram + (src,), stats)
            elif fmt == 4 and length >= _COUNTERS_X.size:
                seq, stype, sidx, nrec = _COUNTERS_X.unpack_from(buf, body)
                src = (stype & 0xFF) << 24 | sidx & 0xFFFFFF
                check((agent, sub_agent, src, "counters"), seq, 1, stats)
                self._counter(buf, body + _COUNTERS_X.size, off, nrec, dgram + (src,), stats)
            elif fmt in (1, 2, 3, 4):
                stats.error("sflow:short_sample")
            else:
                stats.error("sflow:unknown_sample_format")

    def _flow(self, buf: bytes, off: int, end: int, nrec: int, sample: tuple, stats: ExporterStats) -> None:
        """One flow sample: its records give the packet; pack one row."""
        time_ms, agent, sub_agent, source, rate, in_if, out_if = sample
        info, frame_len, route = _flow_records(buf, off, end, nrec, stats, self._srv6)
        # The data source (an ifIndex, class 0) is the side the packet was sampled on;
        # OVS samples per bridge (class 2, index 1000+), which says nothing.
        direction = 2 if source >> 24 else 0 if source == in_if else 1 if source == out_if else 2
        self._rows.buf += self._rows.pack(
            time_ms,
            agent,
            sub_agent,
            rate,
            in_if,
            out_if,
            direction,
            frame_len,
            *info[:_TUNNEL_AT],
            _TUNNEL_CODES[info[_TUNNEL_AT]],
            *info[_TUNNEL_AT + 1 :],
            *route,
        )

    def _counter(
        self, buf: bytes, off: int, end: int, nrec: int, sample: tuple, stats: ExporterStats
    ) -> None:
        """Counter sample: one row from its generic interface record and its companions."""
        time_ms, agent, sub_agent, source = sample
        stats.counter_samples += 1
        row = counter_row(buf, off, end, nrec, (time_ms, "sflow", agent, sub_agent, source), stats)
        if row is not None:
            self._counters.append(row)
            stats.counter_records += 1


def _flow_records(
    buf: bytes, off: int, end: int, nrec: int, stats: ExporterStats, srv6: bool = False
) -> tuple:
    """(PacketInfo-ordered tuple, frame length, route) from a flow sample's records.

    The raw packet header wins; sampled IPv4/IPv6, Ethernet and extended switch
    records fill in when an agent sends no header (or for the VLAN when untagged).
    ``route`` is (next_hop, src_as, dst_as, src_mask, dst_mask) from the extended
    router and gateway records; a malformed one is counted and left out.
    """
    info = fallback = router = gateway = None
    frame_len = other_len = vlan = 0
    for _ in range(nrec):
        if off + 8 > end:
            stats.error("sflow:truncated_record")
            break
        fmt, length = _TLV.unpack_from(buf, off)
        body, off = off + 8, off + 8 + length
        if off > end:
            stats.error("sflow:truncated_record")
            break
        if fmt == 1 and length >= _RAW.size:
            proto, frame_len, _stripped, hlen = _RAW.unpack_from(buf, body)
            info = _parse_header(proto, buf[body + 16 : min(body + 16 + hlen, off)], srv6)
        elif fmt == 3 and length >= _IPV4_REC.size:
            rec = _IPV4_REC.unpack_from(buf, body)
            fallback = _sampled_ip(rec, packet.V4_PREFIX, packet.ETH_IPV4, fallback)
            other_len = other_len or rec[0]
        elif fmt == 4 and length >= _IPV6_REC.size:
            rec = _IPV6_REC.unpack_from(buf, body)
            fallback = _sampled_ip(rec, b"", packet.ETH_IPV6, fallback)
            other_len = other_len or rec[0]
        elif fmt == 2 and length >= _ETH_REC.size:
            elen, src, dst, _etype = _ETH_REC.unpack_from(buf, body)
            base = fallback or packet.EMPTY
            fallback = base._replace(src_mac=int.from_bytes(src, "big"), dst_mac=int.from_bytes(dst, "big"))
            other_len = elen
        elif fmt == 1001 and length >= _SWITCH_REC.size:
            # src_vlan: 0xFFFFFFFF when unknown (sFlow v5 extended_switch); any value that is
            # not a VLAN id is unknown (0), never its low 12 bits (4095).
            vlan = _SWITCH_REC.unpack_from(buf, body)[0]
            vlan = vlan if vlan <= 0x0FFF else 0
        elif fmt == 1002:
            parsed = _router(buf, body, off)
            if parsed is None:
                stats.error("sflow:bad_router_record")
            else:
                router = parsed
        elif fmt == 1003:
            parsed = _gateway(buf, body, off)
            if parsed is None:
                stats.error("sflow:bad_gateway_record")
            else:
                gateway = parsed
    if info is None:
        info, frame_len = fallback or packet.EMPTY, other_len
    if vlan and not info[_VLAN_AT]:
        info = info[:_VLAN_AT] + (vlan,) + info[_VLAN_AT + 1 :]
    if router is None and gateway is None:
        return info, frame_len, _NO_ROUTE
    hop, src_mask, dst_mask = router or (packet.ZERO_ADDR, 0, 0)
    gw_hop, src_as, dst_as = gateway or (packet.ZERO_ADDR, 0, 0)
    return info, frame_len, (hop if router else gw_hop, src_as, dst_as, src_mask, dst_mask)


def _next_hop(buf: bytes, off: int, end: int) -> tuple[bytes, int] | None:
    """An sFlow ``address`` (type 1 IPv4, 2 IPv6, 0 unknown and empty) as 16 bytes, and
    the offset after it; None when the type is unknown or it overruns ``end``."""
    if off + 4 > end:
        return None
    atype = _U32.unpack_from(buf, off)[0]
    off += 4
    if atype == 0:
        return packet.ZERO_ADDR, off
    if atype == 1 and off + 4 <= end:
        return packet.V4_PREFIX + buf[off : off + 4], off + 4
    if atype == 2 and off + 16 <= end:
        return buf[off : off + 16], off + 16
    return None


def _router(buf: bytes, body: int, end: int) -> tuple | None:
    """Extended router (0:1002): (next hop, src mask, dst mask), None if malformed."""
    hop = _next_hop(buf, body, end)
    if hop is None or hop[1] + 8 > end:
        return None
    src_mask, dst_mask = _ROUTER_MASKS.unpack_from(buf, hop[1])
    if src_mask > 128 or dst_mask > 128:  # a prefix length, of IPv4 or IPv6
        return None
    return hop[0], src_mask, dst_mask


def _gateway(buf: bytes, body: int, end: int) -> tuple | None:
    """Extended gateway (0:1003): (BGP next hop, src AS, dst AS), None if malformed.

    The destination AS path is a list of segments (type: 1 AS_SET, 2 AS_SEQUENCE; a
    counted list of AS numbers); communities and local preference after it are not kept.
    """
    hop = _next_hop(buf, body, end)
    if hop is None or hop[1] + _GATEWAY_AS.size > end:
        return None
    router_as, src_as, _src_peer_as, segments = _GATEWAY_AS.unpack_from(buf, hop[1])
    off, dst_as = hop[1] + _GATEWAY_AS.size, router_as
    for _ in range(segments):  # each segment takes 8 bytes at least: bounded by the record
        if off + 8 > end:
            return None
        count = _U32.unpack_from(buf, off + 4)[0]
        off += 8 + 4 * count
        if off > end:
            return None
        if count:
            dst_as = _U32.unpack_from(buf, off - 4)[0]
    return hop[0], src_as or router_as, dst_as


def _parse_header(proto: int, hdr: bytes, srv6: bool = False) -> tuple:
    """Fields of a raw header record, a plain tuple in PacketInfo order."""
    # header_protocol values from the sFlow v5 spec: 1 ethernet, 11 IPv4, 12 IPv6.
    if proto == 1:
        return packet.ethernet_fields(hdr, 0, srv6)
    if proto in (11, 12):
        return packet.ip_fields(hdr, 0, srv6)
    return packet.EMPTY


def _sampled_ip(rec: tuple, prefix: bytes, etype: int, base: packet.PacketInfo | None) -> packet.PacketInfo:
    """A sampled IPv4 / IPv6 record (used when the sample has no raw header)."""
    _length, proto, src, dst, sport, dport, flags, tos = rec
    base = base or packet.EMPTY
    return base._replace(
        etype=etype,
        src_addr=prefix + src,
        dst_addr=prefix + dst,
        proto=proto & 0xFF,
        src_port=sport & 0xFFFF,
        dst_port=dport & 0xFFFF,
        tcp_flags=flags & 0xFFFF,
        tos=tos & 0xFF,
    )
