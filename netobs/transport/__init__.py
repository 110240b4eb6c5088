"""Transports move flow batches from collectors to the pipeline; chosen by ``type``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from netobs.config import SpoolConfig, TransportConfig
from netobs.transport.base import Consumer, Message, Producer, Transport, TransportError


def _inprocess(cfg: TransportConfig, spool_dir: Path | None) -> Any:
    from netobs.transport.inprocess import InprocessTransport

    spool = make_spool(cfg.spool, spool_dir) if spool_dir is not None and cfg.spool.enabled else None
    return InprocessTransport(cfg.inprocess, spool=spool)


def _kafka(cfg: TransportConfig, spool_dir: Path | None) -> Any:
    from netobs.transport.kafka import KafkaTransport

    if spool_dir is None or not cfg.spool.enabled:
        return KafkaTransport(cfg.kafka)
    return KafkaTransport(cfg.kafka, lambda: make_spool(cfg.spool, spool_dir), cfg.spool.max_inflight_bytes)


#: The transport plug-ins, by the ``transport.type`` config value.
TRANSPORTS: dict[str, Callable[[TransportConfig, Path | None], Transport]] = {
    "inprocess": _inprocess,
    "kafka": _kafka,
}


def make_transport(cfg: TransportConfig, spool_dir: Path | None = None) -> Transport:
    """The configured transport; with ``spool_dir`` (and ``spool.enabled``) its producers spool.
    Its messages are encoded with ``wire_compression`` (process-wide: one transport per process)."""
    from netobs import wire

    wire.set_compression(cfg.wire_compression)
    return TRANSPORTS[cfg.type](cfg, spool_dir)


def make_spool(cfg: SpoolConfig, directory: Path) -> Any:
    """A :class:`~netobs.transport.spool.Spool` whose drops and depth are in the metrics."""
    from netobs.transport import metrics
    from netobs.transport.spool import Spool

    def dropped(exporter: str, kind: str, reason: str, rows: int) -> None:
        metrics.dropped.labels(exporter, kind, reason).inc(rows)

    spool = Spool(directory, cfg.max_bytes, cfg.max_age_s, cfg.segment_bytes, on_drop=dropped)
    metrics.spool_records.set_function(spool.depth)
    metrics.spool_bytes.set_function(lambda: spool.bytes)
    metrics.spool_oldest_age.set_function(spool.oldest_age_s)
    return spool


__all__ = ["Consumer", "Message", "Producer", "TRANSPORTS", "Transport", "TransportError", "make_transport"]
