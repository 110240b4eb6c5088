"""Leader election on a Kubernetes Lease, with the official client against the fake API server
(real wire format, optimistic concurrency): one leader at a time, failover when the leader dies,
a clean stop hands over at once, a leader that cannot renew steps down."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("kubernetes")
from kubernetes import client  # noqa: E402

from netobs.lease import LeaderElector  # noqa: E402
from tests.pipeline._fake_apiserver import FakeApiServer  # noqa: E402

pytestmark = pytest.mark.slow
TIMES = {"lease_duration_s": 1.5, "renew_deadline_s": 1.0, "retry_period_s": 0.2}


@pytest.fixture
def api():
    server = FakeApiServer().start()
    yield server
    server.stop()


def _client(server: FakeApiServer) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = server.url
    return client.ApiClient(cfg)


def _electors(server: FakeApiServer, n: int, events: list[str]) -> list[LeaderElector]:
    out = []
    for i in range(n):
        name = f"replica-{i}"
        out.append(
            LeaderElector(
                _client(server),
                "netobs",
                "netobs-scheduler",
                name,
                on_started=lambda name=name: events.append(f"start {name}"),
                on_stopped=lambda name=name: events.append(f"stop {name}"),
                **TIMES,
            )
        )
    return out


def _watch_leaders(electors: list[LeaderElector], stop: threading.Event, overlaps: list[int]) -> None:
    while not stop.is_set():
        overlaps.append(sum(e.leading.is_set() for e in electors))
        time.sleep(0.01)


def _wait(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_one_leader_failover_and_clean_handover(api) -> None:
    events: list[str] = []
    electors = _electors(api, 3, events)
    stop, overlaps = threading.Event(), []
    watcher = threading.Thread(target=_watch_leaders, args=(electors, stop, overlaps), daemon=True)
    watcher.start()
    for e in electors:
        e.start()
    try:
        _wait(lambda: any(e.leading.is_set() for e in electors))
        time.sleep(1.0)  # several renew rounds: the others must keep losing
        (first,) = [e for e in electors if e.leading.is_set()]
        assert api.leases[("netobs", "netobs-scheduler")]["spec"]["holderIdentity"] == first.identity

        # The leader dies without releasing (a crashed pod): another takes over after the duration.
        first.release = lambda: None  # type: ignore[method-assign]
        first.stop()
        _wait(lambda: any(e.leading.is_set() for e in electors if e is not first))
        last_renewal = max(t for _, holder, t in api.lease_writes if holder == first.identity)
        took = time.monotonic() - last_renewal
        # It waited out the silent holder: a lease duration after its last renewal (judged by the
        # candidate's own clock from when it saw the record change: up to one retry period earlier).
        assert took >= TIMES["lease_duration_s"] - TIMES["retry_period_s"] - 0.05, took
        (second,) = [e for e in electors if e.leading.is_set()]
        spec = api.leases[("netobs", "netobs-scheduler")]["spec"]
        assert spec["holderIdentity"] == second.identity and spec["leaseTransitions"] == 1

        # A clean stop releases: the last one takes over well before a lease duration.
        (third,) = [e for e in electors if e not in (first, second)]
        stopped = time.monotonic()
        second.stop()
        _wait(lambda: third.leading.is_set())
        assert time.monotonic() - stopped < TIMES["lease_duration_s"]
    finally:
        stop.set()
        watcher.join()
        for e in electors:
            e.stop()
    assert max(overlaps) == 1, "two replicas led at once"
    assert events[0].startswith("start ") and sum(ev.startswith("start") for ev in events) == 3


def test_leader_that_cannot_renew_steps_down(api) -> None:
    events: list[str] = []
    (e,) = _electors(api, 1, events)
    e.start()
    try:
        _wait(lambda: e.leading.is_set())
        api.down = True
        lost = time.monotonic()
        _wait(lambda: "stop replica-0" in events)
        assert TIMES["renew_deadline_s"] - 0.3 <= time.monotonic() - lost < 5
        assert not e.leading.is_set()
        api.down = False
        _wait(lambda: e.leading.is_set())  # and campaigns again once the API server is back
    finally:
        e.stop()


def test_bad_timings_are_refused(api) -> None:
    with pytest.raises(ValueError, match="retry_period_s < renew_deadline_s < lease_duration_s"):
        LeaderElector(
            _client(api), "ns", "l", "me", lease_duration_s=5, renew_deadline_s=10, retry_period_s=1
        )
