"""The DNS tunnelling detector on real chdb: L7 rows of a tunnelling pod and of an ordinary one."""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime, timedelta

import numpy as np

from analytics.config import AnalyticsConfig
from analytics.runner import Analysis
from collectors.sampler.agent import _table
from netobs import schema
from netobs.batch import ip_bytes


def l7_dns(src: str, pod: str, names: list[str], t_ms: int, copies: int = 1):
    rows = [(i, name) for i, name in enumerate(names) for _ in range(copies)]  # both ports' copies
    n = len(rows)
    cols = {
        "time_received": np.full(n, t_ms, "int64"), "first_seen": np.full(n, t_ms, "int64"),
        "src_addr": np.array([ip_bytes(src)] * n, dtype="V16"),
        "dst_addr": np.array([ip_bytes("10.96.0.10")] * n, dtype="V16"),
        "src_port": np.array([30000 + i for i, _ in rows], dtype="uint16"),
        "dst_port": np.full(n, 53, "uint16"), "proto": np.full(n, 17, "uint8"),
        "l7_protocol": np.full(n, "dns", dtype=object), "src_pod": np.full(n, pod, dtype=object),
        "src_namespace": np.full(n, "shop", dtype=object),
        "dns_qname": np.array([name for _, name in rows], dtype=object),
        "dns_qname_length": np.array([len(name) for _, name in rows], dtype="uint16"),
    }  # fmt: skip
    return _table(cols, schema.L7)


def test_a_pod_tunnelling_through_dns_is_found(store):
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    t_ms = int((now + timedelta(minutes=10)).timestamp() * 1000)

    def chunk() -> str:  # base32-like data labels, as iodine and dnscat2 send them
        return ".".join("".join(rng.choices(string.ascii_lowercase + "234567", k=rng.randint(40, 63)))
                        for _ in range(rng.randint(2, 3))) + ".t.evil.example"  # fmt: skip

    tunnel = [chunk() for _ in range(rng.randint(25, 60))]
    ordinary = [f"{w}.bank.example" for w in ("api", "db", "cache", "auth")] * 10
    store.insert(l7_dns("10.244.1.10", "exfil-1", tunnel, t_ms, copies=2), target=schema.L7)
    store.insert(l7_dns("10.244.1.11", "web-1", ordinary, t_ms), target=schema.L7)
    analysis = Analysis(store.query_arrow, store.database, AnalyticsConfig(), now, now + timedelta(hours=1))
    found = analysis.dns_tunnelling()
    assert [f.entities["pod"] for f in found] == ["exfil-1"]
    assert found[0].evidence["long_queries"] == len(tunnel)  # both ports' copies count once
    assert found[0].evidence["longest"] == max(map(len, tunnel))
