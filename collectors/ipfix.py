"""IPFIX (RFC 7011) decoder: template state per (transport session, observation domain).

:meth:`IpfixDecoder.feed` walks a message's sets, learns templates and options
templates, applies options data (sampling, system init time) to the domain's state at
once, and queues each data set's records under their template. :meth:`flush` decodes
every template's queue in one go: ``np.frombuffer`` with the template's compiled dtype
for fixed-length records, one fancy-index gather for records with variable-length
fields (whose fixed runs the feed located), then vectorised mapping to flow columns.
OVS sends one record per data set and message (``MAX_MESSAGE_LEN`` 1024), so feeding
many messages before a flush is what keeps numpy's per-call cost off each record.

With the native extension (``collectors._native_ipfix``, built from
``collectors/_native/ipfix.c``) flow data sets are decoded at feed time straight into
column buffers instead; options data and PSAMP packet reports keep the Python path,
which stays the reference (``NETOBS_NATIVE=0`` forces it for everything).
"""

from __future__ import annotations

import importlib
import logging
import os
import struct
from typing import Any

import numpy as np

from collectors import _ipfix_fields as F
from collectors._columns import batch, complete, repeat
from collectors._ipfix_columns import (
    biflow_rows,
    flow_columns,
    native_columns,
    native_groups,
    native_layout,
    sampler_rates,
    sampling_from,
)
from collectors._ipfix_fields import Field, Records, Template
from collectors._sequence import SequenceTracker
from collectors._templates import MAX_DOMAINS, MAX_SAMPLERS, Limits, TemplateStore, check_template
from collectors._times import guard_times
from collectors.stats import ExporterStats
from netobs import schema
from netobs.batch import FlowBatch

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">HHIII")  # version, length, export time, sequence, domain
_SET = struct.Struct(">HH")  # set id, length
_FIELD = struct.Struct(">HH")  # element id (| enterprise bit), length
_PEN = struct.Struct(">I")
_U16 = struct.Struct(">H")
_DTYPES = schema.numpy_dtypes()
_META = (
    ("export_s", "int64"),
    ("time_received", "int64"),
    ("exporter", "V16"),
    ("observation_domain", "uint32"),
    ("sampling_rate", "uint32"),
    ("system_init", "int64"),
)


_UNCOMPILED = object()
_TEMPLATE_SET_BYTES = 16 << 20  # template set bytes remembered as unchanged (see _template_set)


def load_native():
    """The native data-set decoder, or None (not built, or ``NETOBS_NATIVE=0``)."""
    if os.environ.get("NETOBS_NATIVE", "1").strip() in ("0", "false", "no", "off"):
        return None
    try:
        return importlib.import_module("collectors._native_ipfix")
    except ImportError:
        return None


class _Domain:
    """Per (session, observation domain) state learned from options data and headers."""

    __slots__ = ("sampling_rate", "system_init", "samplers", "sampler_table")

    def __init__(self, sampling_rate: int, system_init: int = -1, samplers=()):
        self.sampling_rate = sampling_rate  # the last rate options data gave: flows with no sampler id
        self.system_init = system_init  # systemInitTimeMilliseconds, -1 unknown
        #: sampler / selector id → its rate (RFC 3954 FLOW_SAMPLER_ID, RFC 5477 selectorId), and
        #: the same as native (id, rate) uint64 pairs sorted by id, read by both decoding paths.
        self.samplers: dict[int, int] = {}
        self.sampler_table = b""
        for sampler, rate in samplers:
            self.set_sampler(int(sampler), int(rate))

    def set_sampler(self, sampler: int, rate: int) -> None:
        """Remember one sampler's rate (at most MAX_SAMPLERS per domain; more are not kept)."""
        if self.samplers.get(sampler) == rate or (
            sampler not in self.samplers and len(self.samplers) >= MAX_SAMPLERS
        ):
            return
        self.samplers[sampler] = rate
        pairs = sorted(self.samplers.items())
        self.sampler_table = np.array(pairs, dtype=np.uint64).tobytes()


