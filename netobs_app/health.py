"""Health that says what is wrong: sampled every second by the watchdog, read by ``/health``.

Degraded reasons (the process works around them, ``/readyz`` still 200): datagrams dropped by
the kernel within ``drop_window_s``, a listener silent for ``silent_after_s``, Kafka consumer
lag above ``consumer_lag_max``, scheduled runs whose last attempt failed, and what the runtime
already knew (transport down and spooling, spool filling, store unreachable). Each reason is
logged as a warning when it appears and then at most every ``warn_interval_s``; its end is
logged once.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from netobs.config import HealthConfig

log = logging.getLogger("netobs.health")


class HealthMonitor:
    def __init__(self, config: HealthConfig, clock: Any = time.monotonic):
        self.config = config
        self._clock = clock
        self._drops: deque[tuple[float, int]] = deque()
        self._datagrams: tuple[float, int] | None = None  # (when the count last changed, the count)
        self._warned: dict[str, float] = {}
        self.reasons: dict[str, str] = {}

    def sample(
        self,
        *,
        socket_drops: int | None = None,
        datagrams: int | None = None,
        consumer_lag: dict[str, int] | None = None,
        failing_jobs: dict[str, str] | None = None,
        known: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """Take one reading; returns (and keeps) the degraded reasons now."""
        now = self._clock()
        out: dict[str, str] = dict(known or {})
        if socket_drops is not None:
            self._drops.append((now, socket_drops))
            while len(self._drops) > 1 and self._drops[1][0] <= now - self.config.drop_window_s:
                self._drops.popleft()
            dropped = socket_drops - self._drops[0][1]
            if dropped > 0:
                out["socket_drops"] = (
                    f"the kernel dropped {dropped} datagrams in the last {self.config.drop_window_s:g}s "
                    "(receive buffer full: raise collector.listeners[].receive_buffer or add collectors)"
                )
        if datagrams is not None:
            if self._datagrams is None or datagrams != self._datagrams[1]:
                self._datagrams = (now, datagrams)
            silent = now - self._datagrams[0]
            if silent >= self.config.silent_after_s:
                out["collector"] = f"no datagram received for {silent:.0f}s"
        lag = sum((consumer_lag or {}).values())
        if lag > self.config.consumer_lag_max:
            worst = max((consumer_lag or {}).items(), key=lambda kv: kv[1])
            out["consumer_lag"] = f"{lag} records behind (most on {worst[0]}: {worst[1]})"
        for job, why in (failing_jobs or {}).items():
            out[f"scheduled:{job}"] = f"last run failed: {why}"
        self._warn(out, now)
        self.reasons = out
        return out

    def _warn(self, reasons: dict[str, str], now: float) -> None:
        for key, why in reasons.items():
            last = self._warned.get(key)
            if last is None or now - last >= self.config.warn_interval_s:
                log.warning("health degraded: %s: %s", key, why)
                self._warned[key] = now
        for key in [k for k in self._warned if k not in reasons]:
            log.info("health: %s recovered", key)
            del self._warned[key]
