"""Scheduled analytics and policy checks inside a running process, on real chdb.

The scheduler runs each job once per closed window, records failures without stopping the
other job, and never runs a window twice in one process life.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from netobs.store import make_store
from netobs_app.scheduler import Scheduler
from netobs_app.settings import Settings, load

NOW = datetime(2026, 11, 30, 12, 7, tzinfo=UTC).timestamp()


@pytest.fixture
def store_and_settings(tmp_path, monkeypatch):
    def make(policy):
        cfg = tmp_path / "netobs.yaml"
        cfg.write_text(
            f"store: {{chdb: {{path: '{tmp_path / 'chdb'}'}}}}\n"
            "analytics: {schedule_interval_s: 300, lag_s: 60}\n"
            f"policy: {{file: '{policy}', window_s: 3600, lag_s: 60}}\n"
            "counting: {allowed_lateness_s: 30}\n"  # below the jobs' lag: the lag decides here
        )
        settings = load(cfg)
        store = make_store(settings.store)
        store.start()
        made.append(store)
        return settings, store

    made = []
    yield make
    for s in made:
        s.stop()


def test_each_closed_window_runs_once(store_and_settings):
    settings, store = store_and_settings("tests/testdata/policy_bank.yaml")
    sched = Scheduler(settings, store)
    sched.tick(NOW)
    assert sched.runs == {"analytics": 1, "policy": 1} and sched.errors == {}
    # 12:07 minus the 60 s lag: the newest closed 5-minute window ends 12:05, the newest closed hour 12:00
    assert sched.done["analytics"] == datetime(2026, 11, 30, 12, 5, tzinfo=UTC).timestamp()
    assert sched.done["policy"] == datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()
    sched.tick(NOW + 30)  # nothing new closed
    assert sched.runs == {"analytics": 1, "policy": 1}
    sched.tick(NOW + 300)  # the next 5-minute window closed, the hour did not
    assert sched.runs == {"analytics": 2, "policy": 1}
    assert (
        store.query_arrow("SELECT count() AS n FROM system.tables WHERE name = 'violations'")
        .column("n")[0]
        .as_py()
        == 1
    )


def test_a_failing_job_does_not_stop_the_other(store_and_settings):
    settings, store = store_and_settings("tests/testdata/policy_invalid.yaml")
    sched = Scheduler(settings, store)
    sched.tick(NOW)
    assert sched.runs == {"analytics": 1} and sched.errors == {"policy": 1}


def test_windows_wait_for_the_counting_watermark(tmp_path):
    """Late records still arrive until counting.allowed_lateness_s after a window: it is judged after."""
    settings = Settings.model_validate(
        {"analytics": {"schedule_interval_s": 300, "lag_s": 60}, "counting": {"allowed_lateness_s": 900}}
    )
    (job,) = Scheduler(settings, None).jobs()
    assert job[0] == "analytics" and job[2] == 900
