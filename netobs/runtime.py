"""Wires components into a process: collectors, transport, pipeline, store, control endpoint.

Part of the CLI: like :mod:`netobs.cli` it imports the component packages lazily, so
the kernel never depends on them at import time.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netobs import __version__, metrics
from netobs.config import ConfigError, Settings
from netobs.control import ControlServer
from netobs.store import make_store
from netobs.transport import make_transport

log = logging.getLogger(__name__)


class Scheduler:
    """Runs the analytics and the policy over closed windows while the process lives.

    A window is closed ``lag_s`` after its end (exports trail traffic). Each job runs the
    newest closed window it has not run yet; a failing job is logged and counted, and the
    process goes on. Findings and violations have stable ids, so a window run twice (a
    restart) updates rather than duplicates.
    """

    def __init__(self, settings: Settings, store: Any):
        self.settings = settings
        self.store = store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.done: dict[str, float] = {}  # job → end of the last window it ran
        self.runs: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def jobs(self) -> list[tuple[str, int, int, Callable[[datetime, datetime], None]]]:
        a, p = self.settings.analytics, self.settings.policy
        # A window is judged once final: after the counting model's watermark (late records arrive).
        late = self.settings.counting.allowed_lateness_s
        out: list[tuple[str, int, int, Callable[[datetime, datetime], None]]] = []
        if a.schedule_interval_s:
            out.append(("analytics", a.schedule_interval_s, max(a.lag_s, late), self._analyze))
        if p.file is not None:
            out.append(("policy", p.window_s, max(p.lag_s, late), self._policy))
        return out

    def start(self) -> None:
        if self.jobs():
            self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(60)

    def tick(self, now: float) -> None:
        for name, every, lag, job in self.jobs():
            end = (now - lag) // every * every
            if end <= self.done.get(name, 0.0):
                continue
            start_dt, end_dt = (datetime.fromtimestamp(t, UTC) for t in (end - every, end))
            try:
                job(start_dt, end_dt)
                self.runs[name] = self.runs.get(name, 0) + 1
            except Exception:  # a failing job must not stop collection or the other jobs
                self.errors[name] = self.errors.get(name, 0) + 1
                log.exception("scheduled %s over [%s, %s) failed", name, start_dt, end_dt)
            self.done[name] = end

    def _run(self) -> None:
        while not self._stop.wait(5.0):
            self.tick(time.time())

    def _analyze(self, start: datetime, end: datetime) -> None:
        from analytics import store as fstore
        from analytics.runner import Analysis

        a, db = self.settings.analytics, self.settings.store.database
        findings = Analysis(self.store.query_arrow, db, a, start, end, a.history_days).run()
        fstore.save(self.store.query_arrow, db, findings)
        log.info("analytics [%s, %s): %d findings", start, end, len(findings))

    def _policy(self, start: datetime, end: datetime) -> None:
        from analytics.policy.evaluate import evaluate
        from analytics.policy.loader import load_policy

        p = self.settings.policy
        assert p.file is not None
        evaluate(self.store, load_policy(p.file), start, end, window_s=p.window_s)
        log.info("policy %s evaluated over [%s, %s)", p.file, start, end)


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

    def __init__(self, settings: Settings, *, collect: bool, process: bool):
        self.settings = settings
        self.collect = collect
        self.process = process
        self.store: Any = None
        self.collector: Any = None
        self.pipeline: Any = None
        self.enricher: Any = None
        self.scheduler: Scheduler | None = None
        self.notifier: Any = None
        self.control: ControlServer | None = None
        self.transport: Any = None
        self.started = 0.0
        self.fatal = ""  # why a component died; the process then exits with status 1
        self._stopping = threading.Event()

    def start(self) -> None:
        s = self.settings
        metrics.build_info.labels(__version__).set(1)
        transport = self.transport = make_transport(s.transport, spool_dir(s))
        if self.process:
            from pipeline.enrich import make_enricher
            from pipeline.pipeline import Pipeline

            self.store = make_store(s.store)
            self.store.start()
            self.enricher = self._enricher(make_enricher)
            self.enricher.start()
            self.pipeline = Pipeline(
                self._pipeline_config(),
                self._consumer(transport),
                self.store,
                drain=s.transport.type == "inprocess" and not s.transport.spool.enabled,
                transform=self.enricher.enrich,
                counter_transform=self.enricher.enrich_exporters,
            )
            self.pipeline.start()
            self.scheduler = Scheduler(s, self.store)
            self.scheduler.start()
            if s.alerts.enabled:
                from alerts.service import Notifier

                self.notifier = Notifier(s.alerts, self.store.query_arrow, s.store.database)
                self.notifier.start()
        if self.collect:
            from collectors.service import UdpCollector

            self.collector = UdpCollector(s.collector, transport.producer())
            self.collector.start()
        query = self.store.query_arrow if self.store is not None else None
        self.control = ControlServer(s.control.listen, query=query, health=self.health)
        self.control.start()
        self.started = time.time()
        threading.Thread(target=self._watch, name="watchdog", daemon=True).start()
        log.info("netobs ready: control endpoint http://%s", self.control.address)

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
        if thread is not None and not thread.is_alive() and not self.pipeline._stop.is_set():
            out["pipeline"] = "pipeline thread ended"
        return out

    def _watch(self) -> None:
        """End the process (SIGTERM to itself: a clean stop, exit status 1) when a component died."""
        while not self._stopping.wait(1.0):
            dead = self.failures()
            if dead:
                self.fatal = "; ".join(f"{k}: {v}" for k, v in dead.items())
                metrics.component_failures.inc()
                log.critical("%s; stopping netobs", self.fatal)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def _consumer(self, transport: Any) -> Any:
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
        from pipeline.goflow2 import Goflow2Consumer

        p = s.pipeline
        return Goflow2Consumer(s.transport.kafka, p.goflow2_topics, p.goflow2_records_per_poll)

    def _enricher(self, make_enricher: Callable[..., Any]) -> Any:
        """The enricher; with ``enrich.metadata_topic.enabled`` its view comes from the Kafka topic."""
        s = self.settings
        if not s.enrich.metadata_topic.enabled:
            return make_enricher(s, self.store)
        from pipeline.metadata.topic import make_topic_enricher

        return make_topic_enricher(s, self.store)

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
        if self.scheduler is not None:
            out["scheduled_runs"] = dict(self.scheduler.runs)
            out["scheduled_errors"] = dict(self.scheduler.errors)
        if self.pipeline is not None:
            out["rows_inserted"] = self.pipeline.rows_inserted
            out["bad_messages"] = self.pipeline.bad_messages
            out["quarantined_rows"] = self.pipeline.quarantined_rows
        for source in getattr(self.enricher, "sources", ()):
            if hasattr(source, "malformed"):  # the metadata topic subscriber (distributed mode)
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
        """What is being worked around now: the store or transport away, a spool filling."""
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
        if self.transport is not None:
            self.transport.close()
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
        return 1 if self.fatal else 0
