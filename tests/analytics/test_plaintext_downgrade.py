"""The plaintext-downgrade detector on real chdb: L7 rows of a pod that loses its TLS, and of pods
that must not be reported (always plaintext, always mixed, still TLS, too little TLS history,
plaintext to a server it never spoke TLS to)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from analytics.config import AnalyticsConfig
from analytics.runner import Analysis
from collectors.sampler.agent import _table
from netobs import schema
from netobs.batch import ip_bytes
from netobs.config import ClickHouseStoreConfig, StoreConfig
from netobs.store import make_store

PODS = {  # address → (namespace, pod); '' pod: the metadata store did not know it
    "10.244.1.10": ("shop", "web-1"),
    "10.244.1.11": ("mon", "metrics-1"),
    "10.244.1.12": ("shop", "legacy-1"),
    "10.244.1.13": ("shop", "batch-1"),
    "10.244.1.14": ("shop", "new-1"),
    "10.244.1.15": ("shop", "rare-1"),
    "10.244.2.20": ("core", "api-1"),
    "10.244.2.21": ("mon", "prom-1"),
    "10.244.1.16": ("", ""),
}


def l7_rows(convs: list[tuple[str, str, int, str, datetime]], rng: random.Random):
    """One row per conversation (client, server, server port, encryption, time), some twice: the
    other pod's port saw it too, or a flush cut it."""
    rows = []
    for i, (src, dst, port, enc, t) in enumerate(convs):
        rows += [(i, src, dst, port, enc, t)] * rng.choice((1, 1, 2, 3))
    n = len(rows)

    def end(addr: str, k: int) -> str:
        return PODS.get(addr, ("", ""))[k]

    t_ms = np.array([int(r[5].timestamp() * 1000) for r in rows], dtype="int64")
    cols = {
        "time_received": t_ms, "first_seen": t_ms, "last_seen": t_ms + 500,
        "src_addr": np.array([ip_bytes(r[1]) for r in rows], dtype="V16"),
        "dst_addr": np.array([ip_bytes(r[2]) for r in rows], dtype="V16"),
        "src_port": np.array([32768 + r[0] for r in rows], dtype="uint16"),
        "dst_port": np.array([r[3] for r in rows], dtype="uint16"), "proto": np.full(n, 6, "uint8"),
        "l7_protocol": np.array(["tls" if r[4] == "tls" else "http" for r in rows], dtype=object),
        "encryption": np.array([r[4] for r in rows], dtype=object),
        "http_host": np.array(["" if r[4] == "tls" else "api.core.svc" for r in rows], dtype=object),
        "src_pod": np.array([end(r[1], 1) for r in rows], dtype=object),
        "src_namespace": np.array([end(r[1], 0) for r in rows], dtype=object),
        "src_tenant": np.array(["shop" if end(r[1], 0) == "shop" else "" for r in rows], dtype=object),
        "dst_pod": np.array([end(r[2], 1) for r in rows], dtype=object),
        "dst_namespace": np.array([end(r[2], 0) for r in rows], dtype=object),
    }  # fmt: skip
    return _table(cols, schema.L7)


def test_a_pod_that_loses_its_tls_is_found_and_plaintext_pods_are_not(store):
    _scenario(store)


@pytest.mark.integration
def test_the_same_on_a_clickhouse_server(clickhouse_server):
    """The detector's query on the real server (Debian's 18.16: DateTime, not DateTime64)."""
    cfg = StoreConfig(
        type="clickhouse",
        database="netobs_downgrade",
        clickhouse=ClickHouseStoreConfig(host=clickhouse_server.host, port=clickhouse_server.port),
    )
    server_store = make_store(cfg)
    try:
        server_store.start()
        _scenario(server_store, full_run=False)  # the components' tables are not made here
    finally:
        server_store.stop()


def _scenario(store, full_run: bool = True):
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    end = start + timedelta(hours=1)

    def before(n: int) -> list[datetime]:
        return [start - timedelta(days=rng.uniform(0.01, 20)) for _ in range(n)]

    def now(n: int) -> list[datetime]:
        return [start + timedelta(minutes=rng.uniform(0, 59)) for _ in range(n)]

    api, prom, outside = "10.244.2.20", "10.244.2.21", "203.0.113.7"
    downgraded = rng.choice(["10.244.1.10", "10.244.1.16"])  # a known pod, or an address only
    n_tls, n_plain = rng.randint(3, 40), rng.randint(1, 12)
    plain_port = rng.choice([80, 8080, 443])  # plaintext may even go to the TLS port
    convs = [(downgraded, api, 443, "tls", t) for t in before(n_tls)]
    convs += [(downgraded, api, plain_port, "plaintext", t) for t in now(n_plain)]
    convs += [(downgraded, api, 443, "tls", t) for t in now(rng.randint(0, 3))]
    # Always plaintext to its server: never a downgrade.
    convs += [("10.244.1.11", prom, 9090, "plaintext", t) for t in before(rng.randint(5, 40)) + now(5)]
    # Always mixed TLS and plaintext with the same server.
    convs += [("10.244.1.12", api, 443, "tls", t) for t in before(rng.randint(3, 20))]
    convs += [("10.244.1.12", api, 80, "plaintext", t) for t in before(rng.randint(1, 5)) + now(4)]
    # Still TLS.
    convs += [("10.244.1.13", api, 443, "tls", t) for t in before(rng.randint(3, 20)) + now(6)]
    # TLS to one server, plaintext to another it never spoke TLS to.
    convs += [("10.244.1.14", api, 443, "tls", t) for t in before(rng.randint(3, 20))]
    convs += [("10.244.1.14", outside, 80, "plaintext", t) for t in now(3)]
    # Too little TLS history (min_tls_conversations 3), counted once despite the duplicate rows.
    convs += [("10.244.1.15", api, 443, "tls", t) for t in before(rng.randint(1, 2))]
    convs += [("10.244.1.15", api, 80, "plaintext", t) for t in now(3)]
    store.insert(l7_rows(convs, rng), target=schema.L7)

    found = Analysis(store.query_arrow, store.database, AnalyticsConfig(), start, end).plaintext_downgrades()
    src = "shop/web-1" if downgraded == "10.244.1.10" else downgraded
    assert [(f.entities["src"], f.entities["dst"]) for f in found] == [(src, "core/api-1")]
    (f,) = found
    assert f.detector == "plaintext_downgrade" and f.severity == "warning"
    assert f.evidence["tls_before"] == n_tls and f.evidence["plaintext_now"] == n_plain
    assert f.evidence["plaintext_ports"] == [plain_port] and 443 in f.evidence["tls_ports"]
    assert f.evidence["http_hosts"] == ["api.core.svc"]
    assert f.to_json()["detector"] == "plaintext_downgrade"

    # Reported once: in the next window the plaintext is history.
    store.insert(
        l7_rows([(downgraded, api, plain_port, "plaintext", end + timedelta(minutes=5))], rng),
        target=schema.L7,
    )
    later = Analysis(store.query_arrow, store.database, AnalyticsConfig(), end, end + timedelta(hours=1))
    assert later.plaintext_downgrades() == []
    if not full_run:
        return
    # The whole run includes it (and the findings validate against the schema).
    run = Analysis(store.query_arrow, store.database, AnalyticsConfig(), start, end).run()
    assert [f.entities["src"] for f in run if f.detector == "plaintext_downgrade"] == [src]
