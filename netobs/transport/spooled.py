"""A producer that never loses a batch the spool can hold.

Batches go straight to the transport while it takes them. What it refuses (``send``
raising), fails to deliver later (a Kafka delivery timeout: the broker was away longer than
``delivery_timeout_ms``), or what would grow the unacknowledged backlog past
``max_inflight_bytes`` (kafka-python ignores ``buffer_memory``) goes to the
:class:`~netobs.transport.spool.Spool`. While anything is spooled, new batches queue behind
it, and a replay thread hands the spool back to the transport in order, forgetting records
only once the transport confirmed them. A record the transport confirmed after one before it
failed is remembered and not sent again when the replay resumes (in memory: a process that
dies between the two may send it twice).

What no producer can tell is whether a message that timed out in flight (the broker stopped
after storing it, before answering) was stored: such a message is spooled and replayed, and
may arrive twice, as may one the Kafka client retried after a lost answer (unless
``transport.kafka.idempotent``). Every message carries an id (:class:`netobs.wire.MessageIds`)
from before its first send, through the spool, so the pipeline inserts such a copy once
(:mod:`pipeline.duplicates`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import pyarrow as pa

from netobs import schema, wire
from netobs.transport import metrics
from netobs.transport.base import TransportError
from netobs.transport.spool import Spool

log = logging.getLogger(__name__)

Done = Callable[[BaseException | None], None]


class RawProducer(Protocol):
    """A transport producer that takes encoded messages and reports each one's fate."""

    def encode(
        self, rb: pa.RecordBatch, ids: Callable[[], bytes] | None = None
    ) -> list[tuple[bytes, int]]: ...
    def send_bytes(self, value: bytes, key: bytes, done: Done) -> None: ...
    def flush(self, timeout_s: float = 30.0) -> None: ...
    def close(self) -> None: ...


