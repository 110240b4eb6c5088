"""``netobs sample``: the node agent that samples pod packets and summarises their L7 context.

Rings (:mod:`collectors.sampler._capture`) on the host end of every pod port of the bridge,
followed from OVS; capture threads drain them (C walks the blocks, the GIL released); every
``flush_interval_s`` the drained records become two record kinds on the transport: header rows
(``packet_samples``, the sampled packets with their rate) and one L7 row per conversation
(``l7_conversations``, from one tshark run over the L7 candidates). Payload bytes never leave
this process except into that tshark's stdin; bounded everywhere, with every shed row counted.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from collectors import metrics
from collectors.config import SamplerConfig
from collectors.sampler import l7
from collectors.sampler._capture import DIRECTIONS, PAYLOAD_CLASSES, RECORD, compile_bpf, native, pcap_file
from collectors.sampler._privacy import NamePrivacy
from collectors.sampler.ovs import OvsError, PodPort, list_pod_ports
from netobs import schema
from netobs.batch import arrow_array, conform

log = logging.getLogger(__name__)
#: Bytes of L2-L4 headers the kernel keeps in front of the L7 bytes (Ethernet, 2 tags, IPv6 + ext, TCP).
HEADER_SNAP = 128
#: Rows per transport message (a Kafka message stays well under the broker's 1 MB default).
MESSAGE_ROWS = 8192
_ENC_RANK = {"none": 0, "binary": 1, "text": 2, "http": 2, "dns": 0, "tls": 3}
_ENC_NAMES = np.array(["", "opaque", "plaintext", "tls"], dtype=object)


@dataclass
class _Port:
    port: PodPort
    rings: list[Any] = field(default_factory=list)
    #: Each ring's counters at the last read (the ring's own count since it was opened).
    seen: list[dict[str, int]] = field(default_factory=list)
    #: Held while a ring of the port is walked (the GIL released) and while the rings are closed:
    #: unmapping a ring under the walk would crash the process.
    lock: threading.Lock = field(default_factory=threading.Lock)


class SampleAgent:
    """Constructed inert; ``start()`` opens the rings and the threads, ``stop()`` flushes and closes."""

    def __init__(self, cfg: SamplerConfig, producer: Any, list_ports: Any = None):
        self.cfg = cfg
        self.producer = producer
        self.node = cfg.node or socket.gethostname()
        self.privacy = NamePrivacy(cfg)
        self.snaplen = HEADER_SNAP + cfg.l7_snap
        self.bpf = compile_bpf(cfg.filter, self.snaplen)  # a bad filter fails here, before any capture
        self._list_ports = list_ports or (lambda: list_pod_ports(cfg.vsctl, cfg.bridge))
        self._ports: dict[str, _Port] = {}
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._fanout_ids: dict[str, int] = {}
        self._fanout_base = (os.getpid() * 131) & 0xFFFF  # distinct from other agents' groups on the host
        self._pending: list[tuple[PodPort, np.ndarray, bytes]] = []
        self._pending_rows = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.counts: dict[str, int] = dict.fromkeys(
            ("seen", "sampled", "l7", "capped", "l7_capped", "kernel_drops", "shed"), 0
        )
        self.published = {schema.PACKET_SAMPLES: 0, schema.L7: 0}
        self.errors: dict[str, int] = {}

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.refresh()
        for w in range(self.cfg.fanout_workers):
            t = threading.Thread(target=self._capture, args=(w,), name=f"sample-capture-{w}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._loop, name="sample-flush", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self._drain_all()
        self.flush()
        with self._lock:
            for p in self._ports.values():
                with p.lock:
                    for r in p.rings:
                        r.close()
            self._ports.clear()
        self.producer.flush()

    @property
    def interfaces(self) -> dict[str, PodPort]:
        with self._lock:
            return {name: p.port for name, p in self._ports.items()}

    # ---- following the bridge ---------------------------------------------------------------------
    def refresh(self) -> None:
        """Open rings on pod ports that appeared, close those of ports that went."""
        wanted: dict[str, PodPort] = {
            i.ifname: PodPort(i.ifname, f"{i.pod}.{i.namespace}", i.pod, i.namespace, "")
            for i in self.cfg.interfaces
        }
        if self.cfg.follow_ovs:
            try:
                wanted.update(self._list_ports())
            except OvsError as e:
                self._error("ovs", f"cannot list the bridge's ports: {e}")
                return
        with self._lock:
            gone = [n for n, p in self._ports.items() if wanted.get(n) != p.port]
            closing = [self._ports.pop(n) for n in gone]
        for p in closing:
            with self._stats_lock:
                self._collect_stats(p)
            with p.lock:
                for r in p.rings:
                    r.close()
            log.info("stopped sampling %s (%s/%s)", p.port.ifname, p.port.namespace, p.port.pod)
        for name, port in wanted.items():
            if name in self._ports:
                continue
            try:
                rings = [self._ring(name, w) for w in range(self.cfg.fanout_workers)]
            except OSError as e:
                self._error("ring", f"cannot capture on {name}: {e}")
                continue
            with self._lock:
                self._ports[name] = _Port(port, rings)
            log.info("sampling %s (%s/%s)", name, port.namespace, port.pod)
        metrics.sampler_interfaces.set(len(self._ports))

    def _ring(self, ifname: str, worker: int) -> Any:
        c = self.cfg
        fanout = 0
        if c.fanout_workers > 1:  # one group per interface: a group id may serve only one device
            fanout = self._fanout_ids.setdefault(
                ifname, (self._fanout_base + len(self._fanout_ids)) % 0xFFFF + 1
            )
        return native().Ring(
            ifname,
            self.bpf,
            sample_n=c.sampling_rate,
            random=int(c.sampling_mode == "random"),
            seed=int.from_bytes(np.random.default_rng().bytes(8), "little") | 1,
            cap_rate=c.max_samples_per_s / c.fanout_workers,
            l7_rate=c.max_l7_per_s / c.fanout_workers,
            l7_snap=c.l7_snap,
            block_size=c.ring_block_kib * 1024,
            block_nr=c.ring_blocks,
            fanout=fanout,
        )

    # ---- capture threads ---------------------------------------------------------------------------
    def _capture(self, worker: int) -> None:
        poller = select.poll()
        fds: dict[int, tuple[_Port, Any]] = {}
        while not self._stop.is_set():
            with self._lock:
                rings = {
                    r.fileno(): (p, r) for p in self._ports.values() for r in p.rings[worker : worker + 1]
                }
            for fd in set(fds) - set(rings):
                poller.unregister(fd)
            for fd in set(rings) - set(fds):
                poller.register(fd, select.POLLIN | select.POLLERR)
            fds = rings
            if not rings:
                self._stop.wait(0.1)
                continue
            for fd, _ in poller.poll(100):
                if fd in rings:
                    self._drain(*rings[fd])

    def _drain(self, p: _Port, ring: Any) -> None:
        port = p.port
        try:
            with p.lock:
                recs, frames = ring.drain(65536)
        except ValueError:  # closed by a refresh since the poll
            return
        if not recs:
            return
        arr = np.frombuffer(recs, dtype=RECORD)
        with self._lock:
            if self._pending_rows + len(arr) > self.cfg.max_pending_rows:
                self.counts["shed"] += len(arr)
                metrics.sampler_packets.labels("shed").inc(len(arr))
                return
            self._pending.append((port, arr, frames))
            self._pending_rows += len(arr)

    def _drain_all(self) -> None:
        with self._lock:
            rings = [(p, r) for p in self._ports.values() for r in p.rings]
        for p, ring in rings:
            self._drain(p, ring)

    def _loop(self) -> None:
        next_refresh = next_flush = time.monotonic()
        while not self._stop.wait(0.05):
            now = time.monotonic()
            if now >= next_refresh:
                self.refresh()
                next_refresh = now + self.cfg.poll_s
            if now >= next_flush:
                try:
                    self.flush()
                except Exception as e:  # one bad batch never stops the agent
                    self._error("publish", f"flush failed: {type(e).__name__}: {e}")
                next_flush = now + self.cfg.flush_interval_s

    # ---- batches -----------------------------------------------------------------------------------
    def flush(self) -> None:
        """Publish what was drained: the header rows, then the L7 conversations."""
        with self._lock:
            items, self._pending, self._pending_rows = self._pending, [], 0
            ports = list(self._ports.values())
        with self._stats_lock:
            for p in ports:
                self._collect_stats(p)
        if not items:
            return
        now_ms = int(time.time() * 1000)
        for kind, build in ((schema.PACKET_SAMPLES, self.sample_rows), (schema.L7, self.l7_rows)):
            try:
                self._publish(kind, build(items, now_ms))
            except Exception as e:  # the transport refused, or a batch no one foresaw: counted, not fatal
                lost = sum(len(a) for _, a, _ in items)
                self.counts["shed"] += lost
                metrics.sampler_packets.labels("shed").inc(lost)
                self._error("publish", f"{kind}: {lost} records lost: {type(e).__name__}: {e}")

    def _publish(self, kind: str, table: pa.Table | None) -> None:
        if table is None or not table.num_rows:
            return
        key = self.node.encode()
        for start in range(0, table.num_rows, MESSAGE_ROWS):
            part = table.slice(start, MESSAGE_ROWS).combine_chunks()
            for rb in part.to_batches():
                self.producer.send(rb, key)
        self.published[kind] += table.num_rows
        metrics.sampler_rows.labels(kind).inc(table.num_rows)

    def sample_rows(self, items: list[tuple[PodPort, np.ndarray, bytes]], now_ms: int) -> pa.Table:
        """The header rows of the sampled packets (flag bit 0) of ``items``."""
        parts = [(port, arr[(arr["sampled"] & 1) != 0]) for port, arr, _ in items]
        recs = np.concatenate([a for _, a in parts]) if parts else np.empty(0, RECORD)
        counts = [len(a) for _, a in parts]
        cols = _capture_columns([p for p, _ in parts], counts, self.node)
        cols.update(_header_columns(recs))
        n = len(recs)
        cols["time_received"] = np.full(n, now_ms, dtype=np.int64)
        cols["packet_time"] = recs["ts_ns"] // 1_000_000
        cols["direction"] = np.array(DIRECTIONS, dtype=object)[recs["direction"]]
        for name in ("tcp_flags", "tos", "ttl", "vlan", "etype", "wire_len", "payload_len"):
            cols[name] = recs[name]
        cols["payload_class"] = np.array(PAYLOAD_CLASSES, dtype=object)[np.minimum(recs["payload_class"], 5)]
        cols["sampling_rate"] = np.full(n, self.cfg.sampling_rate, dtype=np.uint32)
        cols["sampling_mode"] = np.full(n, self.cfg.sampling_mode, dtype=object)
        return _table(cols, schema.PACKET_SAMPLES)

    def l7_rows(self, items: list[tuple[PodPort, np.ndarray, bytes]], now_ms: int) -> pa.Table | None:
        """One row per conversation: the L7 candidates (flag bit 1) dissected by tshark, plus the
        payload classes of the sampled packets (plaintext or encrypted)."""
        budget, cand_parts, other_parts, frames = self.cfg.max_l7_frames_per_flush, [], [], []
        for port, arr, pcap in items:
            cand = arr[(arr["sampled"] & 2) != 0]
            if len(cand) and len(cand) <= budget:
                budget -= len(cand)
                cand_parts.append((port, cand))
                frames.append(pcap)
            elif len(cand):
                self.counts["shed"] += len(cand)
                metrics.sampler_packets.labels("shed").inc(len(cand))
            other = arr[((arr["sampled"] & 2) == 0) & (arr["payload_class"] > 0)]
            other_parts.append((port, other))
        summary = self._dissect(cand_parts, frames)
        if summary is None:
            cand_parts, summary = [], l7.summarise(l7.parse_fields(b""))
        parts = cand_parts + other_parts
        recs = np.concatenate([a for _, a in parts]) if parts else np.empty(0, RECORD)
        if not len(recs):
            return None
        n_cand = sum(len(a) for _, a in cand_parts)
        return self._conversations(parts, recs, n_cand, summary, now_ms)

    def _dissect(
        self, parts: list[tuple[PodPort, np.ndarray]], frames: list[bytes]
    ) -> dict[str, np.ndarray] | None:
        if not parts:
            return l7.summarise(l7.parse_fields(b""))
        recs = np.concatenate([a for _, a in parts])
        tls = recs["payload_class"] == 1
        http = recs["payload_class"] == 2
        ports = lambda m: np.unique(np.concatenate([recs["src_port"][m], recs["dst_port"][m]])).tolist()  # noqa: E731
        try:
            fields = l7.dissect(pcap_file(b"".join(frames), self.snaplen), ports(tls), ports(http))
        except l7.DissectError as e:
            self._error("dissect", str(e))
            return None
        if fields.num_rows != len(recs):
            self._error("dissect", f"tshark gave {fields.num_rows} rows for {len(recs)} frames")
            return None
        return l7.summarise(fields)

    def _conversations(
        self,
        parts: list[tuple[PodPort, np.ndarray]],
        recs: np.ndarray,
        n_cand: int,
        summary: dict[str, np.ndarray],
        now_ms: int,
    ) -> pa.Table:
        n = len(recs)
        s = {k: np.concatenate([v, np.zeros(n - n_cand, v.dtype) if v.dtype != object else np.full(n - n_cand, "", object)])
             for k, v in summary.items()}  # fmt: skip
        counts = [len(a) for _, a in parts]
        ports = list({p.ifname: p for p, _ in parts}.values())  # one group key per interface
        ids = {p.ifname: i for i, p in enumerate(ports)}
        port_idx = np.repeat(np.array([ids[p.ifname] for p, _ in parts], dtype=np.int64), counts)
        guessed = recs["src_port"] > recs["dst_port"]  # no L7 message: the higher port is the client's
        client = np.where(np.arange(n) < n_cand, s["client_side"], guessed)
        src, dst = _u64pair(recs["src_addr"]), _u64pair(recs["dst_addr"])
        df = pd.DataFrame(
            {
                "port": port_idx,
                "c0": np.where(client, src[:, 0], dst[:, 0]), "c1": np.where(client, src[:, 1], dst[:, 1]),
                "s0": np.where(client, dst[:, 0], src[:, 0]), "s1": np.where(client, dst[:, 1], src[:, 1]),
                "cport": np.where(client, recs["src_port"], recs["dst_port"]),
                "sport": np.where(client, recs["dst_port"], recs["src_port"]),
                "proto": recs["proto"],
                "ts": recs["ts_ns"] // 1_000_000,
                "enc": np.array([_ENC_RANK[c] for c in PAYLOAD_CLASSES])[np.minimum(recs["payload_class"], 5)],
                "qlen": np.array([len(q) for q in s["dns_qname"]], dtype=np.uint16),
            }
        )  # fmt: skip
        for k in (
            "l7_protocol",
            "dns_qname",
            "dns_answers",
            "tls_sni",
            "tls_version",
            "tls_cipher",
            "tls_alpn",
            "tls_ja3",
            "tls_ja4",
            "http_method",
            "http_host",
            "http_path",
        ):
            df[k] = pd.Series(s[k], dtype=object).replace("", None)
        df["dns_qtype"] = pd.Series(s["dns_qtype"]).where(s["dns_qtype"] > 0)
        df["dns_rcode"] = pd.Series(s["dns_rcode"]).where(s["dns_response"])
        df["http_status"] = pd.Series(s["http_status"]).where(s["http_status"] > 0)
        keys = ["port", "c0", "c1", "s0", "s1", "cport", "sport", "proto"]
        g = df.groupby(keys, sort=False)
        agg = g.first()
        agg["first_seen"], agg["last_seen"] = g["ts"].min(), g["ts"].max()
        agg["packets"], agg["enc"], agg["qlen"] = g.size(), g["enc"].max(), g["qlen"].max()
        agg = agg.reset_index()
        m = len(agg)
        used = agg["port"].to_numpy()
        cols = _capture_columns([ports[i] for i in used], [1] * m, self.node)
        cols["src_addr"] = _from_u64pair(agg["c0"].to_numpy(), agg["c1"].to_numpy())
        cols["dst_addr"] = _from_u64pair(agg["s0"].to_numpy(), agg["s1"].to_numpy())
        cols["src_port"], cols["dst_port"] = (
            agg["cport"].to_numpy(np.uint16),
            agg["sport"].to_numpy(np.uint16),
        )
        cols["proto"] = agg["proto"].to_numpy(np.uint8)
        cols["time_received"] = np.full(m, now_ms, dtype=np.int64)
        cols["first_seen"], cols["last_seen"] = agg["first_seen"].to_numpy(), agg["last_seen"].to_numpy()
        cols["packets"] = agg["packets"].to_numpy(np.uint32)
        cols["encryption"] = _ENC_NAMES[agg["enc"].to_numpy()]
        cols["dns_qname_length"] = agg["qlen"].to_numpy(np.uint16)
        for k in ("dns_qtype", "dns_rcode", "http_status"):
            cols[k] = agg[k].fillna(0).to_numpy(np.uint16)
        for k in (
            "l7_protocol",
            "dns_qname",
            "dns_answers",
            "tls_sni",
            "tls_version",
            "tls_cipher",
            "tls_alpn",
            "tls_ja3",
            "tls_ja4",
            "http_method",
            "http_host",
            "http_path",
        ):
            cols[k] = agg[k].fillna("").to_numpy(object)
        for k in ("dns_qname", "tls_sni", "http_host"):
            cols[k] = self.privacy.apply(cols[k], cols["capture_namespace"])
        return _table(cols, schema.L7)

    # ---- counters ---------------------------------------------------------------------------------
    def _collect_stats(self, p: _Port) -> None:
        """Add what the port's rings counted since the last read to the agent's counts."""
        while len(p.seen) < len(p.rings):
            p.seen.append({})
        for r, prev in zip(p.rings, p.seen, strict=True):
            try:
                st = r.stats()
            except ValueError:  # closed
                continue
            for k in ("seen", "sampled", "l7", "capped", "l7_capped"):
                d = st[k] - prev.get(k, 0)
                prev[k] = st[k]
                self.counts[k] += d
                if d > 0:
                    metrics.sampler_packets.labels(k).inc(d)
            self.counts["kernel_drops"] += st["kernel_drops"]  # the kernel resets these on each read
            if st["kernel_drops"]:
                metrics.sampler_packets.labels("kernel_drops").inc(st["kernel_drops"])

    def _error(self, reason: str, message: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1
        metrics.sampler_errors.labels(reason).inc()
        log.error("sampler: %s", message)


def _capture_columns(ports: list[PodPort], counts: list[int], node: str) -> dict[str, np.ndarray]:
    n = int(sum(counts))
    rep = lambda values: np.repeat(np.array(values, dtype=object), counts) if ports else np.empty(0, object)  # noqa: E731
    return {
        "agent": np.full(n, node, dtype=object),
        "capture_if": rep([p.ifname for p in ports]),
        "capture_pod": rep([p.pod for p in ports]),
        "capture_namespace": rep([p.namespace for p in ports]),
    }


def _header_columns(recs: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "src_addr": np.ascontiguousarray(recs["src_addr"]),
        "dst_addr": np.ascontiguousarray(recs["dst_addr"]),
        "src_port": recs["src_port"],
        "dst_port": recs["dst_port"],
        "proto": recs["proto"],
    }


def _u64pair(addrs: np.ndarray) -> np.ndarray:
    return np.frombuffer(np.ascontiguousarray(addrs).tobytes(), dtype="<u8").reshape(-1, 2)


def _from_u64pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pair = np.stack([a.astype("<u8"), b.astype("<u8")], axis=1)
    return np.frombuffer(np.ascontiguousarray(pair).tobytes(), dtype="V16")


def _table(cols: dict[str, np.ndarray], kind: str) -> pa.Table:
    """The batch of ``kind`` (enrichment columns empty, filled by the pipeline)."""
    columns = schema.KINDS[kind][0]
    n = len(next(iter(cols.values())))
    arrays = [arrow_array(c, cols.get(c.name), n) for c in columns]
    return conform(pa.Table.from_arrays(arrays, schema=schema.arrow_schema(columns, kind)), kind)


__all__ = ["SampleAgent"]
