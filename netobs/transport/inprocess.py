"""In-process transport for the embedded mode: a bounded queue with backpressure.

Batches travel as Arrow record batches without serialisation. When the queue is full
``send`` blocks (up to ``block_s``), which slows the collector's publish loop until the
pipeline catches up; the collector counts what it then has to drop. Nothing survives
the process.

With a :class:`~netobs.transport.spool.Spool` (the default, ``transport.spool``) the queue is
the spool itself: a batch is on disk when ``send`` returns, the pipeline reads it from
there and acknowledges it once inserted, and a restarted process replays what was not.
Positions are ``(spool id, 0, record number)``, so the pipeline's batches carry
deduplication tokens and record their range (:meth:`_SpoolConsumer.commit_plan`) as they
do on Kafka: a batch replayed after a crash is the same batch, dropped as a duplicate.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Callable

import pyarrow as pa

from netobs import schema, wire
from netobs.config import InprocessTransportConfig
from netobs.transport import metrics
from netobs.transport.base import Message, TransportError
from netobs.transport.spool import Spool


class InprocessTransport:
    def __init__(self, config: InprocessTransportConfig, block_s: float = 30.0, spool: Spool | None = None):
        self._queue: queue.Queue[pa.RecordBatch] = queue.Queue(maxsize=config.max_batches)
        self._block_s = block_s
        self.closed = False
        self.spool = spool

    def producer(self) -> _Producer | _SpoolProducer:
        return _SpoolProducer(self.spool) if self.spool is not None else _Producer(self)

    def consumer(self) -> _Consumer | _SpoolConsumer:
        return _SpoolConsumer(self.spool) if self.spool is not None else _Consumer(self)

    def depth(self) -> int:
        return self.spool.depth() if self.spool is not None else self._queue.qsize()

    def close(self) -> None:
        self.closed = True
        if self.spool is not None:
            self.spool.close()


class _Producer:
    def __init__(self, transport: InprocessTransport):
        self._t = transport

    def send(self, rb: pa.RecordBatch, key: bytes) -> None:
        if self._t.closed:
            raise TransportError("in-process transport is closed")
        try:
            self._t._queue.put(rb, timeout=self._t._block_s)
        except queue.Full:
            raise TransportError(
                f"in-process queue full for {self._t._block_s}s (pipeline stalled?)"
            ) from None

    def flush(self, timeout_s: float = 30.0) -> None:
        pass

    def close(self) -> None:
        pass


class _Consumer:
    def __init__(self, transport: InprocessTransport):
        self._t = transport
        self._paused = False

    def pause(self) -> None:
        """Leave batches in the queue (producers then block): the pipeline's buffer is full."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def poll(self, timeout_s: float, max_messages: int = 100) -> list[Message]:
        out: list[Message] = []
        if self._paused:
            time.sleep(timeout_s)
            return out
        try:
            item = self._t._queue.get(timeout=timeout_s)
        except queue.Empty:
            return out
        while True:
            out.append(Message(pa.Table.from_batches([item])))
            if len(out) >= max_messages:
                break
            try:
                item = self._t._queue.get_nowait()
            except queue.Empty:
                break
        return out

    def depth(self) -> int:
        return self._t.depth()

    def commit(self) -> None:
        pass  # nothing to commit: a batch leaves the queue when the pipeline takes it

    def close(self) -> None:
        self._t.closed = True


class _SpoolProducer:
    """Every batch is appended to the spool (what does not fit is dropped there, counted)."""

    def __init__(self, spool: Spool):
        self.spool = spool

    def send(self, rb: pa.RecordBatch, key: bytes) -> None:
        kind = schema.kind_of(rb)
        if self.spool.append(key, wire.encode(rb), rb.num_rows, kind):
            metrics.delivered.labels(kind).inc(rb.num_rows)

    def flush(self, timeout_s: float = 30.0) -> None:
        pass

    def close(self) -> None:
        pass


class _SpoolConsumer:
    """Reads the spool in order; ``commit_offsets`` acknowledges, ``commit_plan`` records a batch."""

    def __init__(self, spool: Spool):
        self.spool = spool
        self.topic = _spool_id(spool)
        self._paused = False
        self._assigned: Callable[[dict[tuple[str, int], tuple[int, int] | None]], None] | None = None

    def set_rebalance_handler(self, revoked: Callable[..., None], assigned: Callable[..., None]) -> None:
        """Only ``assigned`` is called, once, at the first poll: the batch a crash left in flight."""
        self._assigned = assigned

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def poll(self, timeout_s: float, max_messages: int = 100) -> list[Message]:
        if self._assigned is not None:
            assigned, self._assigned = self._assigned, None
            assigned({(self.topic, 0): _parse_plan(self.spool.plan(), self.spool.acked)})
        if self._paused:
            time.sleep(timeout_s)
            return []
        out = []
        for rec in self.spool.read(max_messages, timeout_s):
            pos = (self.topic, 0, rec.seq)
            try:
                out.append(Message(wire.decode(rec.value), pos))
            except wire.WireError as e:
                out.append(Message(None, pos, error=str(e), raw=rec.value))
        return out

    def commit_offsets(self, offsets: dict[tuple[str, int], tuple[int, str]]) -> None:
        for (_, _), (offset, _) in offsets.items():
            self.spool.ack(offset)

    def commit_plan(self, topic: str, partition: int, first: int, last: int) -> None:
        self.spool.ack(first, plan=f"{first}-{last}")

    def commit(self) -> None:
        pass  # acknowledgements go by position (commit_offsets)

    def depth(self) -> int:
        return self.spool.depth()

    def close(self) -> None:
        pass  # the runtime closes the spool after the pipeline stopped


def _spool_id(spool: Spool) -> str:
    """A name for this spool's records that no other spool (a wiped directory) ever had, so that
    deduplication tokens of new records never match old ones."""
    path = spool.directory / "id"
    try:
        return path.read_text().strip()
    except OSError:
        name = f"spool-{uuid.uuid4().hex[:12]}"
        path.write_text(name + "\n")
        return name


def _parse_plan(plan: str, acked: int) -> tuple[int, int] | None:
    try:
        first, last = (int(x) for x in plan.split("-"))
    except ValueError:
        return None
    return (first, last) if first == acked and last >= first else None
