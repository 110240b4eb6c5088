"""The ``clickhouse`` store against a real ClickHouse server process (Debian's 18.16).

18.16 predates IPv6, DateTime64 and LowCardinality, so the store detects the version and
uses the legacy dialect of the same schema: this exercises the driver path (connect,
converge, columnar insert, select, errors, reconnect) for real.
"""

import threading
import time

import numpy as np
import pyarrow as pa
import pytest

from netobs.batch import FlowBatch, ip_bytes
from netobs.config import ClickHouseStoreConfig, StoreConfig
from netobs.store import StoreError, StoreUnavailable, make_store

pytestmark = pytest.mark.integration


def store_for(server, **kw):
    cfg = StoreConfig(
        type="clickhouse",
        database=kw.pop("database", "netobs_it"),
        retry_backoff_s=kw.pop("retry_backoff_s", 0.5),
        insert_retries=kw.pop("insert_retries", 6),
        clickhouse=ClickHouseStoreConfig(host=server.host, port=server.port, connect_timeout_s=2, **kw),
    )
    return make_store(cfg)


def batch(n, start=0):
    now = int(time.time() * 1000)
    return pa.Table.from_batches(
        [
            FlowBatch(
                {
                    "time_received": np.full(n, now, dtype="int64"),
                    "flow_start": np.full(n, now - 1000, dtype="int64"),
                    "type": np.array(["sflow"] * n, dtype=object),
                    "src_addr": np.array([ip_bytes("10.244.1.11")] * n, dtype="V16"),
                    "dst_addr": np.array([ip_bytes("2001:db8::9")] * n, dtype="V16"),
                    "dst_port": np.full(n, 443, dtype="uint16"),
                    "packets": np.arange(start, start + n, dtype="uint64"),
                    "bytes": np.full(n, 1500, dtype="uint64"),
                }
            ).to_arrow()
        ]
    )


def rows(store, db="netobs_it"):
    return store.query_arrow(f"SELECT count() AS n, sum(packets) AS p FROM {db}.flows").to_pylist()[0]


def test_converge_insert_select(clickhouse_server):
    s = store_for(clickhouse_server, database="netobs_conv")
    s.start()
    s.start()  # idempotent
    assert s.dialect == "legacy"
    s.insert(batch(100))
    got = s.query_arrow(
        "SELECT IPv6NumToString(src_addr) AS src, IPv6NumToString(dst_addr) AS dst, dst_port, type "
        "FROM netobs_conv.flows LIMIT 1"
    ).to_pylist()
    assert got == [{"src": "::ffff:10.244.1.11", "dst": "2001:db8::9", "dst_port": 443, "type": "sflow"}]
    assert rows(s, "netobs_conv") == {"n": 100, "p": sum(range(100))}
    s.stop()


def test_insert_survives_server_restart(clickhouse_server):
    s = store_for(clickhouse_server)
    s.start()
    s.insert(batch(50, 0))
    clickhouse_server.stop()
    # The second insert runs while the server is down; the server comes back while the
    # store retries. (The server is started from the main thread: the fixture ties the
    # child's life to the thread that spawned it.)
    errors = []

    def second_insert():
        try:
            s.insert(batch(50, 50))
        except Exception as e:
            errors.append(e)

    inserter = threading.Thread(target=second_insert)
    inserter.start()
    time.sleep(2.0)
    clickhouse_server.start()
    inserter.join(60)
    assert not errors and not inserter.is_alive()
    assert rows(s) == {"n": 100, "p": sum(range(100))}
    s.stop()


def test_server_down_is_unavailable_not_a_crash(clickhouse_server):
    s = store_for(clickhouse_server, insert_retries=1, retry_backoff_s=0.1, database="netobs_down")
    s.start()
    clickhouse_server.stop()
    try:
        with pytest.raises(StoreUnavailable, match="unreachable"):
            s.insert(batch(5))
    finally:
        clickhouse_server.start()
    s.insert(batch(5))  # the same store object recovers once the server is back
    assert rows(s, "netobs_down")["n"] == 5


def test_server_errors_are_store_errors(clickhouse_server):
    s = store_for(clickhouse_server, database="netobs_err")
    s.start()
    with pytest.raises(StoreError) as e:
        s.query_arrow("SELECT nonsense FROM nowhere")
    assert not isinstance(e.value, StoreUnavailable)


def test_wrong_password_is_a_clear_error(clickhouse_server):
    from pydantic import SecretStr

    s = store_for(clickhouse_server, user="netobs", password=SecretStr("wrong"), database="netobs_auth")
    with pytest.raises(StoreError, match="(?i)password|authentic"):
        s.start()