class _Pending:
    """Queued data records of one template, with per-set metadata.

    Fixed-length records are kept as byte runs; records with variable-length fields as
    the set bodies plus where each record's fixed runs start (see Records.gathered).
    """

    __slots__ = ("chunks", "data", "starts", "counts", "meta", "var", "stats", "srv6")

    def __init__(self, template: Template, stats: ExporterStats, srv6: bool = False):
        self.stats = stats  # the exporter's (a template belongs to one session): bad times go there
        self.srv6 = srv6  # its packet sections are SRv6 decapsulated (an exporter option)
        self.chunks: list[bytes] = []
        self.data = bytearray()
        self.starts: list[int] = []
        self.counts: list[int] = []
        self.meta: list[tuple] = []
        self.var: dict = {k: [] for k in template.var_keys if k is not None}

    def records(self, template: Template) -> Records:
        n = sum(self.counts)
        if template.variable:
            return Records.gathered(template, self.data, self.starts, n, self.var)
        return Records.fixed(template, b"".join(self.chunks), n, self.var)


class IpfixDecoder:
    """Template and domain state for every exporter; queues records until :meth:`flush`."""

    TYPE = "ipfix"
    VERSION = 10

    def __init__(self, default_sampling_rate: int = 0, limits: Limits | None = None):
        self.default_sampling_rate = default_sampling_rate
        self.templates = TemplateStore(limits)
        #: (session, domain, options, set bytes) → (templates in it, store generation); see _template_set.
        self._template_sets: dict[tuple[str, int, bool, bytes], tuple[int, int]] = {}
        self._template_bytes = 0  # the set bytes kept as keys (bounded, see _template_set)
        self.sequences = SequenceTracker(self.TYPE, "records")
        self._domains: dict[tuple[str, int], _Domain] = {}
        #: Template → queued records: a _Pending, or a native Batch of decoded columns.
        self._pending: dict[Template, Any] = {}
        self.native = load_native()
        #: The native columns every template's Batch writes (see _native_set), made with the first.
        self._sink: Any = None
        #: (fields, scope count) → its compiled native layout: hundreds of exporters send the same
        #: templates, compiled once (a Layout holds no state between decode calls).
        self._layouts: dict[tuple, Any] = {}
        self._table = self.templates.table  # (the same dict for the decoder's life)
        #: (exporter address, domain, template id) → the session that defined it last.
        self._origins: dict[tuple[bytes, int, int], str] = {}
        self._warned: set[bytes] = set()  # exporters told about templates from another port
        self._srv6 = False  # the option of the message being decoded
        #: Exporters' stats that got errors while queues were decoded at flush (for Decoder.flush).
        self.late_errors: list[ExporterStats] = []

    def feed(
        self, buf: bytes, session: str, exporter_addr: bytes, time_ms: int, stats: ExporterStats, srv6=False
    ) -> None:
        """Decode one message; data records wait in the queue, problems go to ``stats``. ``srv6``:
        open SRv6 packets in PSAMP packet sections (collector.srv6_exporters)."""
        self._srv6 = srv6
        if self.native is not None and self._native_message(buf, session, exporter_addr, time_ms, stats):
            return
        if len(buf) < _HEADER.size:
            stats.error("ipfix:short_header")
            return
        version, length, export_s, seq, domain_id = _HEADER.unpack_from(buf)
        if version != 10 or length < _HEADER.size:
            stats.error("ipfix:bad_header")
            return
        if length != len(buf):
            stats.error("ipfix:length_mismatch")
            if length > len(buf):
                return
        domain = self._domain(session, domain_id)
        ctx = (session, domain_id, domain, (export_s, time_ms, exporter_addr, domain_id))
        records = self._sets(buf, length, ctx, stats)
        # RFC 7011 §3.1: the sequence number counts data records sent before this message,
        # per domain. (OVS 3.1 shares one counter between its domain-0 exporter statistics
        # and the flow domain, so its first data message after those shows one gap.)
        self.sequences.check((session, domain_id), seq, records, stats)

    def _domain(self, session: str, domain_id: int) -> _Domain:
        domain = self._domains.get((session, domain_id))
        if domain is None:
            domain = _Domain(self.default_sampling_rate)
            if len(self._domains) < MAX_DOMAINS:  # beyond: state is not kept (a bomb of ids)
                self._domains[(session, domain_id)] = domain
        return domain

    def state(self) -> dict:
        """Templates and domain state, JSON-ready (see :meth:`load_state`)."""
        domains = [
            [s, d, v.sampling_rate, v.system_init, sorted(v.samplers.items())]
            for (s, d), v in self._domains.items()
        ]
        return {"templates": self.templates.dump(), "domains": domains}

    def load_state(self, state: dict, stats: ExporterStats) -> int:
        """Learn a saved :meth:`state` again; the number of templates taken."""
        for session, domain_id, rate, init, *samplers in state.get("domains", ()):
            if len(self._domains) < MAX_DOMAINS:
                kept = samplers[0] if samplers else ()
                self._domains[(str(session), int(domain_id))] = _Domain(int(rate), int(init), kept)
        return self.templates.load(state.get("templates", ()), stats)

    @property
    def pending(self) -> bool:
        """Whether a flush would return anything."""
        return bool(self._pending)

    def flush(self) -> FlowBatch:
        """Decode every queued record into one flow batch."""
        pending, self._pending = self._pending, {}
        batches = []
        native: dict[int, Any] = {}  # the columns the native templates wrote: usually the one sink
        for template, queue in pending.items():
            if not isinstance(queue, _Pending):  # a native Batch: its records are in its sink
                target = queue.sink if queue.sink is not None else queue
                native.setdefault(id(target), target)
                continue
            records = queue.records(template)
            *columns, tables = zip(*queue.meta, strict=True)
            meta = {
                name: repeat(values, queue.counts, np.dtype(dt))
                for (name, dt), values in zip(_META, columns, strict=True)
            }
            meta["sampling_rate"] = sampler_rates(records, meta["sampling_rate"], tables, queue.counts)
            cols = flow_columns(records, meta, queue.srv6)
            bad = guard_times(cols)
            if bad is not None:
                queue.stats.error(f"{self.TYPE}:time_out_of_range", int(bad.sum()))
                self.late_errors.append(queue.stats)
            kind = "psamp" if template.section is not None and self.TYPE == "ipfix" else self.TYPE
            cols["type"] = repeat((kind,), (records.n,), _DTYPES["type"])
            cols, n = complete(cols, records.n), records.n
            if template.biflow:
                cols, n = biflow_rows(records, cols)
            batches.append(batch(cols, n))
        for target in native.values():  # every native template's records, in arrival order
            if len(target):
                groups, names = native_groups(self.native.COLUMNS)
                n, buffers = target.take_groups(groups)
                batches.insert(0, batch(native_columns(names, n, buffers, self.TYPE), n))
        return FlowBatch.concat(batches)

    def _sets(self, buf: bytes, end: int, ctx: tuple, stats: ExporterStats) -> int | None:
        """Walk the sets (RFC 7011 §3.3); the data record count, None if not knowable."""
        off = _HEADER.size
        count: int | None = 0
        while off < end:
            if end - off < _SET.size:
                stats.error("ipfix:trailing_bytes")
                break
            set_id, set_len = _SET.unpack_from(buf, off)
            if set_len < _SET.size or off + set_len > end:
                stats.error("ipfix:bad_set_length")
                break
            body, off = off + _SET.size, off + set_len
            if set_id in (2, 3):
                self._template_set(buf, body, off, set_id == 3, ctx, stats)
            elif set_id >= 256:
                n = self._data_set(buf, body, off, set_id, ctx, stats)
                count = None if n is None or count is None else count + n
            else:  # 0, 1: NetFlow v9 ids; 4-255 reserved (RFC 7011 §3.3.2)
                stats.error("ipfix:reserved_set_id")
        return count

    def _template_set(self, buf: bytes, off: int, end: int, options: bool, ctx: tuple, stats) -> None:
        session, domain_id = ctx[0], ctx[1]
        # Exporters refresh their templates often (OVS with almost every message when traffic is
        # light, rotating through its templates one set at a time). A set with the same bytes as
        # one this (session, domain, kind) sent before, learned cleanly with no template change
        # since, would change nothing: count it, skip it.
        key = (session, domain_id, options, buf[off:end])
        seen = self._template_sets.get(key)
        if seen is not None and seen[1] == self.templates.generation:
            stats.templates += seen[0]
            return
        learned = stats.templates
        clean = self._template_walk(buf, off, end, options, session, domain_id, stats, ctx[3][2])
        if clean:
            # bounded like the template store itself, and in bytes
            if len(self._template_sets) >= 65536 or self._template_bytes >= _TEMPLATE_SET_BYTES:
                self._template_sets.clear()
                self._template_bytes = 0
            self._template_sets[key] = (stats.templates - learned, self.templates.generation)
            self._template_bytes += end - off
        else:
            self._template_sets.pop(key, None)

    def _template_walk(
        self,
        buf: bytes,
        off: int,
        end: int,
        options: bool,
        session: str,
        domain_id: int,
        stats,
        origin: bytes,
    ) -> bool:
        """Learn or withdraw the templates of one set; whether all of it was taken without error."""
        head = 6 if options else 4
        clean = True
        while end - off >= 4:  # anything shorter is padding (RFC 7011 §3.3.1)
            tid, count = _SET.unpack_from(buf, off)
            if tid == 0 and count == 0:
                break  # zero padding
            if count == 0:
                # Withdrawal (RFC 7011 §8.1; 4 bytes, options ones too): of one template, or
                # of all (options) templates of the domain with the set id as template id.
                # §8.4 says not over UDP, but exporters do, and stale templates misdecode.
                if tid == (3 if options else 2):
                    self.templates.withdraw_all(session, domain_id, options)
                else:
                    self.templates.withdraw(session, domain_id, tid)
                stats.template_withdrawals += 1
                clean = False  # a withdrawal is counted each time it comes: never skipped
                off += 4
                continue
            if end - off < head:
                break  # padding
            scope = _U16.unpack_from(buf, off + 4)[0] if options else 0
            off += head
            if count > self.templates.limits.max_fields:
                stats.error("ipfix:template_too_many_fields")
                return False
            fields, off = _read_fields(buf, off, end, count)
            if fields is None:
                stats.error("ipfix:template_truncated")
                return False
            reason = check_template(tid, fields, scope, options)
            if reason:
                stats.error(f"ipfix:{reason}")
                clean = False
                continue
            clean &= self.templates.add(session, domain_id, tid, fields, scope, stats, "ipfix")
            self._learned(origin, domain_id, tid, session)
        return clean

    def _learned(self, origin: bytes, domain_id: int, tid: int, session: str) -> None:
        """Remember which session of an exporter address defined a template (see _unknown)."""
        if len(self._origins) >= 65536:  # bounded like the template store
            self._origins.clear()
        self._origins[(origin, domain_id, tid)] = session

    def _unknown(self, session: str, domain_id: int, tid: int, origin: bytes, stats: ExporterStats) -> None:
        """A data set of a template this session never defined. When another session of the
        same exporter address (another source port) did, RFC 7011 §8 still scopes templates
        to their transport session, so the data stay undecoded; but this is counted on its
        own and logged once per exporter, not lost among the templates not yet received."""
        stats.unknown_templates += 1
        other = self._origins.get((origin, domain_id, tid))
        if other is None or other == session:
            return
        stats.error(f"{self.TYPE}:template_from_other_port")
        if origin not in self._warned and len(self._warned) < 4096:
            self._warned.add(origin)
            log.warning(
                "%s: data of template %d (domain %d) from %s, whose template came from %s: not "
                "decoded (templates are per transport session); is the exporter changing source ports?",
                self.TYPE,
                tid,
                domain_id,
                session,
                other,
            )

    def _data_set(self, buf: bytes, off: int, end: int, tid: int, ctx: tuple, stats) -> int | None:
        session, domain_id, domain, head = ctx
        template = self.templates.get(session, domain_id, tid)
        if template is None:
            self._unknown(session, domain_id, tid, head[2], stats)
            return None
        if self.native is not None:
            n = self._native_set(template, buf, off, end, ctx, stats)
            if n is not None:
                return n
        queue = _Pending(template, stats) if template.is_options else self._pending.get(template)
        if queue is None:
            queue = _Pending(template, stats, self._srv6)
        if template.variable:
            n = _walk_variable(template, buf, off, end, queue, stats)
        else:
            n = (end - off) // template.fixed_len
            if n:
                queue.chunks.append(buf[off : off + n * template.fixed_len])
        if not n:
            return 0
        if not template.is_options:
            self._pending[template] = queue
        queue.counts.append(n)
        queue.meta.append(head + (domain.sampling_rate, domain.system_init, domain.sampler_table))
        if template.is_options:
            _apply_options(queue.records(template), domain)
            stats.options_records += n
        else:
            stats.flow_records += n
        return n

    def _native_message(self, buf: bytes, session: str, exporter_addr: bytes, time_ms: int, stats) -> bool:
        """A message made only of data sets of templates with a native Batch, decoded in C
        (header, set walk, records); False, nothing done, when the Python walk must take it."""
        done = self.native.feed(
            buf,
            self.VERSION,
            session,
            exporter_addr,
            time_ms,
            self._table,
            self._domains,
            self._pending,
            self.sequences.expected,
            stats,
        )
        if done is None:
            return False
        if done is not True:  # (True: the sequence number was the expected one, advanced in C)
            self.sequences.check((session, done[0]), done[1], done[2], stats)
        return True

    def _native_set(
        self, template: Template, buf: bytes, off: int, end: int, ctx: tuple, stats
    ) -> int | None:
        """Decode a flow data set natively; None when the template needs the Python path.

        ``template.native`` is the template's Batch (its compiled layout and the columns
        decoded since the last flush), False for options and PSAMP templates.
        """
        batch = template.native
        if batch is None:
            shape = (template.fields, template.scope_count)
            layout = self._layouts.get(shape, _UNCOMPILED)
            if layout is _UNCOMPILED:
                layout = native_layout(template, self.native)
                if len(self._layouts) >= 4096:  # bounded like the templates of one exporter
                    self._layouts.clear()
                self._layouts[shape] = layout
            if layout and (self._sink is None or type(self._sink) is not self.native.Batch):
                self._sink = self.native.Batch(None)
            batch = template.native = layout and self.native.Batch(layout, self._sink)
        queued = self._pending.get(template, batch)
        if batch is False or queued is not batch:  # (a Python queue if the switch was flipped)
            return None
        domain, head = ctx[2], ctx[3]
        n = batch.decode(
            buf,
            off,
            end,
            *head,
            domain.sampling_rate,
            domain.system_init,
            stats,
            self.VERSION,
            domain.sampler_table,
        )
        if n:
            self._pending[template] = batch  # (first records decide the batch order, as queues do)
            stats.flow_records += n
        return n


