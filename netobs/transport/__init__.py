"""Transports move flow batches from collectors to the pipeline; chosen by ``type``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netobs.config import TransportConfig
from netobs.transport.base import Consumer, Message, Producer, Transport, TransportError


def _inprocess(cfg: TransportConfig) -> Any:
    from netobs.transport.inprocess import InprocessTransport

    return InprocessTransport(cfg.inprocess)


def _kafka(cfg: TransportConfig) -> Any:
    from netobs.transport.kafka import KafkaTransport

    return KafkaTransport(cfg.kafka)


#: The transport plug-ins, by the ``transport.type`` config value.
TRANSPORTS: dict[str, Callable[[TransportConfig], Transport]] = {
    "inprocess": _inprocess,
    "kafka": _kafka,
}


def make_transport(cfg: TransportConfig) -> Transport:
    return TRANSPORTS[cfg.type](cfg)


__all__ = ["Consumer", "Message", "Producer", "TRANSPORTS", "Transport", "TransportError", "make_transport"]
