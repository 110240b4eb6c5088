"""The UDP collector service: receive export datagrams, decode, publish batches.

One thread per listener socket (SO_REUSEPORT lets several processes share a port). Each
thread owns its decoder, hence its template state, and batches flows per exporter so
transport messages are keyed by exporter. A batch is published when it holds
``batch_max_records`` flows or is ``batch_max_delay_ms`` old. With ``state_dir``, each
listener's template state is loaded at start and saved periodically and at stop.

The loop works in rounds to keep per-datagram Python work small: it waits until the
socket is readable, drains it without blocking (up to ``drain_max_datagrams``; the rest
stays queued in the kernel for the next round; a round of fewer than 64 datagrams waits up
to 10 ms for more) and feeds every datagram of the round to the decoder. The decoder is
flushed every :data:`_FLUSH_DATAGRAMS` datagrams or when a batch is due, not per round (a
flush costs as much as dozens of feeds): exporters sending a few flows per datagram do not
pay a flush per datagram or two. The rows are split back by source exporter (sFlow rows by
the decoder's count of each datagram's rows, the others by their exporter column, see
:mod:`collectors._split`) and the metrics updated once per exporter and flush.
Draining takes up to :data:`_RECV_SLOTS` datagrams per system call with ``recvmmsg(2)``
(``collectors._native_recv``; ``socket.recvfrom`` one by one without it or with
``NETOBS_NATIVE=0``).

A listener pinned to one protocol (``listeners[].protocol`` other than ``auto``) skips
detection: every datagram goes to that protocol's decoder, so another protocol's datagrams
are not decoded but counted as decode errors under the pinned decoder's reason
(``sflow:bad_version``, ``ipfix:bad_header``, ...). ``psamp`` pins IPFIX, which PSAMP is on
the wire.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import re
import select
import socket
import threading
import time
import zlib
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

from collectors import _split, metrics
from collectors._split import _ZERO16
from collectors.config import CollectorConfig, ListenerConfig
from collectors.counters import CounterBatch
from collectors.decoder import Decoded, Decoder
from collectors.sockstats import socket_drops
from netobs.batch import FlowBatch, ip_str
from netobs.transport import Producer, TransportError

log = logging.getLogger(__name__)

#: ListenerConfig.protocol → what Decoder.feed is told (None: detect per datagram).
#: PSAMP travels as IPFIX (RFC 5476) and the IPFIX decoder tells its packet reports apart.
PROTOCOLS: dict[str, str | None] = {
    "auto": None,
    "sflow": "sflow",
    "ipfix": "ipfix",
    "psamp": "ipfix",
    "netflow9": "netflow9",
    "netflow5": "netflow5",
}
_MAX_DATAGRAM = 65535
#: A round is fed to the decoder once it holds this many datagrams (or the drain cap), or when
#: its first datagram is _HOLD_S old: at moderate rates polls return a datagram or two.
_MIN_ROUND = 64
_HOLD_S = 0.01
#: The decoder is flushed after this many datagrams at the latest (or when a publish is due).
_FLUSH_DATAGRAMS = 512
_RECV_SLOTS = 64  # datagrams per recvmmsg call: 64 slices of _MAX_DATAGRAM (4 MB reserved, few pages touched)


def _native_recv():
    """``recv_many`` of the recvmmsg helper, or None (not built, or ``NETOBS_NATIVE=0``)."""
    if os.environ.get("NETOBS_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        from collectors._native_recv import recv_many
    except ImportError:
        return None
    return recv_many


#: Exporters with fewer pending flows than this, or than a shared bucket's average of the publish
#: (its flows / SHARED_BUCKETS), share messages (see UdpCollector._publish_grouped).
SHARED_BELOW = 512
SHARED_BUCKETS = 16


def own_message_at(rows: int) -> int:
    """The pending flows an exporter needs for a message of its own in a publish of ``rows``."""
    return max(SHARED_BELOW, rows // SHARED_BUCKETS)


#: Per-exporter metric sums are handed to the metrics at most this often (see _Listener.tally_*).
_METRICS_EVERY_S = 1.0
_MAX_CACHED_METRICS = 65536  # labelled metric children kept per listener (bounded: spoofed sources)
_IDLE_WAIT_S = 0.1  # longest sleep in poll(): bounds how late stop() and housekeeping run
_DROPS_EVERY_S = 5.0


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class UdpCollector:
    """All configured listeners of one collector process. Constructed inert."""

    def __init__(self, config: CollectorConfig, producer: Producer):
        self.config = config
        self.producer = producer
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._listeners: list[ListenerConfig] = []
        self._lock = threading.Lock()
        self.datagrams = 0  # accepted datagrams handed to the decoder
        self.published = 0
        self.lost = 0
        self.counters_published = 0  # interface counter records (sFlow counter samples)
        self.counters_lost = 0
        self.rejected = 0
        self.socket_drops: dict[str, int] = {}
        self._failures: dict[str, str] = {}  # listener → why its thread ended
        self._metric_records: dict[tuple[str, str], Any] = {}  # (exporter, type) → labelled counter
        try:
            self._networks = [ipaddress.ip_network(c, strict=False) for c in config.allowed_exporters]
        except ValueError as e:
            raise ValueError(f"collector.allowed_exporters: {e}") from None
        self._verdicts: dict[str, bool] = {}

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) of every listener; useful with port 0."""
        return [s.getsockname()[:2] for s in self._sockets]

    def start(self) -> None:
        """Bind every listener and load its state, then start the threads: whatever cannot
        start raises here, before anything says ready."""
        decoders = []
        for lc in self.config.listeners:
            sock = _bind(lc)
            self._sockets.append(sock)
            self._listeners.append(lc)
            decoders.append(self._decoder(lc))
        for sock, lc, decoder in zip(self._sockets, self._listeners, decoders, strict=True):
            t = threading.Thread(
                target=self._serve, args=(sock, lc, decoder), name=f"collector-{lc.listen}", daemon=True
            )
            self._threads.append(t)
        for t in self._threads:
            t.start()
        log.info("collector listening on %s", ", ".join(f"{h}:{p}" for h, p in self.addresses))

    def dead(self) -> dict[str, str]:
        """Listeners whose thread ended while the collector was not stopping, and why."""
        if self._stop.is_set():
            return {}
        return {
            lc.listen: self._failures.get(lc.listen, "thread ended")
            for lc, t in zip(self._listeners, self._threads, strict=True)
            if t.ident is not None and not t.is_alive()
        }

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            if t.ident is not None:  # a failed start() may leave threads never started
                t.join(10)
        for s in self._sockets:
            s.close()
        try:
            self.producer.flush()
        except TransportError as e:
            log.error("final flush failed: %s", e)

    def read_socket_drops(self) -> dict[str, int]:
        """Read every listener's kernel drop count now (also done every few seconds)."""
        for sock, lc in zip(self._sockets, self._listeners, strict=True):
            if sock.fileno() != -1:
                self._read_drops(sock, lc)
        with self._lock:
            return dict(self.socket_drops)

    def state_path(self, lc: ListenerConfig):
        """Where the template state of one listener lives (None without ``state_dir``)."""
        if self.config.state_dir is None:
            return None
        return self.config.state_dir / f"templates-{re.sub(r'[^A-Za-z0-9.]+', '_', lc.listen)}.json"

    def _decoder(self, lc: ListenerConfig) -> Decoder:
        cfg = self.config
        decoder = Decoder.from_config(cfg)
        path = self.state_path(lc)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                n = decoder.load(path)
            except (OSError, ValueError, RecursionError, MemoryError) as e:
                why = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
                raise OSError(f"listener {lc.listen}: cannot use template state {path}: {why}") from None
            log.info("listener %s: %d templates loaded from %s", lc.listen, n, path)
        return decoder

    def _save(self, decoder: Decoder, lc: ListenerConfig) -> None:
        path = self.state_path(lc)
        if path is None:
            return
        try:
            decoder.save(path)
        except OSError as e:
            log.error("cannot save template state to %s: %s", path, e)

    def _serve(self, sock: socket.socket, lc: ListenerConfig, decoder: Decoder) -> None:
        try:
            _Listener(self, sock, lc, decoder).run()
        except BaseException as e:  # recorded for dead(): the runtime then ends the process
            self._failures[lc.listen] = f"{type(e).__name__}: {e}"
            log.critical("listener %s died", lc.listen, exc_info=True)

    def _allowed(self, exporter: str) -> bool:
        """Whether datagrams from ``exporter`` are accepted (the allowlist, cached per address)."""
        if not self._networks:
            return True
        known = self._verdicts.get(exporter)
        if known is None:
            try:
                ip = ipaddress.ip_address(exporter)
            except ValueError:
                ip = None
            mapped = getattr(ip, "ipv4_mapped", None) or ip
            known = mapped is not None and any(mapped in n for n in self._networks)
            if len(self._verdicts) < 65536:  # bounded: a spoofing flood cannot grow it forever
                self._verdicts[exporter] = known
        return known

    def _read_drops(self, sock: socket.socket, lc: ListenerConfig) -> None:
        drops = socket_drops(sock)
        if drops is not None:
            with self._lock:
                before = self.socket_drops.get(lc.listen, 0)
                self.socket_drops[lc.listen] = drops
            if drops > before:  # the kernel's count only grows while the socket lives
                metrics.socket_drops.labels(lc.listen).inc(drops - before)

    def _publish_grouped(
        self,
        batch: FlowBatch,
        codes: np.ndarray,
        names: list[str],
        tally: dict[tuple[str, str], int] | None = None,
        buckets: np.ndarray | None = None,
    ) -> None:
        """Publish the flows of many exporters from one grouping and one Arrow conversion;
        ``codes`` gives each row's source exporter (``names[code]``), ``buckets`` each code's
        shared bucket if known (:func:`_buckets`).

        An exporter with at least :func:`own_message_at` pending flows (:data:`SHARED_BELOW`, or
        more in a large publish: an average shared bucket's) gets a message of its own, keyed by
        it. Smaller ones share a message per bucket (``exporters-<n>``, the bucket a hash of the
        exporter, so an exporter's flows keep one partition): with hundreds of exporters most
        batches are small, and a message's fixed cost (a compressed buffer per column) would
        otherwise be paid per exporter (500 exporters of ~600 flows each made 60 messages of a
        publish where 16 hold them). Rows carry their exporter anyway.

        The grouping is array work over the exporter codes (a message key and a rank per code,
        one stable sort of the rows by rank); Python loops run per message (at most
        :data:`SHARED_BUCKETS` shared ones) and once per exporter for its flow count."""
        n = len(batch)
        if n == 0:
            return
        sizes = np.bincount(codes)
        present = np.flatnonzero(sizes)
        if len(present) == 1:  # one exporter: its own message, rows as they are
            runs, order = [(int(present[0]), 0, n)], None
            messages = [(-1, 0, n, names[int(present[0])])]
        else:
            psizes = sizes[present]
            own = psizes >= own_message_at(n)
            keys = np.where(own, -1 - np.arange(len(present)), _buckets(names, buckets)[present])
            by_key = np.argsort(keys, kind="stable")  # codes by message key, then by code
            rank = np.empty(len(sizes), dtype=np.uint16 if len(present) <= 65536 else np.int64)
            rank[present[by_key]] = np.arange(len(present))
            order = np.argsort(rank[codes], kind="stable")  # (radix sort of 16-bit ranks)
            ends = np.cumsum(psizes[by_key])
            starts = ends - psizes[by_key]
            runs = list(zip(present[by_key].tolist(), starts.tolist(), ends.tolist(), strict=True))
            messages = []  # (key, start, end, exporter of an own message)
            sorted_keys = keys[by_key].tolist()
            for i, (code, start, end) in enumerate(runs):
                key = sorted_keys[i]
                if key < 0 or not messages or messages[-1][0] != key:
                    messages.append((key, start, end, names[code] if key < 0 else ""))
                else:
                    messages[-1] = (key, messages[-1][1], end, "")
        cols = batch.columns if order is None else {k: v[order] for k, v in batch.columns.items()}
        rb = FlowBatch(cols, n).to_arrow()
        types = cols.get("type")
        if types is not None:
            self._tally_types(types, runs, names, tally)
        for key, start, end, exporter in messages:
            size = end - start
            part = rb if size == n else rb.slice(start, size)
            self._send(exporter if key < 0 else f"exporters-{key}", part, size)

    def _tally_types(
        self,
        types: np.ndarray,
        runs: list[tuple[int, int, int]],
        names: list[str],
        tally: dict[tuple[str, str], int] | None,
    ) -> None:
        """Flows per (exporter, export type) of a publish, given each exporter's rows as
        ``runs`` of ``types``: into ``tally`` (the listener hands the sums to the metrics, see
        _Listener._push_metrics), or straight into the metrics without it."""
        if tally is None:
            for code, start, end in runs:
                self._count_records(names[code], types[start:end])
            return
        mixed = _mixed_types(types, [end - start for _, start, end in runs])
        firsts = types[[start for _, start, _ in runs]].tolist() if len(runs) > 1 else [types[0]]
        for (code, start, end), first, mix in zip(runs, firsts, mixed.tolist(), strict=True):
            exporter = names[code]
            if not mix:  # (the usual case: one export type per exporter)
                tally[(exporter, first)] = tally.get((exporter, first), 0) + end - start
            else:
                for kind, k in _types(types[start:end]).items():
                    tally[(exporter, kind)] = tally.get((exporter, kind), 0) + k

    def _count_tally(self, tally: dict[tuple[str, str], int]) -> None:
        children = self._metric_records
        for key, n in tally.items():
            child = children.get(key)
            if child is None:
                child = metrics.records.labels(*key)
                if len(children) < _MAX_CACHED_METRICS:
                    children[key] = child
            child.inc(n)

    def _count_records(self, exporter: str, types: np.ndarray) -> None:
        children = self._metric_records
        for kind, n in _types(types).items():
            child = children.get((exporter, kind))
            if child is None:
                child = metrics.records.labels(exporter, kind)
                if len(children) < _MAX_CACHED_METRICS:
                    children[(exporter, kind)] = child
            child.inc(n)

    def _send(self, exporter: str, rb: pa.RecordBatch, n: int) -> None:
        started = time.perf_counter()
        try:
            self.producer.send(rb, key=exporter.encode())
        except Exception as e:  # TransportError, or a transport bug: counted either way
            with self._lock:
                self.lost += n
            metrics.publish_errors.inc(n)
            metrics.lost.labels(exporter, "transport_refused").inc(n)
            log.error("dropped %d flows from %s: %s", n, exporter, e)
            return
        metrics.publish_latency.observe(time.perf_counter() - started)
        metrics.published.inc(n)
        with self._lock:
            self.published += n

    def _publish_counters(self, exporter: str, batches: list[CounterBatch]) -> None:
        """Interface counters go as their own record kind (the pipeline's interface_counters)."""
        batch = CounterBatch.concat(batches)
        try:
            self.producer.send(batch.to_arrow(), key=exporter.encode())
        except Exception as e:  # TransportError, or a transport bug: counted either way
            with self._lock:
                self.counters_lost += len(batch)
            metrics.counter_publish_errors.inc(len(batch))
            metrics.lost.labels(exporter, "counters_transport_refused").inc(len(batch))
            log.error("dropped %d interface counter records from %s: %s", len(batch), exporter, e)
            return
        metrics.published_counters.inc(len(batch))
        with self._lock:
            self.counters_published += len(batch)


