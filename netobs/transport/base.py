"""What every transport offers: producers that publish batches, consumers that poll them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa


@dataclass
class Message:
    """One transport message as the pipeline sees it.

    ``table`` is the decoded batch, or None when the message could not be read; then
    ``error`` says why and ``raw`` keeps the bytes for a dead-letter destination.
    ``position`` is (topic, partition, offset) where the transport has one.
    """

    table: pa.Table | None
    position: tuple[str, int, int] | None = None
    error: str | None = None
    raw: bytes | None = None
    #: A copy of a message taken before (same message id, :mod:`pipeline.duplicates`): it keeps
    #: its place in its batch (the batch's range and row count stay what a replay re-creates)
    #: but its rows are not inserted.
    duplicate: bool = False


class TransportError(RuntimeError):
    """The transport cannot deliver (broker down, queue closed, ...)."""


class Producer(Protocol):
    def send(self, rb: pa.RecordBatch, key: bytes) -> None: ...
    def flush(self, timeout_s: float = 30.0) -> None: ...
    def close(self) -> None: ...


class Consumer(Protocol):
    """What the pipeline needs from every consumer: poll, commit all that was polled, close.

    A consumer may offer more, each capability a protocol of its own below; the pipeline
    reads them once, when it is wired (:mod:`netobs.transport.capabilities`).
    """

    def poll(self, timeout_s: float, max_messages: int = 100) -> list[Message]: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class Transport(Protocol):
    def producer(self) -> Producer: ...
    def consumer(self) -> Consumer: ...
    def close(self) -> None: ...
