"""Leader election on a Kubernetes Lease (``coordination.k8s.io/v1``), as client-go does it.

Several replicas of a singleton (the analytics and alerts scheduler) run; the one holding the
Lease works, the others wait. The holder renews every ``retry_period_s``; a candidate takes the
Lease when its holder has not renewed it for ``lease_duration_s``, judged by the candidate's own
clock from when it last saw the record change (not the holder's clock: clocks skew). Every
write carries the resourceVersion read, so two candidates can never both win (409 Conflict).
A leader that cannot renew for ``renew_deadline_s`` stops leading (``on_stopped``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)


class LeaderElector:
    """Campaign for ``namespace/name`` as ``identity``; ``on_started``/``on_stopped`` run in its thread."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration_s: float = 15,
        renew_deadline_s: float = 10,
        retry_period_s: float = 2,
        on_started: Callable[[], None] = lambda: None,
        on_stopped: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not retry_period_s < renew_deadline_s < lease_duration_s:
            raise ValueError("leader election needs retry_period_s < renew_deadline_s < lease_duration_s")
        from kubernetes import client

        self.api = client.CoordinationV1Api(api_client)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration_s, self.renew_deadline_s = lease_duration_s, renew_deadline_s
        self.retry_period_s = retry_period_s
        self.on_started, self.on_stopped, self.clock = on_started, on_stopped, clock
        self.leading = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0

    # ---- one attempt -------------------------------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        """One read-modify-write of the Lease; True when this identity holds it afterwards."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        now = datetime.now(UTC)
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(now, now, 0),
            )
            try:
                self.api.create_namespaced_lease(self.namespace, body)
            except ApiException as e2:
                if e2.status == 409:  # another candidate created it first
                    return False
                raise
            self._see(self.identity, now)
            return True
        spec = lease.spec or client.V1LeaseSpec()
        holder, renewed = spec.holder_identity or "", spec.renew_time
        record = (holder, str(renewed))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        duration = spec.lease_duration_seconds or self.lease_duration_s
        if holder and holder != self.identity and self.clock() - self._observed_at < duration:
            return False  # held by someone alive
        transitions = (spec.lease_transitions or 0) + (holder != self.identity)
        acquired = spec.acquire_time if holder == self.identity and spec.acquire_time else now
        lease.spec = self._spec(acquired, now, transitions)
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as e:
            if e.status == 409:  # someone wrote it since we read it
                return False
            raise
        self._see(self.identity, now)
        return True

    def _spec(self, acquired: datetime, renewed: datetime, transitions: int) -> Any:
        from kubernetes import client

        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=math.ceil(self.lease_duration_s),  # never shorter than asked
            acquire_time=acquired,
            renew_time=renewed,
            lease_transitions=transitions,
        )

    def _see(self, holder: str, renewed: datetime) -> None:
        self._observed, self._observed_at = (holder, str(renewed)), self.clock()

    def release(self) -> None:
        """Give the Lease up (a clean stop): the next candidate need not wait out the duration."""
        from kubernetes.client.rest import ApiException

        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except (ApiException, OSError) as e:
            log.warning("lease %s/%s: release failed: %s", self.namespace, self.name, e)

    # ---- the campaign --------------------------------------------------------------------------
    def _attempt(self) -> bool:
        try:
            return self.try_acquire_or_renew()
        except Exception as e:  # the API server away: not leading this round
            log.warning("lease %s/%s: %s", self.namespace, self.name, e)
            return False

    def run(self) -> None:
        while not self._stop.is_set():
            if self._attempt():
                log.info("lease %s/%s: %s is the leader", self.namespace, self.name, self.identity)
                self.leading.set()
                self.on_started()
                last_renew = self.clock()
                while not self._stop.wait(self.retry_period_s):
                    if self._attempt():
                        last_renew = self.clock()
                    elif self.clock() - last_renew >= self.renew_deadline_s:
                        break
                self.leading.clear()
                if self._stop.is_set():
                    self.release()
                    return
                log.error("lease %s/%s: leadership lost", self.namespace, self.name)
                self.on_stopped()
            self._stop.wait(self.retry_period_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)


__all__ = ["LeaderElector"]
