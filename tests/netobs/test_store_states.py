"""Migrations: a store left by each past schema state converges to today's schema, rows kept.

Each ``tests/testdata/store-states/*.sql`` is the schema a past commit created on the embedded
engine (``scripts/store_state.py COMMIT FILE`` writes one). Add a state whenever a release
changes the schema.
"""

from __future__ import annotations

from pathlib import Path

import chdb.session
import pytest

from netobs.config import ChdbStoreConfig, StoreConfig
from netobs.store import make_store

STATES = sorted((Path(__file__).resolve().parent.parent / "testdata" / "store-states").glob("*.sql"))


def schema(store) -> dict[str, list[tuple[str, str]]]:
    """Table → its (column, type) list, for every table and view of the database."""
    rows = store.query_arrow(
        "SELECT table, name, type FROM system.columns WHERE database = 'netobs' ORDER BY table, position"
    ).to_pylist()
    out: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        out.setdefault(r["table"], []).append((r["name"], r["type"]))
    return out


@pytest.fixture(scope="module")
def today(tmp_path_factory):
    """Today's schema, from a fresh store (closed again: chdb opens one path at a time)."""
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path_factory.mktemp("today") / "chdb")))
    store.start()
    try:
        return schema(store)
    finally:
        store.stop()


def load_state(path: Path, sql: Path) -> None:
    session = chdb.session.Session(str(path))
    try:
        session.query("CREATE DATABASE netobs")
        for stmt in sql.read_text().split(";\n\n"):
            session.query(stmt[stmt.index("CREATE") :])  # past the file's comment line
        session.query(
            "INSERT INTO netobs.flows (time_received, flow_start, flow_end, type, bytes, packets) "
            "VALUES (now64(3), now64(3), now64(3), 'ipfix', 1500, 1)"
        )
    finally:
        session.close()


def test_there_are_past_states():
    assert {p.stem for p in STATES} >= {"schema-v1", "0.1.0"}


@pytest.mark.slow
@pytest.mark.parametrize("state", STATES, ids=[p.stem for p in STATES])
def test_a_past_store_converges_to_today(tmp_path, state, today):
    load_state(tmp_path / "chdb", state)
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    store.start()
    try:
        assert schema(store) == today
        (row,) = store.query_arrow("SELECT count() AS n, sum(bytes) AS b FROM netobs.flows").to_pylist()
        assert row == {"n": 1, "b": 1500}
    finally:
        store.stop()


@pytest.mark.slow
def test_a_rollup_added_by_an_upgrade_is_filled_from_the_raw_flows(tmp_path):
    """A store from before planes_qos_1m (issue 20): the new rollup is created and filled from the
    flows already stored (counted once, scaled), not left empty for the past."""
    cfg = StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb"))
    store = make_store(cfg)
    store.start()
    try:
        store.execute(
            "INSERT INTO netobs.flows (time_received, flow_start, flow_end, event_start, event_end, type, bytes, "
            "packets, sampling_rate, counted, src_plane, tos) VALUES "
            "(now64(3), now64(3), now64(3), now64(3), now64(3), 'ipfix', 1500, 1, 10, 1, 'storage', 184), "
            "(now64(3), now64(3), now64(3), now64(3), now64(3), 'ipfix', 700, 1, 10, 0, 'storage', 184)"
        )
        store.execute("DROP VIEW netobs.planes_qos_1m_mv")
        store.execute("DROP TABLE netobs.planes_qos_1m")
    finally:
        store.stop()
    store = make_store(cfg)
    store.start()
    try:
        rows = store.query_arrow(
            "SELECT src_plane, dscp, sum(bytes) AS b FROM netobs.planes_qos_1m GROUP BY src_plane, dscp"
        ).to_pylist()
        assert rows == [{"src_plane": "storage", "dscp": 46, "b": 15000.0}]
    finally:
        store.stop()
