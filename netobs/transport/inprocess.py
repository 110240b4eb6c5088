"""In-process transport for the embedded mode: a bounded queue with backpressure.

Batches travel as Arrow record batches without serialisation. When the queue is full
``send`` blocks (up to ``block_s``), which slows the collector's publish loop until the
pipeline catches up; the collector counts what it then has to drop. Nothing survives
the process: the embedded mode trades durability for having no servers.
"""

from __future__ import annotations

import queue
import time

import pyarrow as pa

from netobs.config import InprocessTransportConfig
from netobs.transport.base import Message, TransportError


class InprocessTransport:
    def __init__(self, config: InprocessTransportConfig, block_s: float = 30.0):
        self._queue: queue.Queue[pa.RecordBatch] = queue.Queue(maxsize=config.max_batches)
        self._block_s = block_s
        self.closed = False

    def producer(self) -> _Producer:
        return _Producer(self)

    def consumer(self) -> _Consumer:
        return _Consumer(self)

    def depth(self) -> int:
        return self._queue.qsize()


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
