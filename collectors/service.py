"""The UDP collector service: receive export datagrams, decode, publish batches.

One thread per listener socket (SO_REUSEPORT lets several processes share a port). Each
thread owns its decoder, hence its template state, and batches flows per exporter so
transport messages are keyed by exporter. A batch is published when it holds
``batch_max_records`` flows or is ``batch_max_delay_ms`` old. With ``state_dir``, each
listener's template state is loaded at start and saved periodically and at stop.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
import time

from collectors import metrics
from collectors._templates import Limits
from collectors.decoder import Decoded, Decoder
from collectors.sockstats import socket_drops
from netobs.batch import FlowBatch
from netobs.config import CollectorConfig, ListenerConfig
from netobs.transport import Producer, TransportError

log = logging.getLogger(__name__)


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
        self._lock = threading.Lock()
        self.published = 0
        self.lost = 0
        self.rejected = 0
        self.socket_drops: dict[str, int] = {}
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
        for lc in self.config.listeners:
            sock = _bind(lc)
            self._sockets.append(sock)
            t = threading.Thread(
                target=self._serve, args=(sock, lc), name=f"collector-{lc.listen}", daemon=True
            )
            self._threads.append(t)
        for t in self._threads:
            t.start()
        log.info("collector listening on %s", ", ".join(f"{h}:{p}" for h, p in self.addresses))

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

    def state_path(self, lc: ListenerConfig):
        """Where the template state of one listener lives (None without ``state_dir``)."""
        if self.config.state_dir is None:
            return None
        return self.config.state_dir / f"templates-{re.sub(r'[^A-Za-z0-9.]+', '_', lc.listen)}.json"

    def _decoder(self, lc: ListenerConfig) -> Decoder:
        cfg = self.config
        limits = Limits(cfg.max_templates_per_exporter, cfg.max_fields_per_template)
        decoder = Decoder(default_sampling_rate=cfg.default_sampling_rate, limits=limits)
        path = self.state_path(lc)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            n = decoder.load(path)
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

    def _serve(self, sock: socket.socket, lc: ListenerConfig) -> None:
        decoder = self._decoder(lc)
        saved = time.monotonic()
        drops_read = 0.0
        pending: dict[str, list[FlowBatch]] = {}
        counts: dict[str, int] = {}
        oldest: dict[str, float] = {}
        max_delay = self.config.batch_max_delay_ms / 1000
        sock.settimeout(min(0.1, max_delay))
        while not self._stop.is_set():
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                data = None
            except OSError as e:
                log.error("listener %s: %s", lc.listen, e)
                break
            now = time.time()
            if data is not None and not self._allowed(addr[0]):
                metrics.rejected.labels(lc.listen, "exporter_not_allowed").inc()
                self.rejected += 1
                data = None
            if data is not None:
                exporter = addr[0]
                metrics.datagrams.labels(exporter, lc.listen).inc()
                decoded = decoder.decode(data, exporter, int(now * 1000))
                _count(decoded)
                flows = decoded.flows
                if len(flows):
                    metrics.records.labels(exporter, flows.columns["type"][0]).inc(len(flows))
                    pending.setdefault(exporter, []).append(flows)
                    counts[exporter] = counts.get(exporter, 0) + len(flows)
                    oldest.setdefault(exporter, now)
            for exporter in list(pending):
                if counts[exporter] >= self.config.batch_max_records or now - oldest[exporter] >= max_delay:
                    self._publish(exporter, pending.pop(exporter))
                    del counts[exporter], oldest[exporter]
            if time.monotonic() - saved >= self.config.state_save_interval_s:
                self._save(decoder, lc)
                saved = time.monotonic()
            if now - drops_read >= 5.0:
                self._read_drops(sock, lc)
                drops_read = now
        for exporter, batches in pending.items():
            self._publish(exporter, batches)
        self._save(decoder, lc)

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
            metrics.socket_drops.labels(lc.listen).set(drops)
            with self._lock:
                self.socket_drops[lc.listen] = drops

    def _publish(self, exporter: str, batches: list[FlowBatch]) -> None:
        batch = FlowBatch.concat(batches)
        started = time.perf_counter()
        try:
            self.producer.send(batch.to_arrow(), key=exporter.encode())
        except TransportError as e:
            with self._lock:
                self.lost += len(batch)
            metrics.publish_errors.inc(len(batch))
            log.error("dropped %d flows from %s: %s", len(batch), exporter, e)
            return
        metrics.publish_latency.observe(time.perf_counter() - started)
        metrics.published.inc(len(batch))
        with self._lock:
            self.published += len(batch)


def _count(decoded: Decoded) -> None:
    """Decode errors and sequence findings of one datagram into the metrics."""
    for (exp, reason), n in decoded.errors.items():
        metrics.decode_errors.labels(exp, reason).inc(n)
    for (exp, protocol, unit, kind), n in decoded.sequences.items():
        metrics.sequence.labels(exp, protocol, unit, kind).inc(n)


def _bind(lc: ListenerConfig) -> socket.socket:
    host, port = parse_hostport(lc.listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if lc.reuse_port and hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if lc.receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, lc.receive_buffer)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {lc.listen}: {e.strerror}") from None
    return sock
