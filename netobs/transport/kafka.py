"""Kafka transport (kafka-python): many flows per message, keyed by exporter.

Each message is one compressed Arrow IPC batch (:mod:`netobs.wire`; lz4 or zstd by
``transport.wire_compression``). Producers use ``acks=all``; a batch larger than the broker
accepts is split in halves. Consumers never auto-commit: the pipeline commits only after the rows
are in the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaConfigurationError, KafkaError, MessageSizeTooLargeError
from kafka.sasl.oauth import AbstractTokenProvider
from kafka.structs import OffsetAndMetadata

from netobs import wire
from netobs.config import ConfigError, KafkaTransportConfig
from netobs.transport import kafka_producer, metrics
from netobs.transport.base import Message, TransportError
from netobs.transport.deadletter import KafkaDeadLetters
from netobs.transport.spool import Spool
from netobs.transport.spooled import SpooledProducer, encode_parts

log = logging.getLogger(__name__)
LAG_INTERVAL_S = 5.0

MAX_MESSAGE_BYTES = 900_000  # under the broker's default message.max.bytes (1 MB)


#: What one fetch may bring back: kafka-python refuses a response frame longer than
#: ``receive_message_max_bytes`` ("Invalid frame length"), and the broker answers a fetch with
#: up to ``fetch_max_bytes`` (more only when one record batch alone is larger), so the frame
#: limit must exceed the fetch limit. A partition's share stays a few messages.
MAX_PARTITION_FETCH_BYTES = 4 * MAX_MESSAGE_BYTES
FETCH_MAX_BYTES = 16 << 20
RECEIVE_MESSAGE_MAX_BYTES = FETCH_MAX_BYTES + (1 << 20)


def fetch_options() -> dict[str, int]:
    """Consumer fetch sizes consistent with the client's frame limit (see above)."""
    return {
        "max_partition_fetch_bytes": MAX_PARTITION_FETCH_BYTES,
        "fetch_max_bytes": FETCH_MAX_BYTES,
        "receive_message_max_bytes": RECEIVE_MESSAGE_MAX_BYTES,
    }


def client_options(cfg: KafkaTransportConfig) -> dict[str, Any]:
    """Connection and security options shared by producers, consumers and admin clients."""
    opts: dict[str, Any] = {
        "bootstrap_servers": list(cfg.bootstrap_servers),
        "security_protocol": cfg.security_protocol,
        "request_timeout_ms": cfg.request_timeout_ms,
    }
    m = cfg.sasl_mechanism
    if m:
        opts["sasl_mechanism"] = m
    if m in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        opts["sasl_plain_username"] = cfg.sasl_username
        opts["sasl_plain_password"] = cfg.sasl_password.get_secret_value() if cfg.sasl_password else None
    elif m == "GSSAPI":
        opts["sasl_kerberos_service_name"] = cfg.sasl_kerberos_service_name
        if cfg.sasl_kerberos_domain_name:
            opts["sasl_kerberos_domain_name"] = cfg.sasl_kerberos_domain_name
    elif m == "OAUTHBEARER":
        assert cfg.sasl_oauth_token_file is not None
        opts["sasl_oauth_token_provider"] = FileTokenProvider(cfg.sasl_oauth_token_file)
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        opts["ssl_check_hostname"] = cfg.tls.verify
        if cfg.tls.ca_file:
            opts["ssl_cafile"] = str(cfg.tls.ca_file)
        if cfg.tls.cert_file:
            opts["ssl_certfile"] = str(cfg.tls.cert_file)
        if cfg.tls.key_file:
            opts["ssl_keyfile"] = str(cfg.tls.key_file)
    return opts


