"""Wires components into a process: collectors, transport, pipeline, store, control endpoint."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alerts.service import Notifier
from collectors.service import UdpCollector
from dashboards import explorer_http
from netobs import __version__, chhttp, metrics
from netobs.audit import AUDIT_TABLE, AuditLog
from netobs.auth import Authenticator
from netobs.config import ConfigError
from netobs.control import ControlServer, Route, health_routes, metrics_route
from netobs.queryservice import QueryService
from netobs.store import Store, StoreError, make_store
from netobs.store.chdb import ChdbStore
from netobs.transport import Consumer, Transport, TransportError, make_transport
from netobs_app import components
from netobs_app.health import HealthMonitor
from netobs_app.scheduler import Scheduler
from netobs_app.settings import Settings
from pipeline.enrich import Enricher, make_enricher
from pipeline.goflow2 import Goflow2Consumer
from pipeline.metadata.topic import MetadataSubscriber, make_topic_enricher
from pipeline.pipeline import Pipeline
from pipeline.samples import sample_transform

log = logging.getLogger(__name__)
T = TypeVar("T")


def read_routes(queries: QueryService, database: str) -> list[Route]:
    """The control endpoint's read-only viewer routes: the flow explorer, and for an embedded store
    (which has no server of its own) the ClickHouse HTTP interface. Both run their SQL through
    ``queries`` (main's guard, readonly settings, tenant scope and audit)."""
    routes = explorer_http.routes(queries, database)
    if isinstance(queries.store, ChdbStore):
        routes += chhttp.routes(queries)
    return routes


def spool_dir(s: Settings) -> Path | None:
    """Where this process spools (see :class:`netobs.config.SpoolConfig`)."""
    if not s.transport.spool.enabled:
        return None
    if s.transport.spool.dir is not None:
        return s.transport.spool.dir
    if s.transport.type == "inprocess":
        return s.store.chdb.path.with_name(s.store.chdb.path.name + "-spool")
    return Path("./var/spool")


class _SpoolView:
    """The embedded mode's spool seen like a spooling producer: always 'up', it is the queue."""

    up = True
    reason = ""

    def __init__(self, spool: Any):
        self.spool = spool


class Runtime:
    """A netobs process: collectors and/or pipeline, plus the control endpoint."""

    def __init__(
        self,
        settings: Settings,
        *,
        collect: bool,
        process: bool,
        schedule: bool | None = None,
        read: bool = False,
    ):
        """``schedule``: run the analytics and alerts (default: with the pipeline); ``process``
        False with ``schedule`` True is the scheduler alone (``netobs schedule``). ``read``: open
        the store for the read routes (explorer, query) even without pipeline or scheduler
        (``netobs ui``); then no transport is made."""
        self.settings = settings
        self.collect = collect
        self.process = process
        self.schedule = process if schedule is None else schedule
        self.read = read or self.process or self.schedule
        self.elector: Any = None
        self.store: Store | None = None
        self.collector: UdpCollector | None = None
        self.sampler: Any = None
        self.pipeline: Pipeline | None = None
        self.enricher: Enricher | None = None
        self.scheduler: Scheduler | None = None
        self.notifier: Notifier | None = None
        self.control: ControlServer | None = None
        self.metrics_server: ControlServer | None = None
        self.queries: QueryService | None = None
        self.monitor = HealthMonitor(settings.control.health)
        self.transport: Any = None
        self.started = 0.0
        self.fatal = ""  # why a component died; the process then exits with status 1
        self._stopping = threading.Event()

    def start(self) -> None:
        s = self.settings
        metrics.build_info.labels(__version__).set(1)
        try:
            authenticator = Authenticator(s.control.auth)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.collect or self.process or self.schedule:  # not for the read routes alone
            transport = self.transport = self._wait(
                "transport", lambda: make_transport(s.transport, spool_dir(s))
            )
        if self.read:
            self.store = store = make_store(s.store, components.schema(s))
            self._wait("store", store.start)
            self.queries = QueryService(store, s.store.database, s.control.auth, self._audit_log(store))
        if self.process:
            self.enricher = enricher = self._enricher(store)
            enricher.start()
            self.pipeline = Pipeline(
                self._pipeline_config(),
                self._wait("transport", lambda: self._consumer(transport)),
                store,
                drain=s.transport.type == "inprocess" and not s.transport.spool.enabled,
                transform=enricher.enrich,
                counter_transform=enricher.enrich_exporters,
                sample_transform=sample_transform(enricher),
            )
            self.pipeline.start()
        if self.schedule:
            if s.control.leader_election.enabled:
                self.elector = self._elector()
                self.elector.start()
            else:
                self._start_scheduled()
        if self.collect:
            self.collector = UdpCollector(s.collector, self._wait("transport", transport.producer))
            self.collector.start()
            if s.sampler.enabled:
                from collectors.sampler import SampleAgent

                self.sampler = SampleAgent(s.sampler, transport.producer())
                self.sampler.start()
        routes: list[Route] = [metrics_route(), *health_routes(self.health, self.ready)]
        if self.queries is not None:
            routes.append(self.queries.route())
        if self.queries is not None:
            routes.extend(read_routes(self.queries, s.store.database))
        self.control = ControlServer(s.control, routes, authenticator=authenticator)
        self.control.start()
        if s.control.metrics_listen:
            public = [metrics_route(), *health_routes(self.health, self.ready)]
            self.metrics_server = ControlServer(
                s.control, public, listen=s.control.metrics_listen, tls=False, check_host=False
            )
            self.metrics_server.start()
        self.started = time.time()
        threading.Thread(target=self._watch, name="watchdog", daemon=True).start()
        log.info("netobs ready: control endpoint %s://%s", self.control.scheme, self.control.address)

    def _audit_log(self, store: Store) -> AuditLog:
        """The query audit log, its table created (on pre-19 servers without TTL and column comments)."""
        s = self.settings
        days = s.control.auth.audit_retention_days
        spec = AUDIT_TABLE
        if store.dialect != "modern":  # pre-19: no TTL, and column comments break Replicated tables there
            columns = tuple(dataclasses.replace(c, comment="") for c in AUDIT_TABLE.columns)
            spec = dataclasses.replace(AUDIT_TABLE, ttl=None, columns=columns)
        cluster = s.store.clickhouse.cluster if s.store.type == "clickhouse" else None
        for stmt in spec.create(
            s.store.database, cluster=cluster, replicated=s.store.replicated, retention_days=days
        ):
            store.execute(stmt)
        audit = AuditLog(
            lambda t, target: store.insert(t, target=target),
            store.query_arrow,
            s.store.database,
            insert_json=getattr(store, "insert_json", None),  # chdb: a third of the CPU per row
        )
        audit.start()
        return audit

    def _start_scheduled(self) -> None:
        """The analytics and policy scheduler and the alert notifier (the singleton's work)."""
        s, store = self.settings, self.store
        assert store is not None
        self.scheduler = Scheduler(s, store)
        self.scheduler.start()
        if s.alerts.enabled:
            self.notifier = Notifier(s.alerts, store.query_arrow, s.store.database)
            self.notifier.start()

    def _elector(self) -> Any:
        from kubernetes import client, config

        from netobs.lease import LeaderElector

        le = self.settings.control.leader_election
        if le.in_cluster:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            api = client.ApiClient()
        else:
            path = str(le.kubeconfig) if le.kubeconfig else None
            api = config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]

        def lost() -> None:  # as client-go does: a replica that lost the Lease ends; it restarts clean
            self.fatal = "leader election: the lease was lost"
            os.kill(os.getpid(), signal.SIGTERM)

        return LeaderElector(
            api,
            le.namespace,
            le.lease_name,
            le.identity or socket.gethostname(),
            lease_duration_s=le.lease_duration_s,
            renew_deadline_s=le.renew_deadline_s,
            retry_period_s=le.retry_period_s,
            on_started=self._start_scheduled,
            on_stopped=lost,
        )

    def _wait(self, what: str, attempt: Callable[[], T]) -> T:
        """``attempt()``, retried with jittered exponential backoff while Kafka or the ClickHouse
        server is not up yet (a compose stack or a cluster starts in any order), for at most
        ``control.startup_wait_s``; then its error goes up (exit 1)."""
        c = self.settings.control
        deadline, delay, tries = time.monotonic() + c.startup_wait_s, 0.5, 0
        while True:
            tries += 1
            try:
                result = attempt()
            except (StoreError, TransportError) as e:
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping.is_set():
                    raise
                pause = min(delay * random.uniform(0.8, 1.2), c.startup_max_backoff_s, left)
                metrics.startup_retries.labels(what).inc()
                log.warning("%s not ready (%s); attempt %d, retrying in %.1f s", what, e, tries, pause)
                self._stopping.wait(pause)
                delay = min(delay * 2, c.startup_max_backoff_s)
                continue
            if tries > 1:
                log.info("%s ready after %d attempts", what, tries)
            return result

    def _pipeline_config(self) -> Any:
        """The pipeline's config; the embedded mode keeps dead letters in a directory by default."""
        s = self.settings
        if s.pipeline.dead_letter_dir is not None or s.transport.type != "inprocess":
            return s.pipeline
        path = s.store.chdb.path
        return s.pipeline.model_copy(update={"dead_letter_dir": path.with_name(path.name + "-dead-letter")})

    # ---- failing loudly ----------------------------------------------------------------------
    def failures(self) -> dict[str, str]:
        """Components that stopped working for good (a dead thread): the process must end."""
        out: dict[str, str] = {}
        if self.collector is not None:
            out.update({f"listener {k}": v for k, v in self.collector.dead().items()})
        thread = getattr(self.pipeline, "_thread", None)
        if (
            thread is not None
            and self.pipeline is not None
            and not thread.is_alive()
            and not self.pipeline._stop.is_set()
        ):
            out["pipeline"] = "pipeline thread ended"
        return out

    def _watch(self) -> None:
        """End the process (SIGTERM to itself: a clean stop, exit status 1) when a component died;
        every second, take a health reading (which logs degraded reasons, rate-limited)."""
        while not self._stopping.wait(1.0):
            try:
                self.sample_health()
            except Exception:  # a reading must never stop the watchdog
                log.exception("health reading failed")
            dead = self.failures()
            if dead:
                self.fatal = "; ".join(f"{k}: {v}" for k, v in dead.items())
                metrics.component_failures.inc()
                log.critical("%s; stopping netobs", self.fatal)
                os.kill(os.getpid(), signal.SIGTERM)
                return

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

    def sample_health(self) -> dict[str, str]:
        """One reading of everything health looks at (the watchdog calls it every second)."""
        c, sched = self.collector, self.scheduler
        consumer = getattr(self.pipeline, "consumer", None) if self.pipeline is not None else None
        lag = getattr(consumer, "lag", None)
        return self.monitor.sample(
            socket_drops=sum(c.read_socket_drops().values()) if c is not None else None,
            datagrams=(c.datagrams + c.rejected) if c is not None else None,
            consumer_lag=lag() if callable(lag) else None,
            failing_jobs=dict(sched.failing) if sched is not None else None,
            known=self._known_degraded(),
        )

    def ready(self) -> bool:
        """Ready: started, and nothing that stops the data from flowing (store or transport away)."""
        reasons = self.monitor.reasons
        return self.started > 0 and "store" not in reasons and "transport" not in reasons

    def health(self) -> dict[str, Any]:
        """``status``: ok, degraded (working around a problem: ``reasons`` say which) or failing
        (a component died: the process is about to exit)."""
        reasons = self.degraded()
        failing = self.failures()
        out: dict[str, Any] = {
            "status": "failing" if failing else "degraded" if reasons else "ok",
            "reasons": {**failing, **reasons},
            "uptime_s": round(time.time() - self.started, 1),
        }
        for producer in self._spooled():
            out["spool"] = {"transport_up": producer.up, **producer.spool.stats()}
            out["lost_flows"] = producer.spool.dropped_rows()
        if self.collector is not None:
            out["listeners"] = [f"{h}:{p}" for h, p in self.collector.addresses]
            out["published_flows"] = self.collector.published
            out["lost_flows"] = out.get("lost_flows", 0) + self.collector.lost
            out["rejected_datagrams"] = self.collector.rejected
            out["socket_drops"] = dict(self.collector.socket_drops)
        if self.elector is not None:
            out["leader"] = self.elector.leading.is_set()
        if self.scheduler is not None:
            out["scheduled_runs"] = dict(self.scheduler.runs)
            out["scheduled_errors"] = dict(self.scheduler.errors)
        if self.pipeline is not None:
            out["rows_inserted"] = self.pipeline.rows_inserted
            out["bad_messages"] = self.pipeline.bad_messages
            out["quarantined_rows"] = self.pipeline.quarantined_rows
        for source in self.enricher.sources if self.enricher is not None else ():
            if isinstance(source, MetadataSubscriber):  # distributed mode
                out["metadata_topic"] = {
                    "position": source.position,
                    "synced": source.synced.is_set(),
                    "malformed_records": source.malformed,
                }
        return out

    def _spooled(self) -> list[Any]:
        """The producers that keep a spool (Kafka's), and the in-process spool's stand-in."""
        found = list(getattr(self.transport, "_producers", ()))
        spool = getattr(self.transport, "spool", None)
        if spool is not None:
            found.append(_SpoolView(spool))
        return found

    def degraded(self) -> dict[str, str]:
        """What is being worked around now (the last reading's reasons, or a fresh one)."""
        if self.started and self.monitor.reasons is not None and not self._stopping.is_set():
            return {**self.monitor.reasons, **self._known_degraded()}
        return self._known_degraded()

    def _known_degraded(self) -> dict[str, str]:
        """What the components say: the store or transport away, a spool filling."""
        out: dict[str, str] = {}
        for producer in self._spooled():
            if not producer.up:
                out["transport"] = f"unavailable, batches go to the spool: {producer.reason}"
            if producer.spool.disk_full:
                out["spool"] = f"disk full at {producer.spool.directory}: batches are dropped (counted)"
            elif producer.spool.depth() and not isinstance(producer, _SpoolView):  # that one is the queue
                out.setdefault("spool", f"{producer.spool.depth()} batches waiting")
        if self.pipeline is not None and self.pipeline.store_error:
            out["store"] = f"inserts paused and retried: {self.pipeline.store_error}"
        return out

    def stop(self) -> None:
        """Stop in data-flow order so that nothing in flight is dropped."""
        self._stopping.set()
        if self.sampler is not None:
            self.sampler.stop()
        if self.collector is not None:
            self.collector.stop()
        if self.elector is not None:
            self.elector.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.notifier is not None:
            self.notifier.stop()
        if self.pipeline is not None:
            self.pipeline.stop()
        if self.enricher is not None:
            self.enricher.stop()
        if self.transport is not None:
            self.transport.close()
        if self.control is not None:
            self.control.stop()
        if self.metrics_server is not None:
            self.metrics_server.stop()
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
        return 1 if self.fatal else 0
