"""Offline paths around the enricher: enriched decode output and ``netobs ingest``.

The CLI feeds decoded flow batches in (it owns the decoders; ``pipeline`` does not import
``collectors``); these helpers enrich them and either turn them into JSON-ready fields or
insert them into the configured store, with progress on stderr and a summary.
"""

from __future__ import annotations

import time
from typing import IO, Any

import pyarrow as pa

from netobs import ddl, schema
from netobs.batch import FlowBatch
from pipeline.enrich import Enricher

ENRICH_FIELDS = tuple(c.name for c in schema.FLOW_COLUMNS if c.group == "enrich")


def enriched_fields(enricher: Enricher, batch: FlowBatch) -> dict[str, list[str]]:
    """The enrichment columns of a decoded batch, as lists (for the decode contract's dicts)."""
    table = enricher.enrich(pa.Table.from_batches([batch.to_arrow()]))
    out = {}
    for name in ENRICH_FIELDS:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):  # as the decode contract writes times: ISO-8601 UTC, ms
            out[name] = [t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" for t in col.to_pylist()]
        else:
            out[name] = col.to_pylist()
    return out


class Ingest:
    """Decoded batches → enrich → store, in inserts of ``batch_rows``; counts for the summary.

    Flows go to ``flows``; interface counter records (sFlow counter samples), when given, to
    ``interface_counters`` with the exporter's node and center named. Progress is one
    rewritten line on a terminal, and a plain line every ``log_interval_s`` otherwise (a
    log file or a CI console gets no carriage returns).
    """

    log_interval_s = 10.0

    def __init__(
        self, enricher: Enricher, store: Any, progress: IO[str] | None = None, batch_rows: int = 100_000
    ):
        self.enricher, self.store, self.progress = enricher, store, progress
        self.batch_rows = batch_rows
        self._pending: list[FlowBatch] = []
        self._counters: list[
            Any
        ] = []  # collectors.counters.CounterBatch (pipeline does not import collectors)
        self._rows = 0
        self.records = self.rejects = self.datagrams = self.counter_records = self.refused_retention = 0
        self._tty = bool(progress is not None and getattr(progress, "isatty", lambda: False)())
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self._shown = 0.0

    def add(self, flows: FlowBatch, rejects: int = 0, counters: Any = None, datagrams: int = 1) -> None:
        """One decoded datagram's flows (or ``datagrams`` datagrams' flows), counter records, and how
        many records were refused."""
        self.datagrams += datagrams
        self.rejects += rejects
        if counters is not None and len(counters):
            self._counters.append(counters)
            self._rows += len(counters)
        if len(flows):
            self._pending.append(flows)
            self._rows += len(flows)
            start = flows.columns.get("flow_start")
            if start is not None:
                lo, hi = int(start.min()), int(start.max())
                self.first_ms = lo if self.first_ms is None else min(self.first_ms, lo)
                self.last_ms = hi if self.last_ms is None else max(self.last_ms, hi)
        if self._rows >= self.batch_rows:
            self.flush()
        self._show()

    def flush(self) -> None:
        if self._pending:
            table = pa.Table.from_batches([FlowBatch.concat(self._pending).to_arrow()])
            refused = self.enricher.refused_retention
            enriched = self.enricher.enrich(table)
            if enriched.num_rows:
                self.store.insert(enriched)
            self.refused_retention += self.enricher.refused_retention - refused
            self.records += enriched.num_rows
        if self._counters:
            batch = type(self._counters[0]).concat(self._counters)
            table = pa.Table.from_batches([batch.to_arrow()])
            target = ddl.TABLES[schema.COUNTERS].name
            self.store.insert(self.enricher.enrich_exporters(table), target=target)
            self.counter_records += table.num_rows
        self._pending, self._counters, self._rows = [], [], 0

    def _show(self, force: bool = False) -> None:
        now = time.monotonic()
        interval = 0.5 if self._tty else self.log_interval_s
        if self.progress is None or (not force and now - self._shown < interval):
            return
        self._shown = now
        line = (
            f"ingest: {self.datagrams} datagrams, {self.records + self.counter_records + self._rows} records, "
            f"{self.rejects} rejects"
        )
        self.progress.write(f"\r{line}" if self._tty else f"{line}\n")
        self.progress.flush()

    def summary(self) -> str:
        """records, rejects and the flow_start range of what was stored."""
        self._show(force=True)
        if self.progress is not None and self._tty:
            self.progress.write("\n")
        span = "no flows"
        if self.first_ms is not None:
            span = f"{_iso(self.first_ms)} .. {_iso(self.last_ms or self.first_ms)}"
        refused = ""
        if self.refused_retention:
            refused = (
                f"; REFUSED {self.refused_retention} records received longer ago than the store keeps "
                f"(store.retention_days={self.enricher.retention_days}): they were not stored"
            )
        return (
            f"ingested {self.records} records, {self.counter_records} interface counter records, "
            f"{self.rejects} rejects, flow_start {span}{refused}"
        )


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"
