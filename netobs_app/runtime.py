"""Wires components into a process: collectors, transport, pipeline, store, control endpoint."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from alerts.service import Notifier
from collectors.service import UdpCollector
from netobs import __version__, metrics
from netobs.config import ConfigError
from netobs.control import ControlServer
from netobs.store import Store, make_store
from netobs.transport import Consumer, Transport, make_transport
from netobs_app.scheduler import Scheduler
from netobs_app.settings import Settings
from pipeline.enrich import Enricher, make_enricher
from pipeline.goflow2 import Goflow2Consumer
from pipeline.metadata.topic import MetadataSubscriber, make_topic_enricher
from pipeline.pipeline import Pipeline

log = logging.getLogger(__name__)


class Runtime:
    """A netobs process: collectors and/or pipeline, plus the control endpoint."""

    def __init__(self, settings: Settings, *, collect: bool, process: bool):
        self.settings = settings
        self.collect = collect
        self.process = process
        self.store: Store | None = None
        self.collector: UdpCollector | None = None
        self.pipeline: Pipeline | None = None
        self.enricher: Enricher | None = None
        self.scheduler: Scheduler | None = None
        self.notifier: Notifier | None = None
        self.control: ControlServer | None = None
        self.started = 0.0

    def start(self) -> None:
        s = self.settings
        metrics.build_info.labels(__version__).set(1)
        transport = make_transport(s.transport)
        if self.process:
            self.store = store = make_store(s.store)
            store.start()
            self.enricher = enricher = self._enricher(store)
            enricher.start()
            self.pipeline = Pipeline(
                s.pipeline,
                self._consumer(transport),
                store,
                drain=s.transport.type == "inprocess",
                transform=enricher.enrich,
                counter_transform=enricher.enrich_exporters,
            )
            self.pipeline.start()
            self.scheduler = Scheduler(s, store)
            self.scheduler.start()
            if s.alerts.enabled:
                self.notifier = Notifier(s.alerts, store.query_arrow, s.store.database)
                self.notifier.start()
        if self.collect:
            self.collector = UdpCollector(s.collector, transport.producer())
            self.collector.start()
        query = self.store.query_arrow if self.store is not None else None
        self.control = ControlServer(s.control.listen, query=query, health=self.health)
        self.control.start()
        self.started = time.time()
        log.info("netobs ready: control endpoint http://%s", self.control.address)

    def _consumer(self, transport: Transport) -> Consumer:
        """The pipeline's consumer: the transport's, or one that also reads goflow2 topics."""
        s = self.settings
        if not s.pipeline.goflow2_topics:
            return transport.consumer()
        if s.transport.type != "kafka":
            raise ConfigError("pipeline.goflow2_topics needs transport.type: kafka")
        if s.transport.kafka.topic in s.pipeline.goflow2_topics:
            raise ConfigError(
                f"pipeline.goflow2_topics names transport.kafka.topic ({s.transport.kafka.topic}), "
                "where netobs batches travel; goflow2 needs a topic of its own"
            )
        p = s.pipeline
        return Goflow2Consumer(s.transport.kafka, p.goflow2_topics, p.goflow2_records_per_poll)

    def _enricher(self, store: Store) -> Enricher:
        """The enricher; with ``enrich.metadata_topic.enabled`` its view comes from the Kafka topic."""
        s = self.settings
        if not s.enrich.metadata_topic.enabled:
            return make_enricher(s, store)
        return make_topic_enricher(s, store)

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uptime_s": round(time.time() - self.started, 1)}
        if self.collector is not None:
            out["listeners"] = [f"{h}:{p}" for h, p in self.collector.addresses]
            out["published_flows"] = self.collector.published
            out["lost_flows"] = self.collector.lost
            out["rejected_datagrams"] = self.collector.rejected
            out["socket_drops"] = dict(self.collector.socket_drops)
        if self.scheduler is not None:
            out["scheduled_runs"] = dict(self.scheduler.runs)
            out["scheduled_errors"] = dict(self.scheduler.errors)
        if self.pipeline is not None:
            out["rows_inserted"] = self.pipeline.rows_inserted
            out["bad_messages"] = self.pipeline.bad_messages
        for source in self.enricher.sources if self.enricher is not None else ():
            if isinstance(source, MetadataSubscriber):  # distributed mode
                out["metadata_topic"] = {
                    "position": source.position,
                    "synced": source.synced.is_set(),
                    "malformed_records": source.malformed,
                }
        return out

    def stop(self) -> None:
        """Stop in data-flow order so that nothing in flight is dropped."""
        if self.collector is not None:
            self.collector.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.notifier is not None:
            self.notifier.stop()
        if self.pipeline is not None:
            self.pipeline.stop()
        if self.enricher is not None:
            self.enricher.stop()
        if self.control is not None:
            self.control.stop()
        if self.store is not None:
            self.store.stop()

    def serve(self, wait: Callable[[], None]) -> int:
        try:
            self.start()
        except BaseException:
            self.stop()  # release what did start (sockets, the store's directory lock)
            raise
        try:
            wait()
        finally:
            log.info("netobs stopping")
            self.stop()
        return 0