class _Listener:
    """The receive → decode → batch loop of one listener socket (one thread)."""

    def __init__(self, owner: UdpCollector, sock: socket.socket, lc: ListenerConfig, decoder: Decoder):
        self.owner = owner
        self.sock = sock
        self.lc = lc
        self.decoder = decoder
        self.protocol = PROTOCOLS[lc.protocol]
        self.cap = owner.config.drain_max_datagrams
        self.max_records = owner.config.batch_max_records
        self.max_delay = owner.config.batch_max_delay_ms / 1000
        #: Decoded flows not yet published, a batch per round, all exporters together: rows are
        #: grouped by exporter once per publish (UdpCollector._publish_grouped), not per round.
        self.pending: list[FlowBatch] = []
        #: Per pending batch, the code of each row's source exporter (``names[code]``): a row's
        #: exporter column is an sFlow agent address, which several sources may share.
        self.pending_codes: list[np.ndarray] = []
        self.names: list[str] = []  # the source exporters of the pending rows, by code
        self.codes: dict[str, int] = {}  # exporter → its code (kept across publishes, bounded)
        self.address_codes: dict[bytes, int] = {}  # 16-byte source address → its exporter's code
        self.buckets = np.zeros(0, dtype=np.int64)  # exporter code → its shared message bucket
        #: Datagrams fed to the decoder since its last flush, per exporter, and when the first was:
        #: the decoder is flushed every _FLUSH_DATAGRAMS datagrams or when a publish is due, not
        #: per round (a flush costs as much as dozens of feeds).
        self.fed: dict[str, int] = {}
        self.fed_count = 0
        self.fed_since = 0.0
        # (a datagram carries a flow or more: a small batch_max_records is checked as often)
        self.flush_every = min(_FLUSH_DATAGRAMS, self.max_records)
        #: Flows pending per exporter code (an array: a flush adds its bincount, no per-exporter loop),
        #: and when the first of them arrived: a publish takes every exporter's, so the oldest
        #: pending flow of all is the one that makes a publish due.
        self.code_counts = np.zeros(64, dtype=np.int64)
        self.pending_since: float | None = None
        self.counters: dict[str, list[CounterBatch]] = {}  # exporter → counter samples, not yet published
        self.counters_since: dict[str, float] = {}  # exporter → when its first pending counter arrived
        # counters_since keeps insertion order, which is time order: an exporter enters with its
        # first pending counter and leaves when published, so the first entry is the oldest and
        # what is due is a prefix (no scan over every exporter per loop).
        self.full = False  # some exporter's pending flows reached batch_max_records
        self.metric_datagrams: dict[str, Any] = {}  # exporter → its labelled datagram counter
        #: Per-exporter sums not yet in the metrics (datagrams; flows by (exporter, type)): with
        #: hundreds of exporters, a metric increment per exporter per round cost a fifth of the
        #: collector's time. Handed over at most every _METRICS_EVERY_S (and at every flush of all).
        self.tally_datagrams: dict[str, int] = {}
        self.tally_records: dict[tuple[str, str], int] = {}
        self.tally_sequences: dict[tuple, int] = {}  # (exporter, protocol, unit, kind) → count
        self.metrics_pushed = time.monotonic()
        self.addresses: dict[str, bytes] = {}  # exporter → its 16-byte form (see collectors._split)
        self.held: dict[str, list[bytes]] = {}  # exporter → drained, not yet decoded (see _hold)
        self.held_count = 0
        self.held_since = 0.0
        self.min_round = min(_MIN_ROUND, self.cap)
        self.recv_many = _native_recv()
        self.slots = min(_RECV_SLOTS, self.cap)
        self.buffer = bytearray(self.slots * _MAX_DATAGRAM) if self.recv_many is not None else None
        sock.setblocking(False)  # drained until EAGAIN; waiting happens in poll()

    def run(self) -> None:
        sock, owner = self.sock, self.owner
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        saved = drops_read = time.monotonic()
        owner._read_drops(sock, self.lc)
        while not owner._stop.is_set():
            try:
                if poller.poll(self._wait_ms()):
                    self._hold(self._drain(self.cap - self.held_count))
                if self.held and (
                    self.held_count >= self.min_round or time.monotonic() - self.held_since >= _HOLD_S
                ):
                    self._decode(self._release())
                    if self.fed_count >= self.flush_every:
                        self._flush()
            except OSError as e:  # the socket itself failed: nothing more will arrive on it
                owner._failures[self.lc.listen] = f"socket failed: {e}"
                log.critical("listener %s stopped: %s", self.lc.listen, e)
                break
            except Exception as e:  # a bug must not stop the listener; the round's flows are lost
                log.exception("listener %s: a round of datagrams failed", self.lc.listen)
                metrics.decode_errors.labels("*", f"internal:{type(e).__name__}").inc()
            self._publish_due(time.monotonic())
            now = time.monotonic()
            if now - saved >= owner.config.state_save_interval_s:
                owner._save(self.decoder, self.lc)
                saved = now
            if now - drops_read >= _DROPS_EVERY_S:
                owner._read_drops(sock, self.lc)
                drops_read = now
        if self.held or self.fed:  # received already: decoded and published with the rest
            try:
                if self.held:
                    self._decode(self._release())
                self._flush()
            except Exception as e:
                log.exception("listener %s: the last round of datagrams failed", self.lc.listen)
                metrics.decode_errors.labels("*", f"internal:{type(e).__name__}").inc()
        self._publish_due(float("inf"))
        owner._save(self.decoder, self.lc)

    def _hold(self, burst: dict[str, list[bytes]]) -> None:
        """Keep drained datagrams until the round is worth a flush (see :data:`_MIN_ROUND`)."""
        if not burst:
            return
        if not self.held:
            self.held_since = time.monotonic()
        held = self.held
        for exporter, payloads in burst.items():
            queue = held.get(exporter)
            if queue is None:
                held[exporter] = payloads
            else:
                queue.extend(payloads)
            self.held_count += len(payloads)

    def _release(self) -> dict[str, list[bytes]]:
        """The held datagrams, as one round to decode; nothing held afterwards."""
        burst, self.held, self.held_count = self.held, {}, 0
        return burst

    def _wait_ms(self) -> int:
        """How long poll() may sleep: until held datagrams or the oldest pending batch are due,
        at most 100 ms."""
        wait = _IDLE_WAIT_S
        if self.held:
            wait = min(wait, self.held_since + _HOLD_S - time.monotonic())
        if self.fed:
            wait = min(wait, self.fed_since + self.max_delay - time.monotonic())
        if self.pending_since is not None or self.counters_since:
            first = min(
                float("inf") if self.pending_since is None else self.pending_since,
                next(iter(self.counters_since.values()), float("inf")),
            )
            wait = min(wait, first + self.max_delay - time.monotonic())
        return max(0, int(wait * 1000 + 0.999))

    def _drain(self, limit: int | None = None) -> dict[str, list[bytes]]:
        """Up to ``limit`` (default ``cap``) queued datagrams, grouped by exporter in arrival order.

        With the recvmmsg helper, ``slots`` datagrams per system call; a datagram longer
        than a slice (65535 bytes: none over UDP/IPv4) is counted as rejected
        ``truncated``, never decoded cut. Without it ``recvfrom`` (not ``recvfrom_into`` a
        reused buffer): every payload must become a bytes object the decoder may keep until
        its flush anyway, and CPython shrinks the received bytes in place, which measured
        faster than receiving into a buffer and copying.
        """
        burst: dict[str, list[bytes]] = {}
        rejected = truncated = 0
        allowed, cap = self.owner._allowed, self.cap if limit is None else limit
        if self.recv_many is not None and self.buffer is not None:
            fd, left, view = self.sock.fileno(), cap, memoryview(self.buffer)
            while left > 0:
                asked = min(self.slots, left)
                got, cut = self.recv_many(fd, view[: asked * _MAX_DATAGRAM], asked)
                truncated += cut
                for data, exporter in got:
                    if not allowed(exporter):
                        rejected += 1
                        continue
                    queue = burst.get(exporter)
                    if queue is None:
                        queue = burst[exporter] = []
                    queue.append(data)
                left -= len(got) + cut
                if len(got) + cut < asked:  # the queue is empty
                    break
        else:
            recvfrom = self.sock.recvfrom
            for _ in range(cap):
                try:
                    data, addr = recvfrom(_MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    break
                exporter = addr[0]
                if not allowed(exporter):
                    rejected += 1
                    continue
                queue = burst.get(exporter)
                if queue is None:
                    queue = burst[exporter] = []
                queue.append(data)
        if rejected or truncated:
            if rejected:
                metrics.rejected.labels(self.lc.listen, "exporter_not_allowed").inc(rejected)
            if truncated:
                metrics.rejected.labels(self.lc.listen, "truncated").inc(truncated)
                log.warning(
                    "listener %s: %d datagrams over %d bytes dropped",
                    self.lc.listen,
                    truncated,
                    _MAX_DATAGRAM,
                )
            with self.owner._lock:
                self.owner.rejected += rejected + truncated
        return burst

    def _decode(self, burst: dict[str, list[bytes]]) -> None:
        """Feed one drained round to the decoder; its rows wait in the decoder for :meth:`_flush`.
        A decoder failure loses what the decoder held (counted per exporter, see :meth:`_discard`)."""
        wall_ms = int(time.time() * 1000)
        fed, protocol = self.fed, self.protocol
        if not fed:
            self.fed_since = time.monotonic()
        total = 0
        for exporter, payloads in burst.items():
            fed[exporter] = fed.get(exporter, 0) + len(payloads)
            total += len(payloads)
        self.fed_count += total
        with self.owner._lock:
            self.owner.datagrams += total
        feed = self.decoder.feed
        try:
            for exporter, payloads in burst.items():
                for payload in payloads:
                    feed(payload, exporter, wall_ms, None, protocol)
        except Exception as e:
            self.fed, self.fed_count = {}, 0
            self._tally_fed(fed)
            self._discard(fed, e)

    def _tally_fed(self, fed: dict[str, int]) -> None:
        """Datagrams received per exporter, for the metrics (once per flush, not per round)."""
        tally = self.tally_datagrams
        for exporter, n in fed.items():
            tally[exporter] = tally.get(exporter, 0) + n

    def _flush(self) -> None:
        """Flush the decoder: every exporter's flows join its pending batch (see :meth:`_take`)."""
        if not self.fed:
            return
        fed, arrived = self.fed, self.fed_since
        self.fed, self.fed_count = {}, 0
        self._tally_fed(fed)
        try:
            decoded = self.decoder.flush()
        except Exception as e:
            self._discard(fed, e)
            return
        _count(decoded, self.tally_sequences)
        self._take(decoded.flows, decoded.sflow_sources, fed, arrived)
        self._take_counters(decoded.counters, decoded.sflow_sources, fed, arrived)

    def _code(self, exporter: str) -> int:
        code = self.codes.get(exporter)
        if code is None:
            code = self.codes[exporter] = len(self.names)
            self.names.append(exporter)
        return code

    def _take(self, flows: FlowBatch, sources: list, fed: dict[str, int], arrived: float) -> None:
        """Add a flush's flows to the pending ones, each row tagged with its source exporter:
        the sFlow rows (first) by the runs the decoder counted, the others by their exporter
        column, which is the UDP source they came from. Counted per exporter."""
        n = len(flows)
        if not n:
            return
        codes = np.empty(n, dtype=np.int32)
        get, code_of = self.codes.get, self._code
        run_codes, run_rows = [], []  # the sFlow runs (one per datagram of an interleaved agent)
        for exporter, rows, _ in sources:
            if rows:
                code = get(exporter)
                run_codes.append(code_of(exporter) if code is None else code)
                run_rows.append(rows)
        pos = sum(run_rows)
        if pos > n:  # (cannot happen: the decoder counted more sFlow rows than it returned)
            log.error("listener %s: %d sFlow rows counted, %d decoded", self.lc.listen, pos, n)
            pos = 0
        elif pos:
            codes[:pos] = np.repeat(np.array(run_codes, dtype=np.int32), run_rows)
        if pos < n:
            col = flows.columns.get("exporter")
            parts = _split.runs(col[pos:] if col is not None else None, n - pos)
            known, owners = self.address_codes, None
            group_codes = []
            for address, _, _ in parts:
                code = known.get(address) if address is not None else None
                if code is None:
                    if owners is None:  # (a first contact, or a row not from its UDP source)
                        owners = {self._address(exporter): exporter for exporter in fed}
                    exporter = _owner(address, owners) if address is not None else next(iter(fed), "unknown")
                    code = code_of(exporter)
                    if address is not None and address != _ZERO16 and owners.get(address) == exporter:
                        known[address] = code  # its own source address: the same owner from now on
                group_codes.append(code)
            codes[pos:] = np.repeat(
                np.array(group_codes, dtype=np.int32), [end - start for _, start, end in parts]
            )
        self.pending.append(flows)
        self.pending_codes.append(codes)
        if self.pending_since is None:
            self.pending_since = arrived
        counts = np.bincount(codes)
        if len(counts) > len(self.code_counts):
            grown = np.zeros(max(len(counts), 2 * len(self.code_counts)), dtype=np.int64)
            grown[: len(self.code_counts)] = self.code_counts
            self.code_counts = grown
        pending = self.code_counts[: len(counts)]
        pending += counts
        if int(pending.max()) >= self.max_records:
            self.full = True

    @property
    def counts(self) -> dict[str, int]:
        """Flows pending per exporter (for inspection; the loop keeps them per code)."""
        present = np.flatnonzero(self.code_counts[: len(self.names)])
        return {self.names[code]: int(self.code_counts[code]) for code in present.tolist()}

    def _address(self, exporter: str) -> bytes:
        """The 16-byte form of a source address (cached, bounded)."""
        address = self.addresses.get(exporter)
        if address is None:
            address = _split.address(exporter)
            if len(self.addresses) < _MAX_CACHED_METRICS:
                self.addresses[exporter] = address
        return address

    def _take_counters(
        self, counters: CounterBatch, sources: list, fed: dict[str, int], arrived: float
    ) -> None:
        """Interface counter records (few: one per interface and polling interval), per source
        exporter: the decoder's sFlow runs say whose they are, in order."""
        n = len(counters)
        if not n:
            return
        if sum(run[2] for run in sources) != n:  # (cannot happen) by their agent address then
            owners = {self._address(exporter): exporter for exporter in fed}
            parts = [
                (_owner(address, owners), columns, rows)
                for address, columns, rows in _split.split(counters.columns, n)
            ]
        else:
            parts, pos = [], 0
            for exporter, _, rows in sources:
                if rows:
                    columns = (
                        counters.columns
                        if rows == n
                        else {k: v[pos : pos + rows] for k, v in counters.columns.items()}
                    )
                    parts.append((exporter, columns, rows))
                    pos += rows
        for exporter, columns, rows in parts:
            self.counters.setdefault(exporter, []).append(CounterBatch(columns, rows))
            self.counters_since.setdefault(exporter, arrived)

    def _discard(self, fed: dict[str, int], error: Exception) -> None:
        """Count datagrams the decoder failed on, and drop what it holds of them, so that
        their flows cannot end up in a later batch."""
        lost = sum(fed.values())
        log.error("listener %s: %d datagrams lost to a decoder failure", self.lc.listen, lost, exc_info=error)
        for exporter, count in fed.items():
            metrics.decode_errors.labels(exporter, f"internal:{type(error).__name__}").inc(count)
        try:
            self.decoder.flush()
        except Exception:
            log.exception("listener %s: the decoder cannot flush either", self.lc.listen)

    def _push_metrics(self) -> None:
        """The per-exporter sums into the metrics (datagrams received, flows published by type)."""
        children, tally = self.metric_datagrams, self.tally_datagrams
        self.tally_datagrams = {}
        for exporter, n in tally.items():
            child = children.get(exporter)
            if child is None:
                child = metrics.datagrams.labels(exporter, self.lc.listen)
                if len(children) < _MAX_CACHED_METRICS:
                    children[exporter] = child
            child.inc(n)
        records, self.tally_records = self.tally_records, {}
        self.owner._count_tally(records)
        sequences, self.tally_sequences = self.tally_sequences, {}
        for (exp, protocol, unit, kind), n in sequences.items():
            _child(metrics.sequence[unit], exp, protocol, kind).inc(n)
        self.metrics_pushed = time.monotonic()

    def _publish_due(self, now: float) -> None:
        """Publish the pending flows once some exporter's are ``batch_max_records`` many or
        ``batch_max_delay_ms`` old (all with ``now=inf``), and the counters that are due; the
        decoder is flushed first when what it holds is that old. No scan over the exporters:
        ``pending_since`` is the oldest pending flow, ``full`` set by :meth:`_take`."""
        if self.fed and now >= self.fed_since + self.max_delay:  # (the sum: exact for now = since + delay)
            self._flush()
        since = self.pending_since
        if self.pending and (self.full or (since is not None and now >= since + self.max_delay)):
            batch, codes, names = (
                FlowBatch.concat(self.pending),
                np.concatenate(self.pending_codes),
                self.names,
            )
            self.pending, self.pending_codes = [], []
            self.code_counts[:] = 0
            self.pending_since = None
            self.full = False
            if not self.fed and len(self.names) > _MAX_CACHED_METRICS:  # bounded (spoofed sources)
                self.names, self.codes, self.address_codes = [], {}, {}
                self.code_counts = np.zeros(64, dtype=np.int64)
                self.buckets = np.zeros(0, dtype=np.int64)
            elif len(self.buckets) < len(names):
                self.buckets = _buckets(names, self.buckets)
            self.owner._publish_grouped(batch, codes, names, self.tally_records, self.buckets)
        if (self.tally_datagrams or self.tally_records or self.tally_sequences) and (
            now - self.metrics_pushed >= _METRICS_EVERY_S
        ):
            self._push_metrics()
        if self.counters_since and now >= next(iter(self.counters_since.values())) + self.max_delay:
            for exporter in list(self.counters_since):
                if now < self.counters_since[exporter] + self.max_delay:
                    break
                del self.counters_since[exporter]
                self.owner._publish_counters(exporter, self.counters.pop(exporter))


def _buckets(names: list[str], known: np.ndarray | None = None) -> np.ndarray:
    """The shared message bucket of every exporter code (a hash of its name), ``known`` (the
    buckets of the first codes, kept by the caller) extended to every name."""
    if known is None:
        known = np.zeros(0, dtype=np.int64)
    if len(known) >= len(names):
        return known
    more = np.fromiter((zlib.crc32(x.encode()) % SHARED_BUCKETS for x in names[len(known) :]), np.int64)
    return np.concatenate([known, more])


def _owner(address: bytes | None, owners: dict[bytes, str]) -> str:
    """The source exporter of rows carrying ``address`` (the address itself if unforeseen)."""
    exporter = owners.get(address) if address is not None else None
    return exporter or (ip_str(address) if address is not None else "unknown")


def _mixed_types(types: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Per consecutive run of ``sizes`` rows, whether its export type changes within it: one
    pass over the batch instead of one comparison per exporter."""
    if not len(types):
        return np.zeros(len(sizes), dtype=bool)
    change = np.flatnonzero(types[1:] != types[:-1]) + 1  # rows whose type differs from the row before
    if not len(change):
        return np.zeros(len(sizes), dtype=bool)
    ends = np.cumsum(np.asarray(sizes, dtype=np.int64))
    starts = ends - np.asarray(sizes, dtype=np.int64)
    at = np.searchsorted(change, starts, side="right")  # the first change after each run's start
    inside = at < len(change)
    return inside & (change[np.minimum(at, len(change) - 1)] < ends)


def _types(types: np.ndarray) -> dict[str, int]:
    """Flows per export type (sflow, ipfix, psamp, ...); usually one type per exporter."""
    first = types[0]
    if types[-1] == first and bool((types == first).all()):
        return {first: len(types)}
    return Counter(types.tolist())


#: Labelled metric children of :func:`_count`, by (metric, labels): with hundreds of exporters a
#: collector that falls behind sees sequence gaps from every one of them at every flush, and
#: ``labels()`` costs more than the increment. Bounded like the listeners' caches.
_CHILDREN: dict[tuple, Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (metric, *labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = metric.labels(*labels)
        if len(_CHILDREN) >= _MAX_CACHED_METRICS:
            _CHILDREN.clear()
        _CHILDREN[key] = child
    return child


def _count(decoded: Decoded, tally: dict[tuple, int] | None = None) -> None:
    """Decode errors and sequence findings of one flush into the metrics; the sequence findings
    into ``tally`` when given (a listener's sums, handed over with the others): a collector that
    falls behind sees gaps from every exporter at every flush."""
    for (exp, reason), n in decoded.errors.items():
        _child(metrics.decode_errors, exp, reason).inc(n)
    if tally is not None:
        for key, n in decoded.sequences.items():
            tally[key] = tally.get(key, 0) + n
    else:
        for (exp, protocol, unit, kind), n in decoded.sequences.items():
            _child(metrics.sequence[unit], exp, protocol, kind).inc(n)
    for exp, n in decoded.unsampled.items():
        _child(metrics.unsampled, exp).inc(n)
        if exp not in _WARNED_UNSAMPLED and len(_WARNED_UNSAMPLED) < 4096:
            _WARNED_UNSAMPLED.add(exp)
            log.warning(
                "exporter %s sends flows without a sampling rate and none is configured "
                "(collector.exporter_sampling); they are counted once each",
                exp,
            )


_WARNED_UNSAMPLED: set[str] = set()


def _bind(lc: ListenerConfig) -> socket.socket:
    """A UDP socket bound to the listener's address, exclusively unless ``reuse_port``.

    No SO_REUSEADDR: on Linux it lets a second UDP socket bind the same address and take the
    unicast traffic from the first without a word; SO_REUSEPORT (opt-in) shares it on purpose.
    """
    host, port = parse_hostport(lc.listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if lc.reuse_port and hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if lc.receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, lc.receive_buffer)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            hint = (
                "another process (a second netobs run?) holds it; stop it, or set reuse_port: true on "
                "every process sharing the port (the kernel then spreads exporters between them)"
            )
            raise OSError(e.errno, f"cannot listen on {lc.listen}: address already in use: {hint}") from None
        raise OSError(e.errno, f"cannot listen on {lc.listen}: {e.strerror}") from None
    return sock
