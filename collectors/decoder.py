"""The decoding facade: detect the export protocol of a datagram and decode it.

One :class:`Decoder` owns the template / sequence state of every exporter it sees, so a
collector keeps one per listener thread. Nothing raised by malformed input escapes:
each problem is counted under a reason in the exporter's :class:`ExporterStats`, and
an unexpected exception (a decoder bug) is counted as ``internal:<Type>`` and logged.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from collectors._templates import Limits
from collectors.config import CollectorConfig
from collectors.counters import CounterBatch
from collectors.ipfix import IpfixDecoder
from collectors.netflow5 import Netflow5Decoder
from collectors.netflow9 import Netflow9Decoder
from collectors.sampling import SamplingDefaults, parse_rules
from collectors.sflow import SflowDecoder
from collectors.stats import ExporterStats
from netobs.batch import FlowBatch, ip_bytes

log = logging.getLogger(__name__)

SUPPORTED = ("sflow", "ipfix", "netflow9", "netflow5")  # PSAMP arrives as IPFIX
STATE_VERSION = 1
_U16 = struct.Struct(">H")
_U32X2 = struct.Struct(">II")


def _counter() -> Counter:
    """An empty Counter without ``Counter()``'s call of ``update``: a flush per datagram makes
    three of them, and that call was a measurable share of it."""
    return Counter.__new__(Counter)


def detect(payload: bytes) -> str | None:
    """Export protocol of a datagram from its first bytes, or None if unrecognised.

    sFlow starts with a 32-bit version 5 and an agent address type of 1 or 2; the
    others start with a 16-bit version (so sFlow's first 16 bits are 0), and IPFIX also
    carries its own length (RFC 7011 §3.1).
    """
    if len(payload) < 16:
        return None
    version, second = _U32X2.unpack_from(payload)
    if version == 5:
        return "sflow" if second in (1, 2) and len(payload) >= 28 else None
    v16 = version >> 16
    if v16 == 10:
        return "ipfix" if _U16.unpack_from(payload, 2)[0] == len(payload) else None
    if v16 == 9 and len(payload) >= 20:
        return "netflow9"
    if v16 == 5 and len(payload) >= 24:
        return "netflow5"
    return None


@dataclass
class Decoded:
    """What one :meth:`Decoder.decode` (or flush) produced."""

    flows: FlowBatch
    counters: CounterBatch
    #: (exporter, reason) → count, for the datagrams of this call only.
    errors: Counter = field(default_factory=Counter)
    #: (exporter, protocol, unit, kind) → count: sequence findings of this call only
    #: (kind: missing, late, reset; see collectors._sequence).
    sequences: Counter = field(default_factory=Counter)
    #: exporter → flows of this call with no sampling rate from the export or the
    #: configuration (kept at 0, counted once; see collectors.sampling).
    unsampled: Counter = field(default_factory=Counter)
    #: Whose the sFlow rows are: [exporter fed, flow rows, counter rows] per run of datagrams of
    #: one exporter, in feed order. The sFlow rows come first in ``flows`` (and are all of
    #: ``counters``) in that order: an sFlow row names its agent, which two sources may share.
    sflow_sources: list = field(default_factory=list)


class Decoder:
    """sFlow v5, IPFIX (and PSAMP), NetFlow v9 and v5 decoding with per-exporter state."""

    def __init__(
        self,
        default_sampling_rate: int = 0,
        limits: Limits | None = None,
        exporter_sampling: Sequence[tuple[Sequence[str], int]] = (),
        srv6_exporters: Sequence[str] = (),
    ):
        """``exporter_sampling``: (CIDRs, rate) rules for exporters whose exports carry no rate,
        tried in order before ``default_sampling_rate``; ``srv6_exporters``: CIDRs of exporters
        whose sampled headers are SRv6 decapsulated (a bad CIDR raises ValueError)."""
        self.sampling = SamplingDefaults(exporter_sampling, default_sampling_rate)
        self._srv6 = parse_rules([(srv6_exporters, 1)])[0][0] if srv6_exporters else []
        # The per-protocol decoders keep 0 where the export gives no rate; flush() fills it.
        self.sflow = SflowDecoder(0)
        self.ipfix = IpfixDecoder(0, limits)
        self.netflow9 = Netflow9Decoder(0, limits)
        self.netflow5 = Netflow5Decoder(0)
        self.stats: dict[str, ExporterStats] = {}
        self._addresses: dict[str, bytes] = {}
        # exporter → (its stats, its 16-byte address, SRv6 decapsulation): one lookup per datagram
        self._exporters: dict[str, tuple[ExporterStats, bytes, bool]] = {}
        self._touched: set[str] = set()
        self._names: dict[int, str] = {}  # id of an exporter's stats → the exporter (see flush)
        self._sflow_sources: list[list] = []  # see Decoded.sflow_sources

    detect = staticmethod(detect)

    @classmethod
    def from_config(cls, cfg: CollectorConfig) -> Decoder:
        """A decoder with the collector section's sampling rules and template limits."""
        return cls(
            default_sampling_rate=cfg.default_sampling_rate,
            limits=Limits(cfg.max_templates_per_exporter, cfg.max_fields_per_template),
            exporter_sampling=[(r.exporters, r.sampling_rate) for r in cfg.exporter_sampling],
            srv6_exporters=cfg.srv6_exporters,
        )

    def decode(
        self,
        payload: bytes,
        exporter: str,
        time_received_ms: int,
        session: str | None = None,
        protocol: str | None = None,
    ) -> Decoded:
        """Decode one datagram received from ``exporter`` (its source address, as text).

        ``session`` scopes template state when one address hosts several exporting
        processes (pass "addr:port"); ``protocol`` skips detection ("auto"/None detect).
        """
        self.feed(payload, exporter, time_received_ms, session, protocol)
        return self.flush()

    def decode_many(self, datagrams: Iterable[tuple[bytes, str, int]]) -> Decoded:
        """Decode (payload, exporter, time_received_ms) datagrams into one result."""
        for payload, exporter, time_ms in datagrams:
            self.feed(payload, exporter, time_ms)
        return self.flush()

    def feed(
        self,
        payload: bytes,
        exporter: str,
        time_received_ms: int,
        session: str | None = None,
        protocol: str | None = None,
    ) -> str | None:
        """Decode into the pending batch; returns the detected protocol. ``payload`` may be any
        bytes-like object: a bytearray or memoryview is taken as its bytes (the decoders keep
        slices of it as dict keys: template sets, sFlow agents)."""
        if type(payload) is not bytes:
            payload = bytes(payload)
        known = self._exporters.get(exporter)
        if known is None:
            stats = self.stats.get(exporter)
            if stats is None:
                stats = self.stats[exporter] = ExporterStats()
            self._names[id(stats)] = exporter
            address = self._address(exporter)
            known = self._exporters[exporter] = (stats, address, self._srv6_for(address))
        stats, address, srv6 = known
        stats.datagrams += 1
        kind = protocol if protocol is not None and protocol != "auto" else detect(payload)
        try:
            if kind == "ipfix":  # the usual case first, without a call more
                self.ipfix.feed(payload, session or exporter, address, time_received_ms, stats, srv6)
            elif kind == "sflow":
                rows, counters = self.sflow.pending_rows()
                try:
                    self.sflow.feed(payload, address, time_received_ms, stats, srv6)
                finally:
                    self._sflow_fed(exporter, rows, counters)
            else:
                self._dispatch(kind, payload, exporter, session, time_received_ms, stats, srv6)
        except Exception as e:  # a decoder bug must not take the collector down
            stats.error(f"internal:{type(e).__name__}")
            log.debug("decoder failure on a datagram from %s", exporter, exc_info=True)
        if stats.fresh or stats.fresh_sequences:
            self._touched.add(exporter)
        return kind

    def _sflow_fed(self, exporter: str, rows: int, counters: int) -> None:
        """Count the sFlow rows a datagram of ``exporter`` added (see Decoded.sflow_sources)."""
        now_rows, now_counters = self.sflow.pending_rows()
        rows, counters = now_rows - rows, now_counters - counters
        if rows or counters:
            runs = self._sflow_sources
            if runs and runs[-1][0] == exporter:
                runs[-1][1] += rows
                runs[-1][2] += counters
            else:
                runs.append([exporter, rows, counters])

    def flush(self) -> Decoded:
        """Everything fed since the last flush."""
        sources, self._sflow_sources = self._sflow_sources, []
        flows, counters, unsampled, failures, sflow_lost = self._flush_decoders()
        if sflow_lost:
            sources = []
        errors, sequences = _counter(), _counter()
        for failure in failures:
            errors[("*", failure)] += 1
        # (after the decoders' flush: the Python IPFIX path and v5 count bad times as they decode)
        touched = self._touched
        for d in (self.ipfix, self.netflow9, self.netflow5):
            if d.late_errors:
                touched |= {self._names[id(s)] for s in d.late_errors if id(s) in self._names}
                d.late_errors.clear()
        native = self.ipfix.native
        if native is not None:  # the same loop in C: hundreds of exporters per flush while the kernel drops
            native.drain(touched, self.stats, errors, sequences)
        else:
            for exporter in touched:
                stats = self.stats[exporter]
                for reason, count in stats.fresh.items():
                    errors[(exporter, reason)] += count
                for key, count in stats.fresh_sequences.items():
                    sequences[(exporter, *key)] += count
                stats.fresh.clear()
                stats.fresh_sequences.clear()
        self._touched.clear()
        return Decoded(flows, counters, errors, sequences, unsampled, sources)

    def _flush_decoders(self) -> tuple[FlowBatch, CounterBatch, Counter, list[str], bool]:
        """(flows, counters, unsampled, internal failures, whether the sFlow rows were lost).

        Each step is contained on its own, so a bug loses no more than it must: a decoder whose
        flush raises loses its own pending rows (counted ``internal:<Type>``), the others keep
        theirs; when only the sampling defaults fail, the decoded rows are kept with the rates
        the exports gave (0 where none: "unknown", as the queries read it) and the failure is
        counted, never a whole flush dropped for it.
        """
        failures: list[str] = []
        parts: list[FlowBatch] = []
        counters = None
        sflow_lost = False
        if self.sflow.pending:
            try:
                sflow_flows, counters = self.sflow.flush()
                parts.append(sflow_flows)
            except Exception as e:  # a bug; this decoder's pending rows are lost (counted)
                log.exception("sFlow decoder flush failed")
                failures.append(f"internal:{type(e).__name__}")
                sflow_lost = True
        rated = not parts or self.sflow.unrated == 0  # every sFlow row has its rate (counted in C)
        for d in (self.ipfix, self.netflow9, self.netflow5):
            if d.pending:
                try:
                    parts.append(d.flush())
                    rated = False
                except Exception as e:  # a bug; this decoder's pending rows are lost (counted)
                    log.exception("%s decoder flush failed", type(d).__name__)
                    failures.append(f"internal:{type(e).__name__}")
        if counters is None:
            counters = CounterBatch.empty()
        if not parts:
            return FlowBatch.empty(), counters, _counter(), failures, sflow_lost
        try:
            flows = parts[0] if len(parts) == 1 else FlowBatch.concat(parts)
        except Exception as e:  # pragma: no cover - a bug; the pending flows are lost (counted)
            log.exception("decoder flush failed")
            failures.append(f"internal:{type(e).__name__}")
            return FlowBatch.empty(), counters, _counter(), failures, True
        if rated:
            return flows, counters, _counter(), failures, sflow_lost
        try:
            unsampled = self.sampling.apply(flows.columns)
        except Exception as e:  # a bug: keep the rows with the rates the exports gave
            log.exception("sampling defaults failed; the flows keep the rates they were exported with")
            failures.append(f"internal:{type(e).__name__}")
            unsampled = _counter()
        return flows, counters, unsampled, failures, sflow_lost

    def _dispatch(self, kind, payload, exporter, session, time_ms, stats, srv6=False) -> None:
        if kind == "sflow":
            self.sflow.feed(payload, self._address(exporter), time_ms, stats, srv6)
        elif kind == "ipfix":
            self.ipfix.feed(payload, session or exporter, self._address(exporter), time_ms, stats, srv6)
        elif kind == "netflow9":
            self.netflow9.feed(payload, session or exporter, self._address(exporter), time_ms, stats)
        elif kind == "netflow5":
            self.netflow5.feed(payload, self._address(exporter), time_ms, stats)
        else:
            stats.error("unknown_protocol")

    def _srv6_for(self, address: bytes) -> bool:
        """Whether the exporter at this 16-byte address is in collector.srv6_exporters."""
        if not self._srv6:
            return False
        v6 = ipaddress.IPv6Address(address)
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = v6.ipv4_mapped or v6
        return any(ip.version == n.version and ip in n for n in self._srv6)

    def _address(self, exporter: str) -> bytes:
        """16-byte form of an exporter address (zeros if it is not an address)."""
        addr = self._addresses.get(exporter)
        if addr is None:
            try:
                addr = ip_bytes(exporter)
            except ValueError:
                addr = bytes(16)
            self._addresses[exporter] = addr
        return addr

    # --- template state that survives a restart -----------------------------------------

    def state(self) -> dict:
        """IPFIX and NetFlow v9 templates and domain state, JSON-ready."""
        return {"version": STATE_VERSION, "ipfix": self.ipfix.state(), "netflow9": self.netflow9.state()}

    def load_state(self, state: dict) -> int:
        """Learn a saved :meth:`state` (through the template limits); templates taken."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown template state version {state.get('version')!r}")
        scratch = ExporterStats()  # loading is not traffic: keep it out of the exporters' stats
        taken = sum(getattr(self, n).load_state(state.get(n, {}), scratch) for n in ("ipfix", "netflow9"))
        if scratch.errors:
            log.warning("template state partly refused: %s", dict(scratch.errors))
        return taken

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state` to ``path`` atomically (a temporary file, then a rename)."""
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.state(), f, separators=(",", ":"))
        os.replace(tmp, path)

    def load(self, path: str | os.PathLike) -> int:
        """Read a file written by :meth:`save`; 0 if there is none. A corrupt file is
        logged and ignored: templates come again with the exporters' next refresh."""
        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
            return self.load_state(state)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            log.warning("ignoring template state %s: %s", path, e)
            return 0
