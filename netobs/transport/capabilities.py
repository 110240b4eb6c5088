"""What a consumer may offer beyond :class:`~netobs.transport.base.Consumer`, one protocol each.

The pipeline reads them once, when it is wired (:meth:`Capabilities.of`), instead of probing
the consumer for optional methods while it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from netobs.transport.base import Consumer
from netobs.transport.deadletter import DeadLetters

#: ``revoked(keys)`` and ``assigned({key: recorded (first, last) or None})``, key = (topic, partition).
Revoked = Callable[[list[tuple[str, int]]], None]
Assigned = Callable[[dict[tuple[str, int], tuple[int, int] | None]], None]


@runtime_checkable
class PartitionedConsumer(Protocol):
    """Partitions with offsets (Kafka): what exactly-once delivery needs.

    The pipeline records a batch's offset range before its insert (``commit_plan``), commits
    the offset after it (``commit_offsets``) and settles what it holds of a partition when the
    group takes it away (``set_rebalance_handler``).
    """

    def commit_plan(self, topic: str, partition: int, first: int, last: int) -> None: ...
    def commit_offsets(self, offsets: Mapping[tuple[str, int], tuple[int, str]]) -> None: ...
    def set_rebalance_handler(self, revoked: Revoked, assigned: Assigned) -> None: ...


@runtime_checkable
class PausableConsumer(Protocol):
    """Stops fetching while it goes on polling (a Kafka consumer must poll to stay in its group)."""

    def pause(self) -> None: ...
    def resume(self) -> None: ...


@runtime_checkable
class DeadLetteringConsumer(Protocol):
    """Brings its own dead-letter destination (Kafka: a topic)."""

    def dead_letters(self) -> DeadLetters | None: ...


@runtime_checkable
class QueuedConsumer(Protocol):
    """Knows how many messages wait (the in-process queue, drained on stop)."""

    def depth(self) -> int: ...


@dataclass(frozen=True)
class Capabilities:
    """What a consumer offers beyond :class:`Consumer`, read once when it is wired."""

    partitioned: PartitionedConsumer | None
    pausable: PausableConsumer | None
    dead_lettering: DeadLetteringConsumer | None
    queued: QueuedConsumer | None

    @classmethod
    def of(cls, consumer: Consumer) -> Capabilities:
        return cls(
            consumer if isinstance(consumer, PartitionedConsumer) else None,
            consumer if isinstance(consumer, PausableConsumer) else None,
            consumer if isinstance(consumer, DeadLetteringConsumer) else None,
            consumer if isinstance(consumer, QueuedConsumer) else None,
        )
