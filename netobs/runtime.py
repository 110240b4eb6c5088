"""Wires components into a process: collectors, transport, pipeline, store, control endpoint.

Part of the CLI: like :mod:`netobs.cli` it imports the component packages lazily, so
the kernel never depends on them at import time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from netobs import __version__, metrics
from netobs.config import Settings
from netobs.control import ControlServer
from netobs.store import make_store
from netobs.transport import make_transport

log = logging.getLogger(__name__)


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
        self.control: ControlServer | None = None
        self.started = 0.0

    def start(self) -> None:
        s = self.settings
        metrics.build_info.labels(__version__).set(1)
        transport = make_transport(s.transport)
        if self.process:
            from pipeline.enrich import make_enricher
            from pipeline.pipeline import Pipeline

            self.store = make_store(s.store)
            self.store.start()
            self.enricher = make_enricher(s, self.store)
            self.enricher.start()
            self.pipeline = Pipeline(
                s.pipeline,
                transport.consumer(),
                self.store,
                drain=s.transport.type == "inprocess",
                transform=self.enricher.enrich,
            )
            self.pipeline.start()
        if self.collect:
            from collectors.service import UdpCollector

            self.collector = UdpCollector(s.collector, transport.producer())
            self.collector.start()
        query = self.store.query_arrow if self.store is not None else None
        self.control = ControlServer(s.control.listen, query=query, health=self.health)
        self.control.start()
        self.started = time.time()
        log.info("netobs ready: control endpoint http://%s", self.control.address)

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uptime_s": round(time.time() - self.started, 1)}
        if self.collector is not None:
            out["listeners"] = [f"{h}:{p}" for h, p in self.collector.addresses]
            out["published_flows"] = self.collector.published
            out["lost_flows"] = self.collector.lost
        if self.pipeline is not None:
            out["rows_inserted"] = self.pipeline.rows_inserted
            out["bad_messages"] = self.pipeline.bad_messages
        return out

    def stop(self) -> None:
        """Stop in data-flow order so that nothing in flight is dropped."""
        if self.collector is not None:
            self.collector.stop()
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