class FileTokenProvider(AbstractTokenProvider):  # type: ignore[misc]  # kafka-python has no types
    """OAUTHBEARER token read from a file at each authentication: whoever refreshes the file (a
    projected service-account token, an OIDC sidecar) refreshes netobs's credential."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)

    def token(self) -> str:
        try:
            return self.path.read_text().strip()
        except OSError as e:
            raise TransportError(f"OAUTHBEARER token file {self.path}: {e.strerror}") from None


class KafkaTransport:
    """Producers and consumers of one topic. With a spool, producers are
    :class:`~netobs.transport.spooled.SpooledProducer`: an unreachable broker at start or an
    outage longer than ``delivery_timeout_ms`` sends batches to the spool, not to the void."""

    def __init__(
        self,
        config: KafkaTransportConfig,
        spool: Callable[[], Spool] | None = None,
        max_inflight_bytes: int = 64 << 20,
    ):
        self.config = config
        self._spool = spool
        self._max_inflight = max_inflight_bytes
        self._producers: list[SpooledProducer] = []

    def producer(self) -> KafkaBatchProducer | SpooledProducer:
        if self._spool is None:
            return KafkaBatchProducer(self.config)
        p = SpooledProducer(
            lambda: KafkaBatchProducer(self.config),
            self._spool(),
            max_inflight_bytes=self._max_inflight,
            delivery_timeout_s=self.config.delivery_timeout_ms / 1000,
        )
        p.start()
        self._producers.append(p)
        return p

    def close(self) -> None:
        for p in self._producers:
            p.close()

    def consumer(self) -> KafkaBatchConsumer:
        return KafkaBatchConsumer(self.config)


class KafkaBatchProducer:
    def __init__(self, cfg: KafkaTransportConfig):
        self.topic = cfg.topic
        self.errors = 0
        try:
            self._p = KafkaProducer(
                acks="all",
                enable_idempotence=cfg.idempotent,
                compression_type=None if cfg.compression == "none" else cfg.compression,
                linger_ms=cfg.linger_ms,
                max_request_size=MAX_MESSAGE_BYTES + 4096,
                delivery_timeout_ms=cfg.delivery_timeout_ms,
                max_block_ms=cfg.max_block_ms,
                **client_options(cfg),
            )
        except KafkaConfigurationError as e:  # a setting the client refuses: retrying cannot help
            raise ConfigError(f"transport.kafka: {e}") from None
        except KafkaError as e:
            raise TransportError(f"Kafka {list(cfg.bootstrap_servers)} unreachable: {e}") from None

    def encode(self, rb: pa.RecordBatch, ids: Callable[[], bytes] | None = None) -> list[tuple[bytes, int]]:
        """``rb`` as messages the broker accepts, with their row counts (and ids from ``ids``)."""
        return encode_parts(rb, MAX_MESSAGE_BYTES, ids)

    def send(self, rb: pa.RecordBatch, key: bytes) -> None:
        for data, _ in self.encode(rb):
            self.send_bytes(data, key, self._on_done)

    def send_bytes(self, value: bytes, key: bytes, done: Callable[[BaseException | None], None]) -> None:
        """Publish one encoded message; ``done(None)`` once the broker has it, ``done(error)`` when
        it never will (delivery timeout), from the producer's I/O thread."""
        try:
            fut = self._p.send(self.topic, key=key, value=value)
        except (KafkaError, MessageSizeTooLargeError) as e:
            self.errors += 1
            raise TransportError(f"publish to {self.topic} failed: {e}") from None
        fut.add_callback(lambda _: done(None))
        fut.add_errback(done)

    def _on_done(self, exc: BaseException | None) -> None:
        if exc is not None:
            self.errors += 1
            log.error("kafka publish to %s failed: %s", self.topic, exc)

    def flush(self, timeout_s: float = 30.0) -> None:
        kafka_producer.flush(self._p, failure=f"flush to {self.topic} failed", timeout_s=timeout_s)

    def close(self) -> None:
        kafka_producer.close(self._p, "kafka producer")


def batch_messages(tp: TopicPartition, records: list[Any]) -> list[Message]:
    """One partition's polled records as netobs batches (:mod:`netobs.wire`); an unreadable
    record is a message of its own, with the error and its bytes."""
    out = []
    for r in records:
        pos = (tp.topic, tp.partition, r.offset)
        try:
            out.append(Message(wire.decode(r.value), pos))
        except wire.WireError as e:
            out.append(Message(None, pos, error=str(e), raw=r.value))
    return out


