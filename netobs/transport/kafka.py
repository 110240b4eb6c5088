"""Kafka transport (kafka-python): many flows per message, keyed by exporter.

Each message is one zstd-compressed Arrow IPC batch (:mod:`netobs.wire`). Producers use
``acks=all``; a batch larger than the broker accepts is split in halves. Consumers
never auto-commit: the pipeline commits only after the rows are in the store.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError

from netobs import wire
from netobs.config import KafkaTransportConfig
from netobs.transport.base import Message, TransportError

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 900_000  # under the broker's default message.max.bytes (1 MB)


def client_options(cfg: KafkaTransportConfig) -> dict[str, Any]:
    """Connection and security options shared by producers, consumers and admin clients."""
    opts: dict[str, Any] = {
        "bootstrap_servers": list(cfg.bootstrap_servers),
        "security_protocol": cfg.security_protocol,
        "request_timeout_ms": cfg.request_timeout_ms,
    }
    if cfg.sasl_mechanism:
        opts["sasl_mechanism"] = cfg.sasl_mechanism
        opts["sasl_plain_username"] = cfg.sasl_username
        opts["sasl_plain_password"] = cfg.sasl_password.get_secret_value() if cfg.sasl_password else None
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        opts["ssl_check_hostname"] = cfg.tls.verify
        if cfg.tls.ca_file:
            opts["ssl_cafile"] = str(cfg.tls.ca_file)
        if cfg.tls.cert_file:
            opts["ssl_certfile"] = str(cfg.tls.cert_file)
        if cfg.tls.key_file:
            opts["ssl_keyfile"] = str(cfg.tls.key_file)
    return opts


class KafkaTransport:
    def __init__(self, config: KafkaTransportConfig):
        self.config = config

    def producer(self) -> KafkaBatchProducer:
        return KafkaBatchProducer(self.config)

    def consumer(self) -> KafkaBatchConsumer:
        return KafkaBatchConsumer(self.config)


class KafkaBatchProducer:
    def __init__(self, cfg: KafkaTransportConfig):
        self.topic = cfg.topic
        self.errors = 0
        try:
            self._p = KafkaProducer(
                acks="all",
                compression_type=None if cfg.compression == "none" else cfg.compression,
                linger_ms=cfg.linger_ms,
                max_request_size=MAX_MESSAGE_BYTES + 4096,
                retries=5,
                **client_options(cfg),
            )
        except KafkaError as e:
            raise TransportError(f"Kafka {list(cfg.bootstrap_servers)} unreachable: {e}") from None

    def send(self, rb: pa.RecordBatch, key: bytes) -> None:
        data = wire.encode(rb)
        if len(data) > MAX_MESSAGE_BYTES and rb.num_rows > 1:
            half = rb.num_rows // 2
            self.send(rb.slice(0, half), key)
            self.send(rb.slice(half), key)
            return
        try:
            fut = self._p.send(self.topic, key=key, value=data)
        except (KafkaError, MessageSizeTooLargeError) as e:
            self.errors += 1
            raise TransportError(f"publish to {self.topic} failed: {e}") from None
        fut.add_errback(self._on_error)

    def _on_error(self, exc: BaseException) -> None:
        self.errors += 1
        log.error("kafka publish to %s failed: %s", self.topic, exc)

    def flush(self, timeout_s: float = 30.0) -> None:
        try:
            self._p.flush(timeout=timeout_s)
        except KafkaError as e:
            raise TransportError(f"flush to {self.topic} failed: {e}") from None

    def close(self) -> None:
        try:
            self._p.close(timeout=10)
        except KafkaError as e:  # closing must not mask the caller's own error
            log.warning("kafka producer close: %s", e)


class KafkaBatchConsumer:
    def __init__(self, cfg: KafkaTransportConfig):
        try:
            self._c = KafkaConsumer(
                cfg.topic,
                group_id=cfg.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=4 * MAX_MESSAGE_BYTES,
                **client_options(cfg),
            )
        except KafkaError as e:
            raise TransportError(f"Kafka {list(cfg.bootstrap_servers)} unreachable: {e}") from None

    def poll(self, timeout_s: float, max_messages: int = 100) -> list[Message]:
        try:
            polled = self._c.poll(timeout_ms=int(timeout_s * 1000), max_records=max_messages)
        except KafkaError as e:
            raise TransportError(f"poll failed: {e}") from None
        out = []
        for tp, records in polled.items():
            for r in records:
                pos = (tp.topic, tp.partition, r.offset)
                try:
                    out.append(Message(wire.decode(r.value), pos))
                except wire.WireError as e:
                    out.append(Message(None, pos, error=str(e), raw=r.value))
        return out

    def commit(self) -> None:
        try:
            self._c.commit()
        except KafkaError as e:
            raise TransportError(f"offset commit failed: {e}") from None

    def close(self) -> None:
        self._c.close(autocommit=False)
