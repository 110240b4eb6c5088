"""Dead letters: messages the pipeline cannot process, kept with the reason instead of lost.

Two sinks: a Kafka topic (the message bytes as value, the reason in headers) for the
distributed mode, and a directory of files for the in-process transport (``<n>.nobs``
holding the bytes and ``<n>.json`` the reason). Delivery is at least once: a batch
replayed after a crash may dead-letter its unreadable messages again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

from netobs.transport import kafka_producer
from netobs.transport.base import TransportError

log = logging.getLogger(__name__)


class DeadLetters(Protocol):
    def send(self, raw: bytes, reason: str, error: str, position: tuple[str, int, int] | None) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def headers(reason: str, error: str, position: tuple[str, int, int] | None) -> list[tuple[str, bytes]]:
    """Kafka headers saying why a message is a dead letter and where it came from."""
    out = [
        ("netobs.reason", reason.encode()),
        ("netobs.error", error.encode(errors="replace")[:2000]),
        ("netobs.time_ms", str(int(time.time() * 1000)).encode()),
    ]
    if position is not None:
        topic, partition, offset = position
        out += [
            ("netobs.source_topic", topic.encode()),
            ("netobs.source_partition", str(partition).encode()),
            ("netobs.source_offset", str(offset).encode()),
        ]
    return out


class KafkaDeadLetters:
    """Dead letters to a Kafka topic (``acks=all``); ``flush`` waits until they are stored."""

    def __init__(self, topic: str, client_options: dict[str, Any]):
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.topic = topic
        self._futures: list[Any] = []
        try:
            self._p = KafkaProducer(acks="all", retries=5, max_request_size=8 << 20, **client_options)
        except KafkaError as e:
            raise TransportError(f"dead-letter producer: {e}") from None

    def send(self, raw: bytes, reason: str, error: str, position: tuple[str, int, int] | None) -> None:
        from kafka.errors import KafkaError

        key = f"{position[0]}:{position[1]}".encode() if position else None
        try:
            self._futures.append(
                self._p.send(self.topic, value=raw, key=key, headers=headers(reason, error, position))
            )
        except KafkaError as e:
            raise TransportError(f"dead letter to {self.topic} failed: {e}") from None

    def flush(self) -> None:
        futures, self._futures = self._futures, []
        kafka_producer.flush(self._p, futures, failure=f"dead letters to {self.topic} not stored")

    def close(self) -> None:
        kafka_producer.close(self._p, "dead-letter producer")


class DirectoryDeadLetters:
    """Dead letters as files: ``<time_ns>-<pid>.nobs`` (bytes) beside ``.json`` (why, from where)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def send(self, raw: bytes, reason: str, error: str, position: tuple[str, int, int] | None) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            stem = self.directory / f"{time.time_ns()}-{os.getpid()}"
            stem.with_suffix(".nobs").write_bytes(raw)
            meta = {"reason": reason, "error": error, "position": list(position) if position else None}
            stem.with_suffix(".json").write_text(json.dumps(meta) + "\n")
        except OSError as e:
            raise TransportError(f"dead letter to {self.directory} failed: {e}") from None

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
