"""The pipeline: consume flow batches from the transport and insert them into the store.

Offsets are committed only after the insert that holds their rows succeeded, so a
crash or a store outage loses nothing: the rows are re-read from the transport. While
the store is unavailable the pipeline keeps its buffer, stops polling (backpressure)
and retries with backoff.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

import pyarrow as pa

from netobs import schema
from netobs.config import PipelineConfig
from netobs.store import Store, StoreError, StoreUnavailable
from netobs.transport import Consumer, Message, TransportError
from pipeline import metrics

log = logging.getLogger(__name__)

_TARGET = schema.arrow_schema()


class Pipeline:
    """Consume → insert → commit, in one background thread. Constructed inert."""

    def __init__(self, config: PipelineConfig, consumer: Consumer, store: Store, drain: bool = False):
        self.config = config
        #: On stop, take everything still in the transport first (the in-process queue
        #: would otherwise lose it; Kafka keeps uncommitted messages anyway).
        self.drain = drain
        self.consumer = consumer
        self.store = store
        self._buffer: list[Message] = []
        self._rows = 0
        self._oldest = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rows_inserted = 0
        self.bad_messages = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Drain what was polled, insert it, commit, and stop."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout_s)
        self.consumer.close()

    def _run(self) -> None:
        backoff = 0.5
        while True:
            stopping = self._stop.is_set()
            try:
                if not stopping or (self.drain and self._poll_more()):
                    self._poll()
                if self._buffer and (stopping or self._due()):
                    self.flush()
                backoff = 0.5
            except StoreUnavailable as e:
                metrics.insert_failures.inc()
                log.warning("store unavailable, keeping %d rows: %s", self._rows, e)
                if stopping:
                    log.error(
                        "stopping with %d rows not inserted; they stay uncommitted in the transport",
                        self._rows,
                    )
                    return
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            except TransportError as e:
                log.warning("transport: %s", e)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            if stopping and not self._buffer and not (self.drain and self._poll_more()):
                return

    def _poll_more(self) -> bool:
        depth = getattr(self.consumer, "depth", None)
        return bool(depth and depth() > 0)

    def _due(self) -> bool:
        full = self._rows >= self.config.max_batch_rows
        late = time.monotonic() - self._oldest >= self.config.max_batch_delay_ms / 1000
        return full or late

    def _poll(self) -> None:
        if self._rows >= self.config.max_batch_rows:
            return  # backpressure: insert what we hold first
        timeout = min(0.2, self.config.max_batch_delay_ms / 1000)
        for msg in self.consumer.poll(timeout):
            metrics.consumed.inc()
            if msg.table is None:
                self.bad_messages += 1
                metrics.bad_messages.labels(reason="undecodable").inc()
                log.error("unreadable message at %s: %s", msg.position, msg.error)
                continue
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(msg)
            self._rows += msg.table.num_rows
        metrics.buffered_rows.set(self._rows)

    def flush(self) -> None:
        """Insert the buffered rows in one statement, then commit the transport."""
        tables = [_conform(m.table) for m in self._buffer if m.table is not None]
        table = pa.concat_tables(tables) if tables else None
        if table is not None and table.num_rows:
            started = time.perf_counter()
            try:
                self.store.insert(table, token=_token(self._buffer))
            except StoreUnavailable:
                raise
            except StoreError as e:
                # A batch the store refuses outright would block the pipeline forever.
                metrics.bad_messages.labels(reason="rejected_by_store").inc(len(self._buffer))
                self.bad_messages += len(self._buffer)
                log.error("store rejected %d rows: %s", table.num_rows, e)
            else:
                metrics.insert_latency.observe(time.perf_counter() - started)
                metrics.rows_inserted.inc(table.num_rows)
                self.rows_inserted += table.num_rows
        self.consumer.commit()
        self._buffer.clear()
        self._rows = 0
        metrics.buffered_rows.set(0)


def _conform(table: pa.Table) -> pa.Table:
    """Reorder/fill a batch to the current schema (older producers may lack new columns)."""
    if table.schema.equals(_TARGET, check_metadata=False):
        return table
    from netobs.batch import FlowBatch

    return pa.Table.from_batches([FlowBatch.from_arrow(table).to_arrow()])


def _token(messages: list[Message]) -> str | None:
    """A deduplication token naming exactly the transport positions inserted."""
    positions = sorted(m.position for m in messages if m.position is not None)
    if not positions:
        return None
    return hashlib.sha256(repr(positions).encode()).hexdigest()[:32]
