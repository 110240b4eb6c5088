"""The pipeline: consume flow batches from the transport and insert them into the store.

Exactly once in effect: each insert holds a contiguous offset range of one partition
(:mod:`pipeline.delivery`), carries a deduplication token naming that range, and its
offsets are committed only after it succeeded. A crash replays the same batch, which the
store drops as a duplicate. While the buffer is full or the store is down the consumer
is paused but keeps polling, so it stays in its group (backpressure without eviction).
Messages that cannot be processed go to the dead-letter destination with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from netobs import ddl, schema, sortkey, wire
from netobs.batch import conform
from netobs.store import Store, StoreError, StoreUnavailable, validate
from netobs.transport import Consumer, Message, TransportError
from netobs.transport.capabilities import Capabilities
from netobs.transport.deadletter import DeadLetters, DirectoryDeadLetters
from pipeline import metrics
from pipeline.config import PipelineConfig
from pipeline.delivery import Batch, Batcher
from pipeline.duplicates import SeenMessages

log = logging.getLogger(__name__)


@dataclass
class _Job:
    """A batch prepared on the pipeline thread for the inserter thread."""

    batch: Batch
    #: (kind, table ready to insert, the messages it holds)
    tables: list[tuple[str, pa.Table, list[Message]]] = field(default_factory=list)
    bad: list[tuple[Message, str, str]] = field(default_factory=list)
    #: rows set aside (their own message each: the rows, the source position), reason, error
    quarantined: list[tuple[Message, str, str]] = field(default_factory=list)
    future: Future[list[tuple[Message, str, str]]] | None = None


class Pipeline:
    """Consume → (transform) → insert → commit in a background thread, inserts in a second one.

    Constructed inert."""

    def __init__(
        self,
        config: PipelineConfig,
        consumer: Consumer,
        store: Store,
        drain: bool = False,
        transform: Callable[[pa.Table], pa.Table] | None = None,
        dead_letters: DeadLetters | None = None,
        counter_transform: Callable[[pa.Table], pa.Table] | None = None,
        sample_transform: Callable[[pa.Table], pa.Table] | None = None,
    ):
        self.config = config
        #: On stop, take everything still in the transport first (the in-process queue
        #: would otherwise lose it; Kafka keeps uncommitted messages anyway).
        self.drain = drain
        self.consumer = consumer
        #: What the consumer offers beyond poll/commit/close, read once here.
        self.capabilities = Capabilities.of(consumer)
        self.store = store
        #: Applied to each batch before its insert (enrichment); must be deterministic, or a
        #: replayed batch would not be recognised as a duplicate on servers without tokens.
        self.transform = transform
        #: The same for interface counter batches (names the exporter's node and center).
        self.counter_transform = counter_transform
        #: The same for pod packet samples and L7 conversations (both ends named).
        self.sample_transform = sample_transform
        self.dead_letters = dead_letters
        self._batcher = Batcher(config.max_batch_rows)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._paused = False
        self._retry_at = 0.0
        self._backoff = 0.5
        self.rows_inserted = 0
        self.counters_inserted = 0
        self.samples_inserted: dict[str, int] = {}  # pod packet samples and L7 rows, by kind
        #: One insert at a time runs here, while this pipeline's thread polls and prepares the
        #: next batch (the embedded store and the driver release the GIL while they work).
        self._inserter = ThreadPoolExecutor(1, thread_name_prefix="pipeline-insert")
        self._inflight: _Job | None = None
        self.bad_messages = 0
        self.dead_lettered = 0
        self.quarantined_rows = 0
        self.rows_deduplicated = 0  # rows the store dropped as duplicates (replays; identical blocks)
        #: Message ids taken (:mod:`pipeline.duplicates`); copies of them are not inserted.
        self._seen = SeenMessages()
        self.duplicate_rows = 0  # rows of copies not inserted
        #: Why the last insert or commit failed, until one succeeds ("" while all is well).
        self.store_error = ""
        if self.capabilities.partitioned is not None:
            self.capabilities.partitioned.set_rebalance_handler(self._revoked, self._assigned)

    def start(self) -> None:
        if self.dead_letters is None and self.capabilities.dead_lettering is not None:
            self.dead_letters = self.capabilities.dead_lettering.dead_letters()
        if self.dead_letters is None and self.config.dead_letter_dir is not None:
            self.dead_letters = DirectoryDeadLetters(self.config.dead_letter_dir)
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Insert and commit what was polled, and stop."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout_s)
        self._inserter.shutdown(wait=False)  # idle unless the join timed out mid-insert
        self.consumer.close()
        if self.dead_letters is not None:
            self.dead_letters.close()

    # ---- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            try:
                if not stopping or (self.drain and self._poll_more()):
                    self._poll()
                if stopping or time.monotonic() >= self._retry_at:
                    self._flush_ready(everything=stopping)
                    self._backoff = 0.5
            except (StoreUnavailable, TransportError) as e:
                if isinstance(e, StoreUnavailable):
                    metrics.insert_failures.labels(category=e.category).inc()
                self.store_error = f"{type(e).__name__}: {e}"
                log.warning(
                    "%s; keeping %d buffered rows, retry in %.1fs", e, self._batcher.rows, self._backoff
                )
                if stopping:
                    log.error("stopping with %d rows not inserted; they stay uncommitted", self._batcher.rows)
                    return
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, 30.0)
            if stopping and not (self.drain and self._poll_more()):
                return

    def _poll_more(self) -> bool:
        queued = self.capabilities.queued
        return queued is not None and queued.depth() > 0

    def _buffer_full(self) -> bool:
        return self._batcher.rows >= self.config.max_buffered_rows

    def _poll(self) -> None:
        timeout = min(0.2, self.config.max_batch_delay_ms / 1000)
        blocked = self._buffer_full() or time.monotonic() < self._retry_at
        if blocked != self._paused:
            self._set_paused(blocked)
        if blocked and self.capabilities.pausable is None:
            time.sleep(timeout)  # a consumer that cannot pause: just do not take more
            return
        for msg in self.consumer.poll(timeout):
            metrics.consumed.inc()
            if msg.table is None:
                self.bad_messages += 1
                metrics.bad_messages.labels(reason="undecodable").inc()
                log.error("unreadable message at %s: %s", msg.position, msg.error)
            else:
                mid = wire.message_id(msg.table)
                if mid is not None and self._seen.seen(*mid):
                    msg.duplicate = True
                    self.duplicate_rows += msg.table.num_rows
                    metrics.duplicate_messages.inc()
                    metrics.duplicate_rows.inc(msg.table.num_rows)
                    log.info(
                        "message %s:%d at %s was taken before: not inserted again",
                        mid[0].hex(),
                        mid[1],
                        msg.position,
                    )
            self._batcher.add(msg)
        metrics.buffered_rows.set(self._batcher.rows)

    def _set_paused(self, paused: bool) -> None:
        """Pause consumption but keep polling: a Kafka consumer that stops polling for longer
        than max_poll_interval_ms is evicted from its group and its partitions rebalanced."""
        pausable = self.capabilities.pausable
        if pausable is not None and paused:
            pausable.pause()
        elif pausable is not None:
            pausable.resume()
        self._paused = paused
        metrics.paused.set(int(paused))

    def _revoked(self, keys: list[tuple[str, int]]) -> None:
        if not keys:
            return
        self._settle_before_rebalance()
        self._forget(keys)
        dropped = self._batcher.drop(keys)
        metrics.dropped_on_rebalance.inc(dropped)
        log.info("partitions revoked: %s; dropped %d uncommitted buffered rows", keys, dropped)

    def _assigned(self, plans: dict[tuple[str, int], tuple[int, int] | None]) -> None:
        self._settle_before_rebalance()
        self._forget(list(plans))
        self._batcher.drop(list(plans))
        self._batcher.set_plans({k: v for k, v in plans.items() if v is not None})
        self._paused = False  # a fresh assignment is not paused
        replays = {f"{t}:{p}": v for (t, p), v in plans.items() if v is not None}
        log.info("partitions assigned: %s; recorded batches to replay: %s", sorted(plans), replays or "none")

    def _forget(self, keys: list[tuple[str, int]]) -> None:
        """Messages buffered but not inserted, about to be dropped (and polled again, here or by
        another replica), are no longer taken: their ids are forgotten."""
        for msg in self._batcher.messages(keys):
            mid = wire.message_id(msg.table) if msg.table is not None and not msg.duplicate else None
            if mid is not None:
                self._seen.forget(*mid)

    # ---- delivery ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Insert and commit everything buffered now."""
        self._flush_ready(everything=True)

    def _flush_ready(self, everything: bool) -> None:
        """Hand the ready batches to the inserter thread, one in flight at a time.

        The next batch is prepared here (columns conformed, transform, sorted by the table's
        key) while the previous one is being inserted; offsets are committed here, in the
        consumer's thread, once an insert is over, and the next batch is handed over (its
        range recorded) only then, so batches of one partition go strictly in order.
        """
        delay = self.config.max_batch_delay_ms / 1000
        self._settle(wait=False)
        # A full buffer pauses consumption: waiting for batches to fill (or to age) would then
        # only stall, so the oldest go now, full or not.
        while (batch := self._batcher.next_ready(delay, everything or self._buffer_full())) is not None:
            job = self._prepare(batch)
            self._settle(wait=True)  # raises if the previous insert failed: this one waits
            self._record_range(batch)
            batch.inflight = True
            job.future = self._inserter.submit(self._insert_job, job)
            self._inflight = job
        if everything:
            self._settle(wait=True)

    def _record_range(self, batch: Batch) -> None:
        """Record the batch's range in the transport: a crash from here on replays exactly
        this batch. Only once the batch before it in its partition is committed, because
        the record moves the partition's committed offset to this batch's start."""
        if batch.key is not None and not batch.planned:
            partitioned = self.capabilities.partitioned
            if partitioned is not None:
                partitioned.commit_plan(batch.key[0], batch.key[1], batch.first, batch.last)
        batch.planned = True

    def _prepare(self, batch: Batch) -> _Job:
        """The tables to insert, one per record kind; unreadable messages go aside. Runs
        while the previous batch (possibly of the same partition) is being inserted."""
        job = _Job(batch, bad=[(m, "unreadable", m.error or "") for m in batch.messages if m.table is None])
        if not batch.rows:
            return job
        by_kind: dict[str, list[Message]] = {}
        for m in batch.messages:
            if m.table is not None and not m.duplicate:
                by_kind.setdefault(schema.kind_of(m.table), []).append(m)
        for kind, msgs in by_kind.items():
            if kind not in ddl.TABLES:
                job.bad += [(m, "unknown_kind", f"record kind {kind!r} has no table here") for m in msgs]
            elif kind not in batch.inserted:
                self._prepare_kind(job, kind, msgs)
        return job

    def _prepare_kind(self, job: _Job, kind: str, msgs: list[Message]) -> None:
        tables: list[pa.Table] = []
        readable: list[Message] = []
        for m in msgs:  # a message whose columns cannot be read as this kind goes aside alone
            try:
                assert m.table is not None
                tables.append(conform(m.table, kind))
                readable.append(m)
            except (pa.ArrowException, ValueError, KeyError, TypeError) as e:
                log.error("unreadable %s columns at %s: %s", kind, m.position, e)
                job.bad.append((m, "unreadable_columns", f"{type(e).__name__}: {e}"))
        if not tables:
            return
        table = pa.concat_tables(tables)
        table = self._set_aside(job, table, readable)
        if not table.num_rows:
            return
        try:
            transform = {
                schema.FLOWS: self.transform,
                schema.COUNTERS: self.counter_transform,
            }.get(kind, self.sample_transform)
            if transform is not None:
                table = transform(table)
        except Exception as e:  # a transform that cannot handle this batch
            log.exception("transform failed on %d %s rows of %s", len(readable), kind, job.batch.key)
            job.bad += [(m, "transform_failed", f"{type(e).__name__}: {e}") for m in readable]
            return
        spec = ddl.TABLES[kind]
        try:
            modern = getattr(self.store, "dialect", "modern") == "modern"
            table = sortkey.presort(table, spec.order_by if modern else spec.legacy_order_by)
        except Exception:  # an optimisation only: the store sorts what arrives unsorted
            log.exception(
                "could not sort %d %s rows of %s; inserting them as they are",
                table.num_rows,
                kind,
                job.batch.key,
            )
        job.tables.append((kind, table, readable))

    def _set_aside(self, job: _Job, table: pa.Table, msgs: list[Message]) -> pa.Table:
        """``table`` without the rows :mod:`netobs.store.validate` finds invalid; those go to
        ``job.quarantined``, grouped by the message they came in (``table`` is ``msgs``' rows
        in order) and reason."""
        invalid = validate.check(table)
        if not invalid:
            return table
        keep = np.ones(table.num_rows, dtype=bool)
        ends = np.cumsum([m.table.num_rows if m.table is not None else 0 for m in msgs])
        for inv in invalid:
            rows = np.flatnonzero(inv.mask & keep)
            keep[rows] = False
            owners = np.searchsorted(ends, rows, side="right")
            for owner in np.unique(owners):
                part = table.take(pa.array(rows[owners == owner]))
                job.quarantined.append((Message(part, msgs[owner].position), inv.reason, inv.detail))
            log.error("%s rows of %s set aside: %s", len(rows), job.batch.key, inv.detail)
        return table.filter(pa.array(keep))

    def _insert_job(self, job: _Job) -> list[tuple[Message, str, str]]:
        """On the inserter thread: insert each kind (same token: deduplication is per table);
        the messages the store refused (rows it refused go to ``job.quarantined``). Raises
        when the store is unavailable."""
        bad: list[tuple[Message, str, str]] = []
        for kind, table, msgs in job.tables:
            if kind in job.batch.inserted:
                continue
            started = time.perf_counter()
            target = ddl.TABLES[kind].name
            try:
                inserted = self._insert_rows(job, table, job.batch.token, target, [64])
            except TransportError:
                raise
            except StoreUnavailable as e:
                if e.category != "unknown":
                    raise
                job.batch.unknown_failures += 1
                if job.batch.unknown_failures <= self.config.max_unknown_retries:
                    raise
                log.error(
                    "giving up on %d %s rows of %s after %d unexplained failures: %s",
                    table.num_rows,
                    kind,
                    job.batch.key,
                    job.batch.unknown_failures,
                    e,
                )
                bad += [(m, "store_error_unknown", f"{type(e).__name__}: {e}") for m in msgs]
                job.batch.inserted.add(kind)
                continue
            except Exception as e:  # StoreError (schema), or anything else the store could not take
                if isinstance(e, StoreError):
                    log.error("store rejected %d %s rows of %s: %s", table.num_rows, kind, job.batch.key, e)
                else:
                    log.exception("insert of %d %s rows of %s failed", table.num_rows, kind, job.batch.key)
                bad += [(m, "rejected_by_store", f"{type(e).__name__}: {e}") for m in msgs]
                job.batch.inserted.add(kind)
                continue
            job.batch.inserted.add(kind)
            metrics.insert_latency.observe(time.perf_counter() - started)
            if kind == schema.FLOWS:
                metrics.rows_inserted.inc(inserted)
                self.rows_inserted += inserted
            elif kind == schema.COUNTERS:
                metrics.counter_rows_inserted.inc(inserted)
                self.counters_inserted += inserted
            else:
                self.samples_inserted[kind] = self.samples_inserted.get(kind, 0) + inserted
        return bad

    def _insert_rows(
        self, job: _Job, table: pa.Table, token: str | None, target: str, budget: list[int]
    ) -> int:
        """Insert ``table``; when the store refuses some of its values (a ``data`` error), halve it
        until the refused rows are alone, and set those aside. The halves carry tokens derived
        from ``token``, so a retried batch splits and deduplicates the same way. At most
        ``budget`` inserts are spent on splitting; past that the remaining part is set aside whole."""
        try:
            stored = self.store.insert(table, token=token, target=target)
        except StoreUnavailable:
            raise
        except StoreError as e:
            if e.category != "data":
                raise
            budget[0] -= 1
            if table.num_rows == 1 or budget[0] <= 0:
                pos = job.batch.messages[0].position if job.batch.messages else None
                job.quarantined.append((Message(table, pos), "rejected_by_store", str(e)))
                log.error("store refused %d rows of %s: %s", table.num_rows, job.batch.key, e)
                return 0
        else:
            if stored is not None and stored < table.num_rows:  # the store dropped a duplicate block
                metrics.rows_deduplicated.labels(target=target).inc(table.num_rows - stored)
                self.rows_deduplicated += table.num_rows - stored
                return stored
            return table.num_rows
        half = table.num_rows // 2
        first = self._insert_rows(job, table.slice(0, half), token and f"{token}:a", target, budget)
        return first + self._insert_rows(job, table.slice(half), token and f"{token}:b", target, budget)

    def _settle(self, wait: bool) -> None:
        """Finish the batch in flight once its insert is over (``wait``: wait for it):
        dead letters, then the offset commit, then it leaves the buffer. Re-raises the
        insert's StoreUnavailable; the batch then stays buffered and is retried."""
        job = self._inflight
        if job is None or job.future is None or (not wait and not job.future.done()):
            return
        self._inflight = None
        batch = job.batch
        batch.inflight = False
        bad = job.bad + job.future.result()
        self._dead_letter(bad)
        self._quarantine(job.quarantined)
        self.store_error = ""
        partitioned = self.capabilities.partitioned
        if batch.key is not None and partitioned is not None:
            partitioned.commit_offsets({batch.key: (batch.last + 1, "")})
        else:
            self.consumer.commit()
        self._batcher.done(batch)
        metrics.buffered_rows.set(self._batcher.rows)

    def _settle_before_rebalance(self) -> None:
        """Let the insert in flight finish and commit while its partition is still ours; if
        it failed, whoever owns the partition next replays the recorded batch."""
        try:
            self._settle(wait=True)
        except (StoreUnavailable, TransportError) as e:
            log.warning("insert in flight at a rebalance failed (%s); its batch will be replayed", e)

    def _dead_letter(self, letters: list[tuple[Message, str, str]]) -> None:
        for msg, reason, error in letters:
            if reason != "unreadable":
                self.bad_messages += 1
                metrics.bad_messages.labels(reason=reason).inc()
            if self.dead_letters is None:
                log.error("no dead-letter destination: message at %s lost (%s)", msg.position, reason)
                continue
            self.dead_letters.send(_raw(msg), reason, error, msg.position)
            self.dead_lettered += 1
            metrics.dead_letters.labels(reason=reason).inc()
        if letters and self.dead_letters is not None:
            self.dead_letters.flush()  # stored before the offsets that cover them are committed

    def _quarantine(self, rows: list[tuple[Message, str, str]]) -> None:
        """Rows set aside alone (their batch went on): to the dead-letter destination, counted."""
        for msg, reason, error in rows:
            n = msg.table.num_rows if msg.table is not None else 0
            self.quarantined_rows += n
            metrics.quarantined_rows.labels(reason=reason).inc(n)
            if self.dead_letters is None:
                log.error("no dead-letter destination: %d rows lost (%s: %s)", n, reason, error)
                metrics.lost_rows.labels(reason=reason).inc(n)
                continue
            self.dead_letters.send(_raw(msg), reason, error, msg.position)
            self.dead_lettered += 1
            metrics.dead_letters.labels(reason=reason).inc()
        if rows and self.dead_letters is not None:
            self.dead_letters.flush()


def _raw(msg: Message) -> bytes:
    if msg.raw is not None:
        return msg.raw
    assert msg.table is not None
    batches = msg.table.combine_chunks().to_batches()
    rb = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=msg.table.schema)
    try:
        return wire.encode(rb)
    except wire.WireError:  # a record kind the wire format has no code for: the bare Arrow stream
        return wire.arrow_stream(rb)
