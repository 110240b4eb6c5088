"""The report's "outside retention" category: counted records whose raw rows the TTL deleted,
counted from the traffic rollups, on a real embedded store (counts drawn at test time, seed printed)."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from analytics.policy.fixtures import flows_table
from analytics.report.data import category_count, outside_retention
from netobs.config import ChdbStoreConfig, StoreConfig
from netobs.store import make_store
from tests.analytics.test_policy_rules import STAGING, WEB, flow

START = datetime(2026, 6, 1, tzinfo=UTC)
END = START + timedelta(hours=6)


@pytest.fixture
def store(tmp_path):
    s = make_store(StoreConfig(retention_days=0, chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    s.start()
    yield s
    s.stop()


def _count(store, generated, rollups, raw_days=1):
    return outside_retention(store.query_arrow, store.database, START, END, generated, raw_days, rollups)


def test_outside_retention_is_counted_from_the_rollups(store):
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    per_hour = [rng.randrange(0, 7) for _ in range(6)]
    flows = []
    for h, n in enumerate(per_hour):
        for i in range(n):
            t = f"2026-06-01T{h:02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"
            flows.append(flow(WEB, STAGING, time=t, sport=40000 + i, counted=1))
        # records the counting model does not count (duplicates): never in the count
        flows += [flow(WEB, STAGING, time=f"2026-06-01T{h:02d}:30:00Z", counted=0)] * rng.randrange(3)
    store.insert(flows_table(flows))
    total = sum(per_hour)
    late = datetime(2026, 9, 1, tzinfo=UTC)  # raw records kept 1 day: the whole period is outside

    # raw rows still there (the TTL has not run): they were evaluated, nothing is outside
    assert _count(store, late, (("flows_1m", 0),))["records"] == 0

    store.execute(f"TRUNCATE TABLE `{store.database}`.flows")  # what the TTL does to old raw rows
    row = _count(store, late, (("flows_1m", 0),))
    assert (row["records"], row["at_least"], category_count(row)) == (total, False, total), row
    # the 1-minute rollup no longer reaches back; the 1-hour one does
    row = _count(store, late, (("flows_1m", 30), ("flows_1h", 400)))
    assert (row["records"], row["at_least"]) == (total, False) and "flows_1h" in row["reason"], row
    # no rollup reaches back: unknown, and said why
    row = _count(store, late, (("flows_1m", 30), ("flows_1h", 60)))
    assert row["records"] is None and "no longer reach back" in row["reason"], row
    assert category_count(row) == "unknown"
    # the rollups reach back to 03:00 only: a lower bound, the hours from 03:00 on
    generated = datetime(2026, 6, 2, 3, tzinfo=UTC)
    row = _count(store, generated, (("flows_1m", 1), ("flows_1h", 1)), raw_days=0)
    assert (row["records"], row["at_least"]) == (sum(per_hour[3:]), True), (row, per_hour)
    assert category_count(row) == f"at least {sum(per_hour[3:]):,}"
