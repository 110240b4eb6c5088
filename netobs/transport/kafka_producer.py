"""Flushing and closing a kafka-python producer: the one way every netobs producer does it.

The batch producer, the dead-letter producer and the metadata topic's writer share it, so
a Kafka error reads alike wherever it happens and a close never masks the caller's error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from netobs.transport.base import TransportError

log = logging.getLogger(__name__)


def flush(
    producer: Any,
    futures: Sequence[Any] = (),
    *,
    failure: str,
    timeout_s: float = 30.0,
    error: type[TransportError] = TransportError,
) -> list[Any]:
    """Flush ``producer`` and wait for ``futures`` (their record metadata is returned).

    A Kafka error becomes ``error(f"{failure}: {e}")``.
    """
    from kafka.errors import KafkaError

    try:
        producer.flush(timeout=timeout_s)
        return [f.get(timeout=timeout_s) for f in futures]
    except KafkaError as e:
        raise error(f"{failure}: {e}") from None


def close(producer: Any, what: str) -> None:
    """Close ``producer``; a failure is logged as ``<what> close: ...``, never raised."""
    try:
        producer.close(timeout=10)
    except Exception as e:  # closing must not mask the caller's own error
        log.warning("%s close: %s", what, e)
