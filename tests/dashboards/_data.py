"""A small bank's traffic through the real path: synthetic flows and counters enriched by the
pipeline's Enricher with the test inventory, inserted into an embedded store (its rollups and
exporter health filled by the store's own materialized views), plus findings and violations
written by the analytics' own code.

Three hours from T0, one record set per minute:
- pod-a (dc1) → pod-d (dc2), IPFIX 1:1 from node-1, ingress + egress copy (one counts), except
  for 40 minutes of silence of node-1 (a collection gap) from T0+60min;
- pod-d (dc2) → pod-dr (dc3, the DR center, other site), sFlow 1:512 from node-3;
- pod-b → pod-a inside dc1, sFlow with an unknown rate from node-3, which is not their node: node-1
  covers them, so the counting model does not count node-3's observation;
- pod-c (payments, dc1) → the mainframe database (core-banking, dc1) on 5432 from node-1,
  silent with it.
Interface counters: node-9's uplink every 30 s at 1 Gbit/s, 10% busy.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from analytics.findings import Finding
from analytics.findings_table import save
from analytics.policy.evaluate import evaluate
from analytics.policy.loader import load_policy
from collectors.counters import CounterBatch
from netobs import schema
from netobs.batch import FlowBatch, ip_bytes
from netobs.config import ChdbStoreConfig, ControlConfig, StoreConfig
from netobs.store import make_store
from netobs_app.settings import Settings
from pipeline.config import EnrichConfig
from pipeline.enrich import make_enricher
from pipeline.samples import sample_transform

TESTDATA = Path(__file__).resolve().parent.parent / "testdata"
INVENTORY = TESTDATA / "inventory.yaml"
POLICY = TESTDATA / "policy_bank.yaml"
T0 = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)
MINUTES = 180
GAP = range(60, 100)  # node-1 silent
START, END = T0, T0 + timedelta(minutes=MINUTES)
CENTERS = ("dc1", "dc2", "dc3")  # the inventory's: the dashboards must not name them
IPS = {"a": "10.244.1.10", "b": "10.244.1.11", "c": "10.244.1.12", "d": "10.244.2.10",
       "dr": "10.245.1.10", "db": "172.30.5.10"}  # fmt: skip
NODE1, NODE3, NODE9 = "192.0.2.11", "192.0.2.21", "198.51.100.31"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings(root: Path) -> Settings:
    store = StoreConfig(
        retention_days=0,
        rollup_1m_retention_days=0,
        rollup_1h_retention_days=0,
        exporter_health_retention_days=0,
        interface_counters_retention_days=0,
        packet_samples_retention_days=0,
        l7_conversations_retention_days=0,
        chdb=ChdbStoreConfig(path=root / "chdb"),
    )
    return Settings(
        store=store,
        enrich=EnrichConfig(inventory=INVENTORY),
        control=ControlConfig(listen=f"127.0.0.1:{_free_port()}"),
    )


def _rows() -> list[dict]:
    rows = []
    for m in range(MINUTES):
        t = int((T0 + timedelta(minutes=m, seconds=10)).timestamp() * 1000)
        common = {"time_received": t, "flow_start": t - 5000, "flow_end": t, "proto": 6, "src_port": 40000}
        for direction in ("ingress", "egress") if m not in GAP else ():
            rows.append(
                {
                    **common,
                    "type": "ipfix",
                    "direction": direction,
                    "exporter": NODE1,
                    "sampling_rate": 1,
                    "src": "a",
                    "dst": "d",
                    "dst_port": 443,
                    "bytes": 10_000,
                    "packets": 10,
                }
            )
        rows.append(
            {
                **common,
                "type": "sflow",
                "direction": "unknown",
                "exporter": NODE3,
                "sampling_rate": 512,
                "src": "d",
                "dst": "dr",
                "dst_port": 8443,
                "bytes": 1500,
                "packets": 1,
            }
        )
        rows.append(
            {
                **common,
                "type": "sflow",
                "direction": "unknown",
                "exporter": NODE3,
                "sampling_rate": 0,
                "src": "b",
                "dst": "a",
                "dst_port": 8080,
                "bytes": 700,
                "packets": 1,
            }
        )
        if m not in GAP:
            rows.append(
                {
                    **common,
                    "type": "ipfix",
                    "direction": "ingress",
                    "exporter": NODE1,
                    "sampling_rate": 1,
                    "src": "c",
                    "dst": "db",
                    "dst_port": 5432,
                    "bytes": 2_000,
                    "packets": 4,
                }
            )
    return rows  # fmt: skip


def flow_batch(rows: list[dict]) -> FlowBatch:
    cols: dict[str, list] = {}
    for r in rows:
        r = {**r, "src_addr": ip_bytes(IPS[r["src"]]), "dst_addr": ip_bytes(IPS[r["dst"]]),
             "exporter": ip_bytes(r["exporter"])}  # fmt: skip
        for name in schema.BY_NAME:
            if name in r:
                cols.setdefault(name, []).append(r[name])
    return FlowBatch({k: np.asarray(v, dtype=schema.BY_NAME[k].numpy) for k, v in cols.items()})


def counter_batch() -> CounterBatch:
    n = MINUTES * 2 + 1
    t = np.array([int((T0 + timedelta(seconds=30 * i)).timestamp() * 1000) for i in range(n)], "int64")
    per_interval = 10**9 // 8 * 30 // 10  # 10% of 1 Gbit/s for 30 s, in octets
    cols = {
        "time_received": t,
        "type": np.array(["sflow"] * n, dtype=object),
        "exporter": np.array([ip_bytes(NODE9)] * n, dtype="V16"),
        "if_index": np.full(n, 3, "uint32"),
        "if_name": np.array(["eth0"] * n, dtype=object),
        "if_speed": np.full(n, 10**9, "uint64"),
        "in_octets": np.arange(n, dtype="uint64") * per_interval,
        "out_octets": np.arange(n, dtype="uint64") * (per_interval // 2),
        "in_unicast_packets": np.arange(n, dtype="uint32") * 1000,
    }
    return CounterBatch(cols, n)


def l7_table() -> pa.Table:
    """What ``netobs sample`` says of pod a's conversations: DNS names, TLS versions, clear text."""
    from collectors.sampler.agent import _table

    convs = [  # dst, dst_port, proto, fields
        ("c", 53, 17, {"l7_protocol": "dns", "dns_qname": "api.bank.example", "dns_qname_length": 16}),
        ("c", 53, 17, {"l7_protocol": "dns", "dns_qname": "a" * 60 + ".t.example", "dns_qname_length": 70}),
        (
            "d",
            443,
            6,
            {"l7_protocol": "tls", "encryption": "tls", "tls_version": "TLS1.3", "tls_sni": "d.bank"},
        ),
        ("db", 443, 6, {"l7_protocol": "tls", "encryption": "tls", "tls_version": "TLS1.0", "tls_sni": "db"}),
        ("db", 8080, 6, {"l7_protocol": "http", "encryption": "plaintext", "http_host": "core.bank"}),
    ]
    n = len(convs)
    t = int((T0 + timedelta(minutes=5)).timestamp() * 1000)
    cols: dict[str, np.ndarray] = {
        "time_received": np.full(n, t, "int64"), "first_seen": np.full(n, t, "int64"),
        "last_seen": np.full(n, t, "int64"), "agent": np.full(n, "node-1", dtype=object),
        "src_addr": np.array([ip_bytes(IPS["a"])] * n, dtype="V16"),
        "dst_addr": np.array([ip_bytes(IPS[c[0]]) for c in convs], dtype="V16"),
        "src_port": np.arange(40000, 40000 + n, dtype="uint16"),
        "dst_port": np.array([c[1] for c in convs], dtype="uint16"),
        "proto": np.array([c[2] for c in convs], dtype="uint8"),
    }  # fmt: skip
    for key in {k for c in convs for k in c[3]}:
        dtype = "uint16" if key.endswith("length") else object
        cols[key] = np.array([c[3].get(key, 0 if dtype == "uint16" else "") for c in convs], dtype=dtype)
    return _table(cols, schema.L7)


