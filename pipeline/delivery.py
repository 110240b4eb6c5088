"""Per-partition batches with a deterministic composition, for exactly-once-in-effect inserts.

A batch holds a contiguous offset range of ONE transport partition, so its range names its
content: the deduplication token is derived from (topic, partition, first, last offset) and
a replay after a crash re-creates the same block. Before its insert a batch's range is
recorded in the transport (:meth:`KafkaBatchConsumer.commit_plan`); the next owner of the
partition reads that plan on assignment and closes its first batch exactly there, whatever
the poll sizes and timings are this time. Messages without a position (the in-process
transport, which never replays) share one batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from netobs.transport import Message

log = logging.getLogger(__name__)

Key = tuple[str, int] | None


@dataclass
class Batch:
    key: Key
    since: float = field(default_factory=time.monotonic)
    messages: list[Message] = field(default_factory=list)
    rows: int = 0
    #: Close exactly at this offset: the range a previous owner recorded before inserting.
    plan_last: int | None = None
    #: The range is recorded in the transport (nothing may join the batch any more).
    planned: bool = False
    sealed: bool = False
    #: Handed to the inserter; not handed out again until it is done or given back.
    inflight: bool = False
    #: Record kinds already inserted: a batch holding flows and counters is two inserts; when
    #: the second fails and the batch is retried, the first is not redone (batches without a
    #: deduplication token would duplicate it).
    inserted: set[str] = field(default_factory=set)
    #: Inserts of this batch that failed with an unclassified error (retried, up to a cap).
    unknown_failures: int = 0

    @property
    def first(self) -> int:
        return self.messages[0].position[2] if self.messages[0].position else -1

    @property
    def last(self) -> int:
        return last_offset(self.messages[-1])

    @property
    def token(self) -> str | None:
        """Insert deduplication token: the range, plus the row count as a cheap sanity check."""
        if self.key is None:
            return None
        topic, partition = self.key
        return f"netobs:{topic}:{partition}:{self.first}-{self.last}:{self.rows}"


def last_offset(msg: Message) -> int:
    """Offset of the last record a message holds (-1 without a position).

    A message usually is one record; a run of one-flow records (goflow2 input,
    :class:`pipeline.goflow2.RunMessage`) spans ``position[2]..last_offset``.
    """
    last = getattr(msg, "last_offset", None)
    if last is not None and last >= 0:
        return int(last)
    return msg.position[2] if msg.position else -1


class Batcher:
    """Buffers messages into per-partition batches; hands out the ones ready to insert, in order."""

    def __init__(self, max_rows: int):
        self.max_rows = max_rows
        self.rows = 0
        self._batches: dict[Key, list[Batch]] = {}
        self._plans: dict[tuple[str, int], tuple[int, int]] = {}

    def __bool__(self) -> bool:
        return any(self._batches.values())

    def add(self, msg: Message) -> None:
        key: Key = (msg.position[0], msg.position[1]) if msg.position else None
        batches = self._batches.setdefault(key, [])
        cur = batches[-1] if batches and not batches[-1].sealed else None
        if cur is None:
            cur = self._open(key, msg)
            batches.append(cur)
        cur.messages.append(msg)
        n = msg.table.num_rows if msg.table is not None else 0
        cur.rows += n
        self.rows += n
        offset = last_offset(msg)
        if cur.plan_last is not None:
            cur.sealed = offset >= cur.plan_last
        elif cur.rows >= self.max_rows:
            cur.sealed = True

    def _open(self, key: Key, msg: Message) -> Batch:
        batch = Batch(key)
        plan = self._plans.pop(key, None) if key is not None else None
        if plan is not None and msg.position is not None:
            if msg.position[2] == plan[0]:
                batch.plan_last, batch.planned = plan[1], True
                log.info("replaying batch %s:%d %d-%d as recorded", *key, *plan)  # type: ignore[misc]
            else:
                log.warning(
                    "recorded batch %s starts at %d, partition resumes at %d", key, plan[0], msg.position[2]
                )
        return batch

    def set_plans(self, plans: dict[tuple[str, int], tuple[int, int]]) -> None:
        self._plans.update(plans)

    def messages(self, keys: list[tuple[str, int]]) -> list[Message]:
        """The messages buffered for these partitions."""
        return [m for key in keys for batch in self._batches.get(key, []) for m in batch.messages]

    def drop(self, keys: list[tuple[str, int]]) -> int:
        """Forget the batches (and plans) of partitions this consumer no longer owns."""
        dropped = 0
        for key in keys:
            for batch in self._batches.pop(key, []):
                dropped += batch.rows
            self._plans.pop(key, None)
        self.rows -= dropped
        return dropped

    def next_ready(self, max_delay_s: float, everything: bool = False) -> Batch | None:
        """The oldest batch of some partition that is full, recorded, old enough (or any, when
        ``everything``); sealed from then on, so its range stays what gets recorded. While a
        partition's oldest batch is being inserted, the one after it is its candidate.

        A replayed batch still short of its recorded end is never ready: inserting part of
        it would change its composition. On stop it stays uncommitted for the next owner.
        """
        now = time.monotonic()
        for batches in self._batches.values():
            # The one batch being inserted is the head; the one after it may be prepared.
            i = 1 if batches and batches[0].inflight else 0
            if i >= len(batches):
                continue
            head = batches[i]
            if head.plan_last is not None and not head.sealed:
                continue
            if head.sealed or everything or now - head.since >= max_delay_s:
                head.sealed = True
                return head
        return None

    def done(self, batch: Batch) -> None:
        batches = self._batches.get(batch.key)
        if batches and batches[0] is batch:
            batches.pop(0)
            self.rows -= batch.rows