def _read_fields(buf: bytes, off: int, end: int, count: int) -> tuple[tuple | None, int]:
    """Field specifiers (RFC 7011 §3.2), enterprise numbers included."""
    fields = []
    for _ in range(count):
        if off + 4 > end:
            return None, off
        ie, length = _FIELD.unpack_from(buf, off)
        off += 4
        pen = 0
        if ie & 0x8000:  # enterprise bit: a 4-byte enterprise number follows
            if off + 4 > end:
                return None, off
            pen = _PEN.unpack_from(buf, off)[0]
            ie &= 0x7FFF
            off += 4
        fields.append(Field(ie, length, pen))
    return tuple(fields), off


def _walk_variable(template: Template, buf: bytes, off: int, end: int, queue: _Pending, stats) -> int:
    """Find the fixed runs of records with variable-length fields (RFC 7011 §7).

    Appends the set body to ``queue.data``, each complete record's run starts to
    ``queue.starts`` and the wanted variable values to ``queue.var``; returns the count.
    Each record consumes at least ``min_len >= 1`` bytes, so the loop always ends.
    """
    first, shift = off, len(queue.data) - off  # buf offset -> queue.data offset
    starts, var, n = queue.starts, queue.var, 0
    steps, tail, min_len = template.steps, template.segments[-1], template.min_len
    while end - off >= min_len:
        p, runs, values = off, [], None
        for run, key in steps:
            runs.append(p + shift)
            p += run
            if p >= end:
                break
            length = buf[p]
            p += 1
            if length == 255:  # 3-byte form: 255, then a 16-bit length
                length = _U16.unpack_from(buf, p)[0] if p + 2 <= end else end
                p += 2
            if key is not None:  # integers (OVS tunnelKey: its low 8 bytes), or a PSAMP section
                value: int | bytes
                if key in F.SECTION_KEYS:
                    value = bytes(buf[p : p + min(length, F.SECTION_CAP)])
                else:
                    value = int.from_bytes(buf[max(p, p + length - 8) : p + length])
                values = (values or []) + [(key, value)]
            p += length
        else:
            runs.append(p + shift)
            p += tail
            if p <= end:
                starts += runs
                if values:
                    for key, value in values:
                        var[key].append(value)
                n, off = n + 1, p
                continue
        stats.error("ipfix:record_truncated")
        break
    queue.data += buf[first:off]
    return n


