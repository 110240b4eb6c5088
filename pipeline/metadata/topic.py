"""Metadata changes on a compacted Kafka topic, so every pipeline replica holds the same view.

Distributed mode (``enrich.metadata_topic.enabled``): the sources (inventory file,
Kubernetes watch) do not apply their changes to the local store; they write them to
:class:`TopicWriter`, which publishes each change as one record keyed by the object's
identity (``pod/<namespace>/<name>``, ``network/<name>``, ...): the object as JSON, or a
tombstone (no value) for a deletion. Headers carry what
:meth:`~pipeline.metadata.versions.MetadataStore.apply` needs besides the object (the change
time, the first-sight start, the source), tombstones included. Every replica, the
publishing one too, reads the topic from the beginning with :class:`MetadataSubscriber` and
applies the records in topic order (one partition: one order), so all replicas compute
the same versions. The topic is ``cleanup.policy=compact``: Kafka keeps the newest record
per key, enough for a replica starting later to build the current view; the history
before that lives in ClickHouse (``metadata_versions``), which a replica reloads first.

A record that cannot be read (not JSON, an unknown kind, an invalid object) is counted
in ``malformed`` and skipped with a log line naming its key; the others still apply.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from netobs.transport import kafka_producer
from netobs.transport.base import TransportError
from pipeline.metadata.model import KINDS, Obj
from pipeline.metadata.versions import Change, MetadataStore, ms

if TYPE_CHECKING:
    from pipeline.enrich import Enricher

log = logging.getLogger(__name__)

#: Version of the record layout, in the ``netobs.v`` header.
RECORD_VERSION = b"1"
_AT, _NEW_FROM, _SOURCE, _V = "netobs.at", "netobs.new_from", "netobs.source", "netobs.v"


class MetadataTopicError(TransportError):
    """The metadata topic cannot be used (unreachable, or not compacted)."""


def record_key(kind: str, key: str) -> bytes:
    """The Kafka key of an object: ``<kind>/<key>`` (e.g. ``pod/retail-web/pod-a``)."""
    return f"{kind}/{key}".encode()


def encode(ch: Change, at: int, new_from: int | None) -> tuple[bytes, bytes | None, list[tuple[str, bytes]]]:
    """(key, value, headers) of one change; ``value`` is None (a tombstone) for a deletion."""
    value = None
    if ch.obj is not None:  # the whole object (a pod's lifetime too), not just its stored attributes
        data = ch.obj.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        value = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    headers = [
        (_V, RECORD_VERSION),
        (_AT, str(at).encode()),
        (_NEW_FROM, b"" if new_from is None else str(new_from).encode()),
        (_SOURCE, ch.source.encode()),
    ]
    return record_key(ch.kind, ch.key), value, headers


def decode(
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]]
) -> tuple[Change, int, int | None]:
    """(change, at, new_from) of one record; raises ValueError saying what is wrong."""
    if not key:
        raise ValueError("record without a key")
    kind, sep, name = key.decode("utf-8", errors="strict").partition("/")
    if not sep or not name:
        raise ValueError("key is not <kind>/<name>")
    model = KINDS.get(kind)
    if model is None:
        raise ValueError(f"unknown kind {kind!r}")
    h = {k: v for k, v in headers or ()}
    if h.get(_V) != RECORD_VERSION:
        raise ValueError(f"record version {h.get(_V)!r} is not {RECORD_VERSION!r}")
    try:
        at = int(h[_AT])
        new_from = int(h[_NEW_FROM]) if h.get(_NEW_FROM) else None
    except (KeyError, ValueError):
        raise ValueError("missing or bad netobs.at / netobs.new_from header") from None
    source = h.get(_SOURCE, b"").decode(errors="replace")
    if value is None:
        return Change.delete(kind, name, source), at, new_from
    try:
        obj: Obj = model.model_validate(json.loads(value))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"value is not JSON: {e}") from None
    except ValidationError as e:
        raise ValueError(
            "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        ) from None
    if obj.key != name:
        raise ValueError(f"object {obj.key!r} published under another key")
    return Change.upsert(obj, source), at, new_from


def ensure_topic(options: dict[str, Any], topic: str, replication_factor: int = 1) -> None:
    """Create the topic (one partition, ``cleanup.policy=compact``) unless it exists; refuse one
    that is not compacted (its old records would expire, and replicas started later miss objects)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(client_id="netobs-metadata-admin", **options)
    except KafkaError as e:
        raise MetadataTopicError(f"Kafka unreachable for the metadata topic {topic}: {e}") from None
    try:
        try:
            new = NewTopic(topic, 1, replication_factor, topic_configs={"cleanup.policy": "compact"})
            admin.create_topics([new])
            log.info("created metadata topic %s (cleanup.policy=compact)", topic)
        except TopicAlreadyExistsError:
            pass
        policy = topic_config(admin, topic, "cleanup.policy")
        deadline = time.monotonic() + 15
        while policy is None and time.monotonic() < deadline:  # a new topic is not known at once
            time.sleep(0.2)
            policy = topic_config(admin, topic, "cleanup.policy")
    except KafkaError as e:
        raise MetadataTopicError(f"metadata topic {topic}: {e}") from None
    finally:
        admin.close()
    if "compact" not in (policy or "").split(","):
        raise MetadataTopicError(
            f"metadata topic {topic} has cleanup.policy={policy}; it needs compact (kafka-configs.sh --alter "
            f"--entity-type topics --entity-name {topic} --add-config cleanup.policy=compact)"
        )


