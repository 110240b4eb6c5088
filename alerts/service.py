"""The notifier: read new findings and violations → route → send → record, once per interval.

Constructed inert; ``run_once(now)`` does one pass, ``start()``/``stop()`` run it on a thread.
Each pass first records what it read (delivery state, then cursors), then delivers what is due:
new or changed alerts, firing ones not repeated for the route's ``repeat_interval_s``, and those
a sink failed to take last time. A sink that is down is counted and retried next run; a store
that is down fails the run (counted, logged), and the next run starts over from the cursors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pyarrow as pa

from alerts import metrics, routing, source, state
from alerts.config import AlertsConfig
from alerts.model import Alert, merge, settle
from alerts.sinks import Sink, SinkError, make_sink

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    """What one pass did; ``planned`` lists (target, alerts) deliveries (all of them in a dry run)."""

    read: dict[str, int] = field(default_factory=dict)
    recorded: int = 0
    unrouted: int = 0
    sent: int = 0
    failed: int = 0
    planned: list[tuple[str, list[Alert]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Notifier:
    def __init__(
        self,
        config: AlertsConfig,
        query: Callable[[str], pa.Table],
        database: str,
        *,
        dry_run: bool = False,
        sinks: dict[str, Sink] | None = None,
    ):
        self.config = config
        self.query = query
        self.database = database
        self.dry_run = dry_run
        self.sinks = sinks if sinks is not None else {n: make_sink(c) for n, c in config.sinks.items()}
        self.routes = {r.name: r for r in config.routes}
        self._ready = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- schedule ---------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.config.interval_s)

    def tick(self) -> RunReport | None:
        """One pass that never raises: a failure is logged and counted, the next pass retries."""
        try:
            return self.run_once(datetime.now(UTC))
        except Exception:
            metrics.run_errors.inc()
            log.exception("alerts: run failed; retrying in %ss", self.config.interval_s)
            return None

    # --- one pass ---------------------------------------------------------------------------
    def run_once(self, now: datetime, since: datetime | None = None) -> RunReport:
        metrics.runs.inc()
        report = RunReport()
        if not self._ready and not self.dry_run:
            for sql in state.create_tables(self.database, self.config.state_retention_days):
                self.query(sql)
            self._ready = True
        incoming, cursors = self._read(now, since, report)
        known = state.load(self.query, self.database, incoming) if self._has_state() else {}
        changed = self._merge(known, incoming, now, report)
        if not self.dry_run:
            report.recorded = state.save(self.query, self.database, changed.values())
            state.save_cursors(self.query, self.database, cursors)
        self._deliver({**known, **changed}, now, report)
        return report

    def _has_state(self) -> bool:
        if self._ready:
            return True
        t = self.query(
            f"SELECT count() AS n FROM system.tables WHERE database = {source.quote(self.database)} "
            f"AND name = {source.quote(state.NOTIFICATIONS)}"
        )
        return bool(t.column("n")[0].as_py())

    def _read(
        self, now: datetime, since: datetime | None, report: RunReport
    ) -> tuple[dict[str, Alert], dict]:
        """New evidence per fingerprint (merged within the batch) and the cursors after it."""
        c = self.config
        tables = source.existing_tables(self.query, self.database)
        saved = state.load_cursors(self.query, self.database) if self._has_state() else {}
        first = datetime.fromtimestamp(now.timestamp() - c.initial_lookback_s, UTC)
        incoming: dict[str, Alert] = {}
        cursors = {}
        for name in (source.FINDINGS, source.VIOLATIONS):
            cursor = source.start_cursor(name, since) if since else saved.get(name)
            cursor = cursor or source.start_cursor(name, first)
            alerts: list[Alert] = []
            if name in tables:
                alerts, cursor = source.read(
                    self.query, self.database, name, cursor, c.min_severity, c.max_rows, c.links
                )
            report.read[name] = len(alerts)
            cursors[name] = cursor
            for a in alerts:  # tombstones are kept: they may resolve a known alert
                prior = incoming.get(a.fingerprint)
                incoming[a.fingerprint] = a if prior is None else merge(prior, a, now) or a
        return incoming, cursors

    def _resolve_after(self, alert: Alert) -> float:
        c = self.config
        return c.findings_resolve_after_s if alert.source == "findings" else c.violations_resolve_after_s

    def _merge(
        self,
        known: dict[tuple[str, str], state.Delivery],
        incoming: dict[str, Alert],
        now: datetime,
        report: RunReport,
    ) -> dict[tuple[str, str], state.Delivery]:
        """Deliveries whose alert changed: new evidence routed to its targets, and expiries."""
        changed = {}
        for fp, alert in incoming.items():
            targets = routing.targets(self.config.routes, alert)
            if not targets and not alert.deleted:  # no route wants it: counted, not silently gone
                metrics.dropped_rows.labels(alert.source, "unrouted").inc()
                report.unrouted += 1
            for tgt in targets:
                old = known.get((fp, tgt))
                merged = merge(old.alert if old else None, alert, now)
                if merged is None:
                    continue
                merged = settle(merged, now, self._resolve_after(merged))
                if old is None:
                    changed[(fp, tgt)] = state.Delivery(fp, tgt, merged)
                elif merged != old.alert:
                    changed[(fp, tgt)] = replace(old, alert=merged)
        for key, d in known.items():
            if key not in changed:
                settled = settle(d.alert, now, self._resolve_after(d.alert))
                if settled != d.alert:
                    changed[key] = replace(d, alert=settled)
        return changed

    def _deliver(
        self, current: dict[tuple[str, str], state.Delivery], now: datetime, report: RunReport
    ) -> None:
        now_ms = int(now.timestamp() * 1000)
        by_target: dict[str, list[state.Delivery]] = {}
        for d in current.values():
            route_name, sink = routing.split_target(d.target)
            route = self.routes.get(route_name)
            if route is None or sink not in route.sinks or sink not in self.sinks:
                continue  # a route or sink removed from the config: its old state ages out (TTL)
            if d.due(now_ms, route.repeat_interval_s):
                by_target.setdefault(d.target, []).append(d)
        done: list[state.Delivery] = []
        for tgt, deliveries in sorted(by_target.items()):
            route_name, sink = routing.split_target(tgt)
            route = self.routes[route_name]
            by_fp = {d.fingerprint: d for d in deliveries}
            for alerts in routing.group(route, [d.alert for d in deliveries]):
                report.planned.append((tgt, alerts))
                if self.dry_run:
                    continue
                group = [by_fp[a.fingerprint] for a in alerts]
                done.extend(self._send(route_name, sink, group, now, now_ms, report))
            metrics.pending.labels(route_name, sink).set(
                0 if self.dry_run else sum(1 for d in done if d.target == tgt and d.failures)
            )
        if done:
            state.save(self.query, self.database, done)

    def _send(
        self,
        route: str,
        sink: str,
        group: list[state.Delivery],
        now: datetime,
        now_ms: int,
        report: RunReport,
    ) -> list[state.Delivery]:
        try:
            self.sinks[sink].send([d.alert for d in group], route, now)
        except Exception as e:  # a sink's bug must not block the other targets or lose the record
            if not isinstance(e, SinkError):
                log.exception("alerts: sink %s raised", sink)
            metrics.delivery_failures.labels(route, sink).inc()
            report.failed += len(group)
            report.errors.append(f"{route}/{sink}: {e}")
            log.warning(
                "alerts: %d alerts to %s/%s not delivered (retried next run): %s", len(group), route, sink, e
            )
            return [replace(d, failures=d.failures + 1) for d in group]
        for d in group:
            metrics.sent.labels(route, sink, d.alert.state).inc()
        report.sent += len(group)
        return [d.sent(now_ms) for d in group]


__all__ = ["Notifier", "RunReport"]