def _apply_options(records: Records, domain: _Domain) -> None:
    """Options data: remember the exporter's sampling rates and system init time.

    A record naming a sampler (FLOW_SAMPLER_ID / samplerId 48, selectorId 302, in its scope
    or not) sets that sampler's rate, for the flows that carry its id; every rate is also
    the domain's, for the flows that carry none (the last one wins, as before).
    """
    rate = sampling_from(records)
    if rate is None:
        rate = _probability_rate(records)
    if rate is not None and rate.size:
        ids = records.first(F.SAMPLER_ID, F.SELECTOR_ID)
        if ids is not None:
            for sampler, r in zip(ids.tolist(), rate.tolist(), strict=True):
                if 0 < r <= 0xFFFFFFFF:
                    domain.set_sampler(sampler, r)
    if rate is not None and rate.size and 0 < rate[-1] <= 0xFFFFFFFF:
        domain.sampling_rate = int(rate[-1])
    if records.has(F.SYSTEM_INIT_MS) and records.n:
        init = int(records.uint(F.SYSTEM_INIT_MS)[-1])
        domain.system_init = init if init < 1 << 62 else -1  # absurd: keep "unknown"


def _probability_rate(records: Records) -> np.ndarray | None:
    """1-in-N from samplingProbability (IE 311, RFC 5477 §8.2.5: a float64, or float32 in
    reduced size): N = 1 / p rounded; 0 where p is not in (0, 1]."""
    place = records.template.places.get(F.SAMPLING_PROBABILITY)
    if place is None or place[2] not in (4, 8):
        return None
    raw = records.uint(F.SAMPLING_PROBABILITY)
    p = raw.view(np.float64) if place[2] == 8 else raw.astype(np.uint32).view(np.float32).astype(np.float64)
    ok = (p > 0) & (p <= 1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n = np.where(ok, np.rint(1 / np.where(ok, p, 1)), 0)
    return np.where(n <= 0xFFFFFFFF, n, 0).astype(np.uint64)