def findings() -> list[Finding]:
    return [
        Finding("dr_traffic", "critical", 9.0, T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1),
                {"src_center": "dc2", "dst_center": "dc3"}, "production traffic to the DR center")
        for h in range(2)
    ] + [Finding("collection_gap", "warning", 3.0, T0 + timedelta(hours=1), T0 + timedelta(hours=2),
                 {"exporter": NODE1}, "exporter silent for 40 minutes")]  # fmt: skip


def fill(cfg: Settings) -> dict[str, int]:
    """Fill the store of ``cfg``; returns what went in (for the tests' expectations)."""
    store = make_store(cfg.store)
    store.start()
    try:
        enricher = make_enricher(cfg, None)
        rows = _rows()
        store.insert(enricher.enrich(pa.Table.from_batches([flow_batch(rows).to_arrow()])))
        counters = pa.Table.from_batches([counter_batch().to_arrow()])
        store.insert(enricher.enrich_exporters(counters), target="interface_counters")
        store.insert(sample_transform(enricher)(l7_table()), target=schema.L7)
        save(store.query_arrow, cfg.store.database, findings())
        evaluate(store, load_policy(POLICY), START, END)
        evaluate(store, load_policy(TESTDATA / "policy_qos.yaml"), START, END)  # pod-c → db unmarked
    finally:
        store.stop()
    return {"flows": len(rows)}