class KafkaBatchConsumer:
    """Polls flow batches; commits explicit offsets; pauses instead of stopping to poll.

    A batch's planned offset range is committed as metadata of the offset it starts at
    (``netobs-batch:<first>-<last>``) before its insert. Whoever owns the partition next
    reads it back on assignment and re-creates exactly that batch, so a replayed insert
    carries the same deduplication token (and, on old servers, the same block).
    """

    def __init__(self, cfg: KafkaTransportConfig):
        self.config = cfg
        self._on_revoked: Callable[[list[tuple[str, int]]], None] | None = None
        self._on_assigned: Callable[[dict[tuple[str, int], tuple[int, int] | None]], None] | None = None
        self._lag: dict[str, int] = {}
        self._lag_read = 0.0
        try:
            self._c = KafkaConsumer(
                group_id=cfg.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                **fetch_options(),
                max_poll_interval_ms=cfg.max_poll_interval_ms,
                **client_options(cfg),
            )
            self._c.subscribe(self.topics(), listener=_Listener(self))
        except KafkaConfigurationError as e:  # a setting the client refuses: retrying cannot help
            raise ConfigError(f"transport.kafka: {e}") from None
        except KafkaError as e:
            raise TransportError(f"Kafka {list(cfg.bootstrap_servers)} unreachable: {e}") from None

    def topics(self) -> list[str]:
        """The topics this consumer subscribes to (subclasses add input topics)."""
        return [self.config.topic]

    def set_rebalance_handler(
        self,
        revoked: Callable[[list[tuple[str, int]]], None],
        assigned: Callable[[dict[tuple[str, int], tuple[int, int] | None]], None],
    ) -> None:
        """Called from inside :meth:`poll`, in the polling thread, on each rebalance."""
        self._on_revoked, self._on_assigned = revoked, assigned

    def poll(self, timeout_s: float, max_messages: int = 100) -> list[Message]:
        polled = self._poll_records(timeout_s, max_messages)
        return [m for tp, records in polled.items() for m in batch_messages(tp, records)]

    def _poll_records(self, timeout_s: float, max_records: int) -> dict[TopicPartition, list[Any]]:
        try:
            polled: dict[TopicPartition, list[Any]] = self._c.poll(
                timeout_ms=int(timeout_s * 1000), max_records=max_records
            )
        except KafkaError as e:
            raise TransportError(f"poll failed: {e}") from None
        if time.monotonic() - self._lag_read >= LAG_INTERVAL_S:
            self._read_lag()
        return polled

    def _read_lag(self) -> None:
        """Records between each assigned partition's position and its high watermark (known from
        the last fetch: no request), in the polling thread, as kafka-python wants."""
        self._lag_read = time.monotonic()
        lag: dict[str, int] = {}
        for tp in self._c.assignment():
            high = self._c.highwater(tp)
            try:
                pos = self._c.position(tp)
            except KafkaError:
                continue
            if high is None or pos is None:
                continue
            lag[f"{tp.topic}/{tp.partition}"] = n = max(0, high - pos)
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(n)
        self._lag = lag

    def lag(self) -> dict[str, int]:
        """``topic/partition`` → records not yet consumed, as of the last reading."""
        return dict(self._lag)

    def commit(self) -> None:
        """Commit every consumed position (only safe when everything polled is stored)."""
        try:
            self._c.commit()
        except KafkaError as e:
            raise TransportError(f"offset commit failed: {e}") from None

    def commit_offsets(self, offsets: Mapping[tuple[str, int], tuple[int, str]]) -> None:
        """Commit ``(topic, partition) -> (next offset, metadata)``."""
        req = {TopicPartition(t, p): OffsetAndMetadata(o, m, -1) for (t, p), (o, m) in offsets.items()}
        try:
            self._c.commit(req)
        except KafkaError as e:
            raise TransportError(f"offset commit failed: {e}") from None

    def commit_plan(self, topic: str, partition: int, first: int, last: int) -> None:
        """Record the offset range of the batch about to be inserted."""
        self.commit_offsets({(topic, partition): (first, f"{PLAN_PREFIX}{first}-{last}")})

    def planned(self, tp: TopicPartition) -> tuple[int, int] | None:
        """The recorded range of a batch that may have been inserted but not committed."""
        om = self._c.committed(tp, metadata=True)
        meta = getattr(om, "metadata", "") or ""
        if om is None or not meta.startswith(PLAN_PREFIX):
            return None
        first, last = (int(x) for x in meta[len(PLAN_PREFIX) :].split("-"))
        return (first, last) if first == om.offset and last >= first else None

    def pause(self) -> None:
        self._c.pause(*self._c.assignment())

    def resume(self) -> None:
        paused = self._c.paused()
        if paused:
            self._c.resume(*paused)

    def dead_letters(self) -> KafkaDeadLetters | None:
        if not self.config.dead_letter_topic:
            return None
        return KafkaDeadLetters(self.config.dead_letter_topic, client_options(self.config))

    def close(self) -> None:
        self._c.close(autocommit=False)


PLAN_PREFIX = "netobs-batch:"


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python has no types
    def __init__(self, consumer: KafkaBatchConsumer):
        self.consumer = consumer

    def on_partitions_revoked(self, revoked: Any) -> None:
        if self.consumer._on_revoked:
            self.consumer._on_revoked([(tp.topic, tp.partition) for tp in revoked])

    def on_partitions_assigned(self, assigned: Any) -> None:
        plans: dict[tuple[str, int], tuple[int, int] | None] = {}
        for tp in assigned:
            try:
                plans[(tp.topic, tp.partition)] = self.consumer.planned(tp)
            except (KafkaError, ValueError) as e:
                log.error("cannot read the batch plan of %s: %s (a replay may duplicate)", tp, e)
                plans[(tp.topic, tp.partition)] = None
        if self.consumer._on_assigned:
            self.consumer._on_assigned(plans)