def topic_config(admin: Any, topic: str, name: str) -> str | None:
    """One configuration value of a topic, from the broker (DescribeConfigs)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    for response in admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)]):
        for resource in response.resources:
            if resource[0]:  # an error code, e.g. UNKNOWN_TOPIC_OR_PARTITION right after creation
                return None
            for entry in resource[4]:
                if entry[0] == name:
                    return entry[1]
    return None


class TopicWriter:
    """What the sources write to in the distributed mode: publishes changes instead of applying them.

    Offers the two methods the sources call on a :class:`MetadataStore` (``apply`` and
    ``replace_all``). An upsert equal to the view in force is not published again (a relist,
    a restart re-reading the inventory), so the topic only grows with real changes.
    """

    def __init__(self, meta: MetadataStore, topic: str, options: dict[str, Any], subscriber: Any = None):
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.meta, self.topic, self.subscriber = meta, topic, subscriber
        self.published = 0
        #: Publishes whose records this replica did not read back in time (see apply).
        self.unconfirmed = 0
        self._lock = threading.Lock()
        try:
            self._p = KafkaProducer(acks="all", retries=5, linger_ms=5, **options)
        except KafkaError as e:
            raise MetadataTopicError(f"metadata topic {topic}: producer: {e}") from None

    def apply(self, changes: Iterable[Change], at: Any, new_from: Any = None) -> int:
        """Publish ``changes`` effective at ``at``; returns after the broker stored them."""
        from kafka.errors import KafkaError

        t, first = ms(at), (ms(new_from) if new_from is not None else None)
        todo = [c for c in changes if c.obj is None or c.obj.attrs() != self.meta.current(c.kind, c.key)]
        todo = [c for c in todo if c.obj is not None or self.meta.current(c.kind, c.key) is not None]
        if not todo:
            return 0
        failure = f"metadata changes to {self.topic} not stored"
        with self._lock:
            try:
                futures = [
                    self._p.send(self.topic, key=k, value=v, headers=h)
                    for k, v, h in (encode(c, t, first) for c in todo)
                ]
            except KafkaError as e:
                raise MetadataTopicError(f"{failure}: {e}") from None
            stored = kafka_producer.flush(self._p, futures, failure=failure, error=MetadataTopicError)
            last = max(m.offset for m in stored)
        self.published += len(todo)
        if self.subscriber is not None and not self.subscriber.wait_for(last):  # read our own writes
            # Not silent: the next diffs are computed against a view that lags the topic, so a
            # deletion of a key this replica has not read yet could be missed until a relist.
            self.unconfirmed += 1
            log.warning(
                "metadata topic %s: own write at offset %d not read back within the timeout; "
                "this replica's view lags the topic",
                self.topic,
                last,
            )
        return len(todo)

    def replace_all(
        self, kinds: Iterable[str], objects: Iterable[Obj], at: Any, source: str = "", new_from: Any = None
    ) -> int:
        return self.apply(self.meta.replace_changes(kinds, objects, source), at, new_from)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        kafka_producer.close(self._p, "metadata producer")


class InventoryPublisher:
    """Publishes an inventory file through a :class:`TopicWriter` when started."""

    def __init__(self, writer: TopicWriter, path: Path):
        self.writer, self.path = writer, path

    def start(self) -> None:
        from pipeline.metadata.inventory import apply_inventory

        apply_inventory(self.writer, self.path, strict=False)

    def stop(self) -> None:
        pass


class MetadataSubscriber:
    """Reads the metadata topic from the beginning into a :class:`MetadataStore`, then follows it.

    No consumer group (every replica reads everything) and no committed offsets (each start
    replays the compacted topic; re-applying a state already known is a no-op). ``start``
    returns once the topic is read up to its end, or after ``sync_timeout_s``.
    """

    def __init__(
        self, meta: MetadataStore, topic: str, options: dict[str, Any], sync_timeout_s: float = 60.0
    ):
        self.meta, self.topic, self.options = meta, topic, options
        self.sync_timeout_s = sync_timeout_s
        self.malformed = 0
        self.applied = 0
        self.position = 0  # next offset to read
        self.synced = threading.Event()
        self._moved = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._c: Any = None
        self._end = 0

    def start(self) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError

        try:
            self._c = KafkaConsumer(group_id=None, enable_auto_commit=False, **self.options)
            tp = TopicPartition(self.topic, 0)
            self._c.assign([tp])
            self._c.seek_to_beginning(tp)
            self.position = self._c.beginning_offsets([tp])[tp]
            self._end = self._c.end_offsets([tp])[tp]
        except KafkaError as e:
            raise MetadataTopicError(f"metadata topic {self.topic}: consumer: {e}") from None
        if self.position >= self._end:
            self.synced.set()
        self._thread = threading.Thread(target=self._run, name="metadata-topic", daemon=True)
        self._thread.start()
        if not self.synced.wait(self.sync_timeout_s):
            log.warning(
                "metadata topic %s: read %d of %d records in %.0fs; naming flows with a partial view meanwhile",
                self.topic,
                self.position,
                self._end,
                self.sync_timeout_s,
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._c is not None:
            self._c.close(autocommit=False)

    def wait_for(self, offset: int, timeout_s: float = 30.0) -> bool:
        """Block until the record at ``offset`` is applied (False on timeout)."""
        deadline = time.monotonic() + timeout_s
        with self._moved:
            while self.position <= offset:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return False
                self._moved.wait(min(left, 0.5))
        return True

    def _run(self) -> None:
        from kafka.errors import KafkaError

        backoff = 0.5
        while not self._stop.is_set():
            try:
                polled = self._c.poll(timeout_ms=500, max_records=5000)
                backoff = 0.5
                for records in polled.values():
                    self.apply_records(records)
            except Exception as e:  # the broker comes back; the view must keep following
                level = logging.WARNING if isinstance(e, KafkaError) else logging.ERROR
                log.log(
                    level,
                    "metadata topic %s: %s; retrying in %.1fs",
                    self.topic,
                    e,
                    backoff,
                    exc_info=level > logging.WARNING,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if self.position >= self._end:
                self.synced.set()

    def apply_records(self, records: list[Any]) -> None:
        """Apply records in order; consecutive ones with the same time go in one store call."""
        group: list[Change] = []
        when: tuple[int, int | None] | None = None
        for r in records:
            try:
                change, at, new_from = decode(r.key, r.value, r.headers)
            except ValueError as e:
                self.malformed += 1
                log.error(
                    "metadata topic %s: record %s at offset %d is malformed, skipped: %s",
                    self.topic,
                    (r.key or b"").decode(errors="replace") or "(no key)",
                    r.offset,
                    e,
                )
                continue
            if when != (at, new_from) and group:
                self._apply(group, when)
                group = []
            group.append(change)
            when = (at, new_from)
        if group:
            self._apply(group, when)
        if records:
            with self._moved:
                self.position = records[-1].offset + 1
                self._moved.notify_all()

    def _apply(self, changes: list[Change], when: Any) -> None:
        at, new_from = when
        try:
            self.applied += len(changes)
            self.meta.apply(changes, at, new_from)
        except Exception:  # a store that cannot persist must not stop the view from following
            log.exception("metadata topic %s: applying %d changes failed", self.topic, len(changes))


def make_topic_enricher(settings: Any, store: Any = None) -> Enricher:
    """An enricher whose metadata view comes from the compacted topic (``enrich.metadata_topic``).

    The history is created/reloaded from the store as usual; the inventory and the
    Kubernetes watch (when configured) publish to the topic; the subscriber applies it.
    Sources start in order: subscriber (reads the topic up to its end), inventory,
    Kubernetes; the writer (the producer) stops last.
    """
    from netobs.transport.kafka import client_options
    from pipeline.enrich import make_enricher
    from pipeline.metadata.kubernetes import KubernetesSource

    cfg, tc = settings.enrich, settings.enrich.metadata_topic
    quiet = cfg.model_copy(
        update={"inventory": None, "kubernetes": cfg.kubernetes.model_copy(update={"enabled": False})}
    )
    enricher = make_enricher(settings.model_copy(update={"enrich": quiet}), store)
    meta = enricher.metadata
    options = client_options(settings.transport.kafka)
    ensure_topic(options, tc.topic, tc.replication_factor)
    subscriber = MetadataSubscriber(meta, tc.topic, options, tc.sync_timeout_s)
    writer = TopicWriter(meta, tc.topic, options, subscriber)
    sources: list[Any] = [subscriber]
    if cfg.inventory:
        sources.append(InventoryPublisher(writer, cfg.inventory))
    if cfg.kubernetes.enabled:
        sources.append(KubernetesSource.from_config(writer, cfg.kubernetes))  # type: ignore[arg-type]
    sources.append(writer)
    enricher.sources = tuple(sources)  # the same enricher, its sources writing through the topic
    return enricher