class SpooledProducer:
    """``send``/``flush``/``close`` like any producer; ``start()`` runs the replay thread."""

    def __init__(
        self,
        make_inner: Callable[[], RawProducer],
        spool: Spool,
        max_inflight_bytes: int = 64 << 20,
        replay_chunk: int = 64,
        delivery_timeout_s: float = 120.0,
    ):
        self._make_inner = make_inner
        self.spool = spool
        self.max_inflight_bytes = max_inflight_bytes
        self.replay_chunk = replay_chunk
        self.delivery_timeout_s = delivery_timeout_s
        self._inner: RawProducer | None = None
        self._lock = threading.Lock()
        self._inflight_bytes = 0
        self._up = False
        self.reason = ""  # why the transport is considered down
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0  # rows the transport confirmed
        self.spooled = 0  # rows that went to the spool
        #: Spool sequence numbers the transport confirmed while one before them failed: the spool
        #: can only forget a prefix, so these are skipped, not sent again, when the replay resumes.
        self._confirmed: set[int] = set()
        #: Every message gets an id (:class:`netobs.wire.MessageIds`) before it is first sent, and
        #: keeps it through the spool: a copy of one that was stored after all is known as one.
        self._ids = wire.MessageIds()
        try:
            self._inner = make_inner()
            self._up = True
        except TransportError as e:
            self._down(str(e))

    @property
    def up(self) -> bool:
        return self._up

    @property
    def inflight_bytes(self) -> int:
        """Bytes handed to the transport whose fate is not known yet."""
        return self._inflight_bytes

    def start(self) -> None:
        self._thread = threading.Thread(target=self._replay_loop, name="spool-replay", daemon=True)
        self._thread.start()

    # ---- sending -----------------------------------------------------------------------------
    def send(self, rb: pa.RecordBatch, key: bytes) -> None:
        kind = schema.kind_of(rb)
        inner = self._inner
        ids = lambda: self._ids.next(key)  # noqa: E731
        parts = inner.encode(rb, ids) if inner is not None else _encode(rb, ids)
        for value, rows in parts:
            self._send(value, key, rows, kind)

    def _send(self, value: bytes, key: bytes, rows: int, kind: str) -> None:
        with self._lock:
            inner = self._inner
            direct = (
                self._up
                and inner is not None
                and self.spool.depth() == 0
                and self._inflight_bytes + len(value) <= self.max_inflight_bytes
            )
            if direct:
                self._inflight_bytes += len(value)
        if not direct or inner is None:
            self._spool(value, key, rows, kind)
            return
        try:
            inner.send_bytes(value, key, self._callback(value, key, rows, kind))
        except TransportError as e:
            self._release(len(value))
            self._down(str(e))
            self._spool(value, key, rows, kind)

    def _callback(self, value: bytes, key: bytes, rows: int, kind: str) -> Done:
        def done(exc: BaseException | None) -> None:
            self._release(len(value))
            if exc is None:
                self.delivered += rows
                metrics.delivered.labels(kind).inc(rows)
                return
            self._down(f"delivery failed: {exc}")
            self._spool(value, key, rows, kind)

        return done

    def _release(self, n: int) -> None:
        with self._lock:
            self._inflight_bytes -= n

    def _spool(self, value: bytes, key: bytes, rows: int, kind: str) -> None:
        if self.spool.append(key, value, rows, kind):
            self.spooled += rows
            metrics.spooled.labels(kind).inc(rows)
        self._wake.set()

    def _down(self, reason: str) -> None:
        if self._up or not self.reason:
            log.warning(
                "transport unavailable (%s): batches go to the spool %s", reason, self.spool.directory
            )
        self._up = False
        self.reason = reason

    # ---- replay ------------------------------------------------------------------------------
    def _replay_loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            self._wake.wait(backoff if not self._up else 1.0)
            self._wake.clear()
            self.spool.expire()
            if self.spool.depth() == 0:
                if self._inner is not None and not self._up and self._inflight_bytes == 0:
                    self._up = True  # nothing spooled, nothing failing: try the transport directly again
                continue
            try:
                ok = self.replay_once()
            except Exception as e:  # a bug here must not end replay for good
                log.exception("spool replay failed")
                self._down(f"replay: {type(e).__name__}: {e}")
                ok = False
            if ok:
                backoff = 0.5
                self._wake.set()  # more to replay: go on at once
            else:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def replay_once(self) -> bool:
        """Hand the oldest spooled records to the transport; True when all were confirmed."""
        if self._inner is None:
            try:
                self._inner = self._make_inner()
            except TransportError as e:
                self._down(str(e))
                return False
        records = self.spool.peek(self.replay_chunk)
        if not records:
            return True
        results: list[BaseException | None | bool] = [False] * len(records)
        finished = threading.Semaphore(0)

        def done_at(i: int) -> Done:
            def done(exc: BaseException | None) -> None:
                results[i] = exc
                finished.release()

            return done

        sent = 0
        for i, rec in enumerate(records):
            if rec.seq in self._confirmed:
                results[i] = None
                continue
            try:
                self._inner.send_bytes(rec.value, rec.key, done_at(i))
                sent += 1
            except TransportError as e:
                results[i] = e
                break
        # Wait for every answer (the producer's linger sends them), in slices so that close()
        # need not wait out a delivery timeout.
        deadline = time.monotonic() + self.delivery_timeout_s + 5
        answered = 0
        while answered < sent and time.monotonic() < deadline and not self._stop.is_set():
            if finished.acquire(timeout=0.2):
                answered += 1
        ok = 0
        for res in results:
            if res is not None:
                break
            ok += 1
        for rec, res in zip(records, results, strict=True):
            if res is None and rec.seq not in self._confirmed:
                self.delivered += rec.rows
                metrics.delivered.labels(rec.kind).inc(rec.rows)
                metrics.replayed.labels(rec.kind).inc(rec.rows)
                self._confirmed.add(rec.seq)
        if ok:
            self.spool.ack(records[0].seq + ok)
            self._confirmed.difference_update(rec.seq for rec in records[:ok])
        if ok < len(records):
            first_error = next((r for r in results if r is not None and r is not False), "no answer in time")
            self._down(f"replay failed: {first_error}")
            return False
        if not self._up:
            log.warning("transport is back: replaying %d spooled records", self.spool.depth())
        self._up = True
        self.reason = ""
        return True

    # ---- lifecycle ---------------------------------------------------------------------------
    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for what is in flight; what is spooled stays there (replayed after a restart)."""
        if self._inner is not None:
            self._inner.flush(timeout_s)
        depth = self.spool.depth()
        if depth:
            log.warning(
                "%d records stay in the spool %s until the transport takes them", depth, self.spool.directory
            )

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.delivery_timeout_s + 10)
        if self._inner is not None:
            self._inner.close()
        self.spool.close()


def _encode(rb: pa.RecordBatch, ids: Callable[[], bytes] | None = None) -> list[tuple[bytes, int]]:
    return encode_parts(rb, 900_000, ids)


def encode_parts(
    rb: pa.RecordBatch, max_bytes: int, ids: Callable[[], bytes] | None = None
) -> list[tuple[bytes, int]]:
    """``rb`` as wire messages of at most ``max_bytes`` (halved until they fit), with their row
    counts; each message with an id from ``ids`` when given (drawn once the message fits)."""
    data = wire.encode(rb)
    if len(data) > max_bytes and rb.num_rows > 1:
        half = rb.num_rows // 2
        return encode_parts(rb.slice(0, half), max_bytes, ids) + encode_parts(rb.slice(half), max_bytes, ids)
    if ids is not None:
        data = wire.with_id(data, ids())
    return [(data, rb.num_rows)]
