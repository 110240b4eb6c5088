"""Metadata changes on a compacted Kafka topic: every replica converges to the same view.

Real Kafka broker (tests/services/kafka.py). One replica's sources publish through a
:class:`TopicWriter`; two subscribers (two pipeline replicas) and a third started after
everything happened must hold identical version histories and name flows identically,
also across a deletion (tombstone) and an IP reused by another tenant's pod.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from netobs.batch import FlowBatch, ip_bytes
from pipeline.enrich import Enricher
from pipeline.metadata.inventory import apply_inventory
from pipeline.metadata.model import Namespace, Pod
from pipeline.metadata.topic import (
    MetadataSubscriber,
    MetadataTopicError,
    TopicWriter,
    decode,
    encode,
    ensure_topic,
    topic_config,
)
from pipeline.metadata.versions import OPEN, Change, MetadataStore
from tests.pipeline.test_kubernetes import apiserver  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration
INVENTORY = Path(__file__).resolve().parent.parent / "testdata" / "inventory.yaml"
T = 1_700_000_000_000


def view(meta: MetadataStore) -> list[tuple]:
    return sorted(
        (v.kind, v.key, v.valid_from, v.valid_to, repr(sorted(v.attrs.items()))) for v in meta.versions()
    )


def closed_at(meta: MetadataStore, kind: str, key: str) -> int | None:
    """``valid_to`` of the newest version of ``(kind, key)`` once a deletion closed it; None while that
    version is open or the replica has not read the object at all.

    Waiting for "nothing valid at t" on a replica is not waiting for a deletion: a replica that has
    not read the object yet satisfies it too (issue 4).
    """
    mine = [v for v in meta.versions(kind) if v.key == key]
    return mine[-1].valid_to if mine and mine[-1].valid_to != OPEN else None


def named(meta: MetadataStore, addr: str, times: list[int]) -> list[tuple[str, str, str]]:
    n = len(times)
    cols = {
        "src_addr": np.array([ip_bytes(addr)] * n, dtype="V16"),
        "dst_addr": np.array([ip_bytes("8.8.8.8")] * n, dtype="V16"),
        "flow_start": np.asarray(times, dtype="int64"),
    }
    t = Enricher(meta).enrich(pa.Table.from_batches([FlowBatch(cols).to_arrow()]))
    return list(
        zip(*(t.column(c).to_pylist() for c in ("src_pod", "src_namespace", "src_tenant")), strict=True)
    )


@pytest.fixture
def options(kafka_broker):
    return {"bootstrap_servers": [kafka_broker.bootstrap]}


def subscriber(meta, topic, options):
    s = MetadataSubscriber(meta, topic, options, sync_timeout_s=30)
    s.start()
    return s


def test_record_layout_round_trips_objects_and_tombstones():
    pod = Pod(name="a", namespace="ns", ip="10.0.0.5", start="2023-11-14T22:13:20Z", labels={"app": "x"})
    key, value, headers = encode(Change.upsert(pod, "kubernetes"), T + 5, None)
    assert key == b"pod/ns/a"
    change, at, new_from = decode(key, value, headers)
    assert (change.obj, change.source, at, new_from) == (pod, "kubernetes", T + 5, None)
    key, value, headers = encode(Change.delete("pod", "ns/a", "kubernetes"), T + 9, 0)
    assert value is None
    change, at, new_from = decode(key, value, headers)
    assert (change.kind, change.key, change.obj, at, new_from) == ("pod", "ns/a", None, T + 9, 0)


def test_replicas_converge_through_the_compacted_topic(tmp_path, kafka_broker, options, caplog):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    topic = f"meta-{time.time_ns()}"
    ensure_topic(options, topic)
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        assert topic_config(admin, topic, "cleanup.policy") == "compact"
    finally:
        admin.close()
    ensure_topic(options, topic)  # idempotent

    replica_a, replica_b = MetadataStore(), MetadataStore()
    sub_a, sub_b = subscriber(replica_a, topic, options), subscriber(replica_b, topic, options)
    writer = TopicWriter(replica_a, topic, options, sub_a)
    try:
        # adds: the inventory (sites, networks, namespaces, static pods), as the inventory source does
        apply_inventory(writer, INVENTORY, at=T)
        published = writer.published
        apply_inventory(writer, INVENTORY, at=T + 1)  # unchanged file: nothing new on the topic
        assert writer.published == published
        # an update: a pod's labels change
        old = Pod(name="pod-x", namespace="retail-web", ip="10.244.1.50", node="node-1", workload="web")
        writer.apply([Change.upsert(old, "kubernetes")], T + 1000)
        writer.apply([Change.upsert(old.model_copy(update={"labels": {"v": "2"}}), "kubernetes")], T + 2000)
        # a deletion (tombstone), then the IP reused by another tenant's pod
        writer.apply([Change.delete("pod", "retail-web/pod-x", "kubernetes")], T + 3000)
        writer.apply(
            [Change.upsert(Namespace(name="cards", tenant="cards", zone="pci"), "kubernetes")], T + 3000
        )
        new = Pod(name="pod-y", namespace="cards", ip="10.244.1.50", node="node-2", workload="card")
        writer.apply([Change.upsert(new, "kubernetes")], T + 4000)
        # two malformed records: counted and skipped, the ones after still apply
        producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        producer.send(
            topic,
            key=b"pod/retail-web/broken",
            value=b"{not json",
            headers=[("netobs.v", b"1"), ("netobs.at", b"1")],
        )
        producer.send(topic, key=b"gizmo/x", value=b"{}", headers=[("netobs.v", b"1"), ("netobs.at", b"1")])
        producer.flush()
        producer.close()
        with caplog.at_level(logging.ERROR, logger="pipeline.metadata.topic"):
            writer.apply([Change.upsert(Namespace(name="late", tenant="t"), "kubernetes")], T + 5000)
            assert sub_b.wait_for(sub_a.position - 1)
        assert sub_a.malformed == 2 and sub_b.malformed == 2
        assert "pod/retail-web/broken" in caplog.text and "gizmo/x" in caplog.text

        assert view(replica_a) == view(replica_b)
        assert replica_a.snapshot(T + 5000)["namespace"]["late"].tenant == "t"
        # a third replica started after all of it reads the same history from the topic
        replica_c = MetadataStore()
        sub_c = subscriber(replica_c, topic, options)
        try:
            assert sub_c.synced.is_set() and view(replica_c) == view(replica_a)
        finally:
            sub_c.stop()
        # the reused IP is named by what was true at each flow's time, on every replica
        times = [T + 1500, T + 3500, T + 4500]
        want = [("pod-x", "retail-web", "retail"), ("", "", "retail"), ("pod-y", "cards", "cards")]
        for meta in (replica_a, replica_b, replica_c):
            assert named(meta, "10.244.1.50", times) == want
    finally:
        writer.stop()
        sub_a.stop()
        sub_b.stop()
    # the deletion is a real tombstone on the topic, keyed by the object
    c = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    records = [(m.key, m.value) for m in c]
    c.close()
    assert (b"pod/retail-web/pod-x", None) in records
    assert b"network/retail" in {k for k, _ in records}


def test_a_topic_that_is_not_compacted_is_refused(topic_factory, options):
    topic = topic_factory(1, **{"cleanup.policy": "delete"})
    with pytest.raises(MetadataTopicError, match="cleanup.policy=delete; it needs compact"):
        ensure_topic(options, topic)


def test_pipeline_replicas_wired_by_config_share_the_view(tmp_path, kafka_broker):
    """``enrich.metadata_topic.enabled``: a ``netobs pipeline`` runtime (chdb, inventory) publishes;
    a second replica without sources builds the same view from the topic alone."""
    from netobs_app.runtime import Runtime
    from netobs_app.settings import Settings
    from pipeline.metadata.topic import make_topic_enricher
    from tests.services._proc import free_port

    topic = f"meta-cfg-{time.time_ns()}"
    kafka = {"bootstrap_servers": [kafka_broker.bootstrap], "topic": f"flows-{topic}", "group_id": topic}
    common = {
        "transport": {"type": "kafka", "kafka": kafka},
        "analytics": {"schedule_interval_s": 0},
    }
    a = Settings(
        **common,
        store={"chdb": {"path": str(tmp_path / "chdb")}},
        control={"listen": f"127.0.0.1:{free_port()}"},
        enrich={"inventory": str(INVENTORY), "metadata_topic": {"enabled": True, "topic": topic}},
    )
    b = Settings(**common, enrich={"metadata_topic": {"enabled": True, "topic": topic, "sync_timeout_s": 30}})
    runtime = Runtime(a, collect=False, process=True)
    runtime.start()
    try:
        replica_b = make_topic_enricher(b)
        replica_b.start()
        try:
            versions = view(runtime.enricher.metadata)
            health = runtime.health()["metadata_topic"]
            assert health["synced"] and health["malformed_records"] == 0 and health["position"] > 0
            assert versions and versions == view(replica_b.metadata)
            assert {"network", "pod", "namespace", "node"} <= {v[0] for v in versions}
            # persisted by the replica with a store, as without the topic
            n = runtime.store.query_arrow("SELECT count() AS n FROM netobs.metadata_versions FINAL")
            assert n.column("n")[0].as_py() == len(versions)
            at = [T, T + 10]
            assert named(runtime.enricher.metadata, "10.244.1.12", at) == named(
                replica_b.metadata, "10.244.1.12", at
            )
            assert named(replica_b.metadata, "10.244.1.12", at)[0] == ("pod-c", "payments", "payments")
        finally:
            replica_b.stop()
    finally:
        runtime.stop()


def test_kubernetes_watch_publishes_through_the_topic(apiserver, kafka_broker, options):  # noqa: F811
    """The Kubernetes source writes to the topic, not to a store: a delete becomes a tombstone, the
    IP reused by another tenant's pod is named by time on both replicas."""
    from tests.pipeline.test_kubernetes import T0, Clock, pod, source, wait_for

    topic = f"meta-k8s-{time.time_ns()}"
    ensure_topic(options, topic)
    replica_a, replica_b = MetadataStore(), MetadataStore()
    sub_a, sub_b = subscriber(replica_a, topic, options), subscriber(replica_b, topic, options)
    writer = TopicWriter(replica_a, topic, options, sub_a)
    clock = Clock(T0)
    src = source(writer, apiserver, clock)
    apiserver.put("pods", pod("web", "retail", "10.16.0.7", "node-1", T0 - 60_000))
    src.start()
    try:
        assert src.wait_synced(30)  # every publish waits for the broker: slower than a local store
        # synced means the writer's own replica (a) read the list; b may still lag behind the topic
        assert wait_for(lambda: "retail/web" in replica_b.snapshot(T0).get("pod", {}), 30)
        clock.t = T0 + 10_000
        apiserver.delete("pods", "retail", "web")
        # the tombstone itself, read by b: only then may the clock move on (the source stamps the
        # deletion with the time it sees the event)
        assert wait_for(lambda: closed_at(replica_b, "pod", "retail/web") is not None, 30)
        assert closed_at(replica_b, "pod", "retail/web") == T0 + 10_000
        clock.t = T0 + 20_000
        apiserver.put("pods", pod("pay", "payments", "10.16.0.7", "node-1", T0 + 20_000))
        assert wait_for(lambda: "payments/pay" in replica_b.snapshot(T0 + 20_000).get("pod", {}), 30)
    finally:
        src.stop()
        writer.stop()
        sub_a.stop()
        sub_b.stop()
    assert view(replica_a) == view(replica_b)
    times = [T0 - 1, T0 + 5_000, T0 + 15_000, T0 + 25_000]
    want = [
        ("web", "retail", "retail"),
        ("web", "retail", "retail"),
        ("", "", "shared"),
        ("pay", "payments", "payments"),
    ]
    assert named(replica_a, "10.16.0.7", times) == named(replica_b, "10.16.0.7", times) == want


