"""Runs the analytics and the policy over closed windows inside ``netobs run``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from analytics import findings_table as fstore
from analytics.policy.evaluate import evaluate
from analytics.policy.loader import load_policy
from analytics.runner import Analysis
from netobs.store import Store
from netobs_app.settings import Settings

log = logging.getLogger(__name__)


class Scheduler:
    """Runs the analytics and the policy over closed windows while the process lives.

    A window is closed ``lag_s`` after its end (exports trail traffic). Each job runs the
    newest closed window it has not run yet; a failing job is logged and counted, and the
    process goes on. Findings and violations have stable ids, so a window run twice (a
    restart) updates rather than duplicates.
    """

    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.done: dict[str, float] = {}  # job → end of the last window it ran
        self.runs: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        #: Jobs whose last run failed → why (health reports them degraded until one succeeds).
        self.failing: dict[str, str] = {}

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
                self.failing.pop(name, None)
            except Exception as e:  # a failing job must not stop collection or the other jobs
                self.errors[name] = self.errors.get(name, 0) + 1
                self.failing[name] = f"{type(e).__name__}: {e}"[:300]
                log.exception("scheduled %s over [%s, %s) failed", name, start_dt, end_dt)
            self.done[name] = end

    def _run(self) -> None:
        while not self._stop.wait(5.0):
            self.tick(time.time())

    def _analyze(self, start: datetime, end: datetime) -> None:
        a, db = self.settings.analytics, self.settings.store.database
        findings = Analysis(self.store.query_arrow, db, a, start, end, a.history_days).run()
        fstore.save(self.store.query_arrow, db, findings)
        log.info("analytics [%s, %s): %d findings", start, end, len(findings))

    def _policy(self, start: datetime, end: datetime) -> None:
        p = self.settings.policy
        assert p.file is not None
        evaluate(self.store, load_policy(p.file), start, end, window_s=p.window_s)
        log.info("policy %s evaluated over [%s, %s)", p.file, start, end)
