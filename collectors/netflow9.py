"""NetFlow version 9 (RFC 3954) decoder: IPFIX's machinery with v9's framing.

The data records and their mapping to flow columns are IPFIX's (the v9 field types
1-127 are the IPFIX Information Elements of the same numbers), so this only parses
what differs: the 20-byte header with ``sysUptime``, template FlowSets (id 0), options
template FlowSets (id 1, scope and option lengths in bytes, scope types that are not
IEs), and a sequence number counting export packets per source id (§5.1). Times in
``FIRST_SWITCHED`` / ``LAST_SWITCHED`` (IE 22 / 21) are milliseconds of sysUptime: the
exporter booted at ``unix_secs * 1000 - sysUptime``, taken per packet.
"""

from __future__ import annotations

import struct

from collectors._ipfix_fields import Field
from collectors._sequence import SequenceTracker
from collectors._templates import Limits, check_template
from collectors.ipfix import IpfixDecoder
from collectors.stats import ExporterStats

_HEADER = struct.Struct(">HHIIII")  # version, count, sysUptime ms, unix secs, sequence, source id
_SET = struct.Struct(">HH")
_OPTIONS = struct.Struct(">HHH")  # template id, scope length, option length (bytes)
#: Scope fields (System, Interface, Line card, Cache, Template) reuse numbers 1-5, which
#: are counters as IEs: they get an enterprise number no IE of ours has.
V9_SCOPE = 0xFFFF_FFFF
V9_VENDOR = 0xFFFF_FFFE  # field types >= 32768: vendor specific, no enterprise number


class Netflow9Decoder(IpfixDecoder):
    """Template and source-id state for every NetFlow v9 exporter."""

    TYPE = "netflow9"
    VERSION = 9

    def __init__(self, default_sampling_rate: int = 0, limits: Limits | None = None):
        super().__init__(default_sampling_rate, limits)
        self.sequences = SequenceTracker(self.TYPE, "datagrams")

    def feed(
        self, buf: bytes, session: str, exporter_addr: bytes, time_ms: int, stats: ExporterStats, srv6=False
    ) -> None:
        """Decode one export packet; data records wait in the queue, problems go to ``stats``."""
        if self.native is not None and self._native_message(buf, session, exporter_addr, time_ms, stats):
            return
        if len(buf) < _HEADER.size:
            stats.error("netflow9:short_header")
            return
        version, _count, uptime, unix_secs, seq, source_id = _HEADER.unpack_from(buf)
        if version != 9:
            stats.error("netflow9:bad_header")
            return
        domain = self._domain(session, source_id)
        domain.system_init = unix_secs * 1000 - uptime
        ctx = (session, source_id, domain, (unix_secs, time_ms, exporter_addr, source_id))
        self._sets(buf, len(buf), ctx, stats)
        self.sequences.check((session, source_id), seq, 1, stats)

    def _sets(self, buf: bytes, end: int, ctx: tuple, stats: ExporterStats) -> int | None:
        off = _HEADER.size
        while end - off >= _SET.size:
            set_id, set_len = _SET.unpack_from(buf, off)
            if set_len < _SET.size or off + set_len > end:
                stats.error("netflow9:bad_set_length")
                return None
            body, off = off + _SET.size, off + set_len
            if set_id == 0:
                self._templates_v9(buf, body, off, ctx, stats)
            elif set_id == 1:
                self._options_v9(buf, body, off, ctx, stats)
            elif set_id >= 256:
                self._data_set(buf, body, off, set_id, ctx, stats)
            else:
                stats.error("netflow9:reserved_set_id")
        return None

    def _templates_v9(self, buf: bytes, off: int, end: int, ctx: tuple, stats: ExporterStats) -> None:
        while end - off >= 4:
            tid, count = _SET.unpack_from(buf, off)
            off += 4
            if tid == 0 and count == 0:
                return  # padding
            if count > self.templates.limits.max_fields:
                stats.error("netflow9:template_too_many_fields")
                return
            if off + 4 * count > end:
                stats.error("netflow9:template_truncated")
                return
            fields = _fields(buf, off, count, 0)
            off += 4 * count
            self._learn(tid, fields, 0, ctx, stats)

    def _options_v9(self, buf: bytes, off: int, end: int, ctx: tuple, stats: ExporterStats) -> None:
        while end - off >= _OPTIONS.size + 4:  # shorter: padding
            tid, scope_len, option_len = _OPTIONS.unpack_from(buf, off)
            off += _OPTIONS.size
            nscope, nopt = scope_len // 4, option_len // 4
            if nscope + nopt > self.templates.limits.max_fields:
                stats.error("netflow9:template_too_many_fields")
                return
            if off + scope_len + option_len > end:
                stats.error("netflow9:template_truncated")
                return
            fields = _fields(buf, off, nscope, V9_SCOPE) + _fields(buf, off + scope_len, nopt, 0)
            off += scope_len + option_len
            self._learn(tid, fields, nscope, ctx, stats)

    def _learn(self, tid: int, fields: tuple, scope: int, ctx: tuple, stats: ExporterStats) -> None:
        reason = check_template(tid, fields, scope, scope > 0)
        if reason:
            stats.error(f"netflow9:{reason}")
            return
        self.templates.add(ctx[0], ctx[1], tid, fields, scope, stats, "netflow9")
        self._learned(ctx[3][2], ctx[1], tid, ctx[0])


def _fields(buf: bytes, off: int, count: int, pen: int) -> tuple[Field, ...]:
    out = []
    for i in range(count):
        kind, length = _SET.unpack_from(buf, off + 4 * i)
        out.append(Field(kind, length, pen or (V9_VENDOR if kind & 0x8000 else 0)))
    return tuple(out)