def test_a_replica_lagging_the_topic_is_not_taken_for_one_that_read_a_deletion(
    apiserver,  # noqa: F811
    kafka_broker,
    options,
):
    """Issue 4, the interleaving driven explicitly: replica b reads the topic only after the source
    published the pod, its deletion and the IP's reuse. Before that, "no pod valid at the deletion
    time" already holds on b, so a wait on it proves nothing; :func:`closed_at` does not hold until b
    read the tombstone. Once b catches up it has a's history: every record carries the source's time,
    not the time a replica happens to apply it."""
    from tests.pipeline.test_kubernetes import T0, Clock, pod, source, wait_for

    topic = f"meta-k8s-lag-{time.time_ns()}"
    ensure_topic(options, topic)
    replica_a, replica_b = MetadataStore(), MetadataStore()
    sub_a = subscriber(replica_a, topic, options)
    writer = TopicWriter(replica_a, topic, options, sub_a)
    clock = Clock(T0)
    src = source(writer, apiserver, clock)
    apiserver.put("pods", pod("web", "retail", "10.16.0.7", "node-1", T0 - 60_000))
    sub_b = None
    src.start()
    try:
        assert src.wait_synced(30)
        assert "retail/web" in replica_a.snapshot(T0)["pod"]
        assert not replica_b.snapshot(T0 + 10_000).get("pod")  # the old wait: already true on b
        assert closed_at(replica_b, "pod", "retail/web") is None
        clock.t = T0 + 10_000
        apiserver.delete("pods", "retail", "web")
        # a is read before every publish returns: in step with the source
        assert wait_for(lambda: closed_at(replica_a, "pod", "retail/web") is not None, 30)
        clock.t = T0 + 20_000
        apiserver.put("pods", pod("pay", "payments", "10.16.0.7", "node-1", T0 + 20_000))
        assert wait_for(lambda: "payments/pay" in replica_a.snapshot(T0 + 20_000).get("pod", {}), 30)
        assert closed_at(replica_b, "pod", "retail/web") is None  # b has still read nothing
        sub_b = subscriber(replica_b, topic, options)  # returns once b read the topic to its end
        assert sub_b.synced.is_set()
    finally:
        src.stop()
        writer.stop()
        sub_a.stop()
        if sub_b is not None:
            sub_b.stop()
    assert (
        closed_at(replica_a, "pod", "retail/web") == closed_at(replica_b, "pod", "retail/web") == T0 + 10_000
    )
    assert view(replica_a) == view(replica_b)
    times = [T0 - 1, T0 + 5_000, T0 + 15_000, T0 + 25_000]
    want = [
        ("web", "retail", "retail"),
        ("web", "retail", "retail"),
        ("", "", "shared"),
        ("pay", "payments", "payments"),
    ]
    assert named(replica_a, "10.16.0.7", times) == named(replica_b, "10.16.0.7", times) == want


def test_a_write_not_read_back_is_counted_and_logged_not_silent(kafka_broker, options, caplog):
    """A replica that cannot read its own writes back (here: its subscriber is stopped) diffs
    against a lagging view; the writer says so instead of carrying on silently."""
    topic = f"meta-lag-{time.time_ns()}"
    ensure_topic(options, topic)
    meta = MetadataStore()
    sub = subscriber(meta, topic, options)
    sub.stop()
    writer = TopicWriter(meta, topic, options, sub)
    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.metadata.topic"):
            writer.apply([Change.upsert(Namespace(name="retail", tenant="retail"), "test")], 1_000)
    finally:
        writer.stop()
    assert writer.published == 1 and writer.unconfirmed == 1
    assert any("not read back" in r.getMessage() for r in caplog.records)
