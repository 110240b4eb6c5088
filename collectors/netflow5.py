"""NetFlow version 5 decoder: a fixed 24-byte header and 48-byte records.

Records of many datagrams are queued as raw bytes and decoded at :meth:`flush` with one
``np.frombuffer`` over a big-endian structured dtype: no per-record Python. Times are
sysUptime milliseconds, made absolute with the header's clock; the sampling interval
is the low 14 bits of the header's last field (the top 2 are the mode; 0 = unknown,
then the configured default applies). ``observation_domain`` is engine type << 8 |
engine id, and ``flow_sequence`` counts flows, so a gap is a count of lost records. The
record's next hop, source/destination AS (16-bit in v5) and prefix masks fill ``next_hop``,
``src_as``, ``dst_as``, ``src_mask`` and ``dst_mask``.
"""

from __future__ import annotations

import struct

import numpy as np

from collectors._columns import batch, complete, repeat
from collectors._sequence import SequenceTracker
from collectors._times import guard_times
from collectors.stats import ExporterStats
from netobs import schema
from netobs.batch import FlowBatch

_HEADER = struct.Struct(">HHIIIIBBH")
RECORD = np.dtype(
    [
        ("src", "u1", (4,)),
        ("dst", "u1", (4,)),
        ("nexthop", ">u4"),
        ("in_if", ">u2"),
        ("out_if", ">u2"),
        ("packets", ">u4"),
        ("bytes", ">u4"),
        ("first", ">u4"),
        ("last", ">u4"),
        ("src_port", ">u2"),
        ("dst_port", ">u2"),
        ("pad1", "u1"),
        ("tcp_flags", "u1"),
        ("proto", "u1"),
        ("tos", "u1"),
        ("src_as", ">u2"),
        ("dst_as", ">u2"),
        ("src_mask", "u1"),
        ("dst_mask", "u1"),
        ("pad2", ">u2"),
    ]
)
assert RECORD.itemsize == 48
_DTYPES = schema.numpy_dtypes()
#: Per-datagram values repeated over its records, in this order.
_META: tuple[tuple[str, np.dtype], ...] = (
    ("time_received", np.dtype("int64")),
    ("exporter", np.dtype("V16")),
    ("observation_domain", np.dtype("uint32")),
    ("sampling_rate", np.dtype("uint32")),
    ("boot_ms", np.dtype("int64")),
    ("uptime", np.dtype("int64")),
)


class Netflow5Decoder:
    """Queues the records of NetFlow v5 datagrams until :meth:`flush`."""

    TYPE = "netflow5"

    def __init__(self, default_sampling_rate: int = 0):
        self.default_sampling_rate = default_sampling_rate
        self.sequences = SequenceTracker(self.TYPE, "records")
        self._data = bytearray()
        self._counts: list[int] = []
        self._meta: list[tuple] = []
        self._stats: list[ExporterStats] = []  # per queued datagram: who to count bad times to
        #: Exporters' stats that got errors at flush (for Decoder.flush).
        self.late_errors: list[ExporterStats] = []

    @property
    def pending(self) -> bool:
        return bool(self._counts)

    def feed(self, buf: bytes, exporter_addr: bytes, time_ms: int, stats: ExporterStats) -> None:
        if len(buf) < _HEADER.size:
            stats.error("netflow5:short_header")
            return
        version, count, uptime, secs, nsecs, seq, etype, eid, sampling = _HEADER.unpack_from(buf)
        if version != 5:
            stats.error("netflow5:bad_header")
            return
        fits = (len(buf) - _HEADER.size) // RECORD.itemsize
        if count > fits:
            stats.error("netflow5:truncated")
            count = fits
        domain = etype << 8 | eid
        self.sequences.check((exporter_addr, domain), seq, count, stats)
        if not count:
            return
        rate = sampling & 0x3FFF or self.default_sampling_rate
        boot_ms = secs * 1000 + nsecs // 1_000_000 - uptime
        self._data += buf[_HEADER.size : _HEADER.size + count * RECORD.itemsize]
        self._counts.append(count)
        self._meta.append((time_ms, exporter_addr, domain, rate, boot_ms, uptime))
        self._stats.append(stats)
        stats.flow_records += count

    def flush(self) -> FlowBatch:
        data, counts, meta, stats = self._data, self._counts, self._meta, self._stats
        self._data, self._counts, self._meta, self._stats = bytearray(), [], [], []
        n = sum(counts)
        if not n:
            return FlowBatch.empty()
        recs = np.frombuffer(bytes(data), dtype=RECORD, count=n)
        m = {
            name: repeat(values, counts, dtype)
            for (name, dtype), values in zip(_META, zip(*meta, strict=True), strict=True)
        }
        cols = {
            name: m[name] for name in ("time_received", "exporter", "observation_domain", "sampling_rate")
        }
        boot, uptime = m["boot_ms"], m["uptime"]
        for name, field in (("flow_start", "first"), ("flow_end", "last")):
            t = recs[field].astype(np.int64)
            # sysUptime wraps after 49.7 days: a time "after" the header's uptime is from before the wrap.
            cols[name] = boot + np.where(t > uptime, t - (1 << 32), t)
        bad = guard_times(cols)
        if bad is not None:  # rare: count them on their datagrams' exporters
            per_datagram = np.add.reduceat(bad.astype(np.int64), np.cumsum([0, *counts[:-1]]))
            for s, k in zip(stats, per_datagram.tolist(), strict=True):
                if k:
                    s.error(f"{self.TYPE}:time_out_of_range", k)
                    self.late_errors.append(s)
        for name in (
            "in_if",
            "out_if",
            "packets",
            "bytes",
            "src_port",
            "dst_port",
            "tcp_flags",
            "proto",
            "tos",
            "src_as",
            "dst_as",
            "src_mask",
            "dst_mask",
        ):
            cols[name] = recs[name].astype(_DTYPES[name])
        for name, field in (("src_addr", "src"), ("dst_addr", "dst")):
            addr = np.zeros((n, 16), dtype=np.uint8)
            addr[:, 10:12] = 0xFF
            addr[:, 12:] = recs[field]
            cols[name] = addr.view("V16").reshape(n)
        # The next hop is IPv4 mapped like the other addresses; 0.0.0.0 (none) stays all zeros,
        # as the other decoders leave an absent next hop.
        hop = np.zeros((n, 16), dtype=np.uint8)
        nexthop = recs["nexthop"]
        some = nexthop != 0
        hop[some, 10:12] = 0xFF
        hop[:, 12:] = nexthop.astype(">u4").view(np.uint8).reshape(n, 4) * some[:, None]
        cols["next_hop"] = hop.view("V16").reshape(n)
        cols["etype"] = np.full(n, 0x0800, dtype=np.uint16)
        cols["direction"] = np.full(n, "unknown", dtype=object)
        cols["type"] = np.full(n, self.TYPE, dtype=object)
        return batch(complete(cols, n), n)
