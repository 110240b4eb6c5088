"""The viewer's grant on a real ClickHouse server (Debian's 18.16): a real read-only user, the
guard, the tenant rewrite, and a fuzz of generated statements.

18.16 has users.xml profiles (readonly) and allow_databases, but no row-level filters (its
users.xml ``<databases><db><table><filter>`` is ignored: checked by hand, all rows came back) and
no ``CREATE ROW POLICY`` (servers from 20.x): tenant scope on it is the endpoint's rewrite alone.
On a current server, create row policies for tenant users as README's security section says.
"""

from __future__ import annotations

import os
import random

import pytest

from netobs.auth import Principal
from netobs.config import ClickHouseStoreConfig, ControlAuthConfig, StoreConfig
from netobs.queryservice import QueryService
from netobs.sqlguard import Refused
from netobs.store import make_store
from tests.netobs.test_sqlguard_fuzz import SAFE, generate, pieces
from tests.services.clickhouse_server import VIEWER_PASSWORD, VIEWER_USER

pytestmark = pytest.mark.integration
DB = "netobs_sec"


@pytest.fixture(scope="module")
def server_store(clickhouse_server):
    cfg = StoreConfig(
        type="clickhouse",
        database=DB,
        insert_retries=0,
        clickhouse=ClickHouseStoreConfig(
            host=clickhouse_server.host,
            port=clickhouse_server.port,
            viewer_user=VIEWER_USER,
            viewer_password=VIEWER_PASSWORD,
        ),
    )
    store = make_store(cfg)
    store.start()
    client = clickhouse_server.client()
    client.execute(f"TRUNCATE TABLE {DB}.flows")
    client.execute(
        f"INSERT INTO {DB}.flows (time_received, src_tenant, dst_tenant, bytes) VALUES",
        [(1_700_000_000, "A", "B", 1), (1_700_000_000, "C", "D", 10), (1_700_000_000, "C", "A", 100)],
    )
    yield store, client
    store.stop()


def test_the_viewer_user_is_read_only_on_the_server(server_store):
    """The engine layer alone: the server refuses the viewer user's writes, DDL, other databases."""
    store, _ = server_store
    viewer = store._viewer
    assert viewer.execute(f"SELECT sum(bytes) FROM {DB}.flows") == [(111,)]
    for sql in (
        f"CREATE TABLE {DB}.pwn (a UInt8) ENGINE = Memory",
        f"DROP TABLE {DB}.flows",
        "SELECT * FROM file('/etc/hostname', 'TSV', 'a String')",
        "SELECT * FROM default.nothing",
    ):
        with pytest.raises(Exception, match="Code: (164|291|60)"):
            viewer.execute(sql)


def test_guarded_queries_and_tenant_scope_on_the_server(server_store):
    store, _ = server_store
    service = QueryService(store, DB, ControlAuthConfig())
    v, tenant = Principal("v", "viewer"), Principal("t", "viewer", ("A",))
    assert service.run(v, f"SELECT sum(bytes) AS b FROM {DB}.flows").column("b").to_pylist() == [111]
    assert service.run(tenant, f"SELECT sum(bytes) AS b FROM {DB}.flows").column("b").to_pylist() == [101]
    joined = f"SELECT sum(f.bytes) AS b FROM {DB}.flows AS f WHERE f.src_tenant = 'C'"
    assert service.run(tenant, joined).column("b").to_pylist() == [100]
    with pytest.raises(Refused):
        service.run(v, "SELECT * FROM remote('127.0.0.1', system.one)")


def test_fuzz_on_the_server_runs_nothing_outside_the_grant(server_store, tmp_path):
    store, client = server_store
    seed = int.from_bytes(os.urandom(4), "little")
    n = int(os.environ.get("NETOBS_FUZZ_SERVER_STATEMENTS", "600"))
    print(f"server fuzz seed {seed} ({n} statements)")
    rng = random.Random(seed)
    service = QueryService(store, DB, ControlAuthConfig())
    viewer = Principal("fuzz", "viewer")
    before = client.execute(f"SELECT name FROM system.tables WHERE database = '{DB}' ORDER BY name")
    p = {k: [x.replace("netobs.", f"{DB}.").replace("`netobs`", f"`{DB}`").replace('"netobs"', f'"{DB}"') for x in v]
         for k, v in [*pieces(str(tmp_path)).items(), *((f"safe:{k}", v) for k, v in SAFE.items())]}  # fmt: skip
    ran = 0
    for _ in range(n):
        sql = generate(rng, p)
        try:
            service.run(viewer, sql)
            ran += 1
        except Exception:  # refused by the guard or by the server: nothing ran
            continue
    assert client.execute(f"SELECT name FROM system.tables WHERE database = '{DB}' ORDER BY name") == before
    assert client.execute(f"SELECT count() FROM {DB}.flows") == [(3,)]
    assert list(tmp_path.iterdir()) == []
    print(f"server fuzz: {ran} of {n} ran")
    assert ran > 0
