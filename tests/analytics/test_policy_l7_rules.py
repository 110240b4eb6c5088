"""Rule types judged on the real protocol, on real chdb: crafted flows joined with L7 summaries.

Each flow has (or has not) an ``l7_conversations`` row for its conversation, as ``netobs sample``
writes them; the rule must flag exactly the flows whose conversation the protocol condemns.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from analytics.policy.model import Policy
from analytics.policy.testing import evaluate_flows
from collectors.sampler.agent import _table
from netobs import schema
from netobs.batch import ip_bytes

#: Recent: the L7 table keeps its rows l7_conversations_retention_days (rows past it vanish at insert).
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
T = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
WEB = {"addr": "10.244.1.10", "namespace": "web", "tenant": "retail", "zone": "production"}
PCI = {"addr": "10.244.5.10", "namespace": "pay", "tenant": "payments", "zone": "pci"}
RESOLVER, ROGUE = {"addr": "10.96.0.10"}, {"addr": "8.8.8.8"}

POLICY = {
    "name": "l7",
    "zones": {"pci": {"match": [{"zone": ["pci"]}]}},
    "rules": [
        {"id": "clear-to-pci", "type": "l7_plaintext", "to": "pci"},
        {"id": "tls12", "type": "tls_minimum"},
        {"id": "resolvers", "type": "dns_resolvers", "approved": ["10.96.0.10"]},
        {"id": "sni", "type": "sni_allowlist", "allowed": ["*.bank.example", "api.partner.example"]},
    ],
}


def flow(dst, sport, dport, proto="tcp"):
    return {"time": T, "src": WEB, "dst": dst, "src_port": sport, "dst_port": dport, "proto": proto,
            "packets": 10, "bytes": 1000, "initiator": "src"}  # fmt: skip


def l7_rows(rows):
    n = len(rows)
    cols = {
        "time_received": np.full(n, int(NOW.timestamp() * 1000), dtype=np.int64),
        "src_addr": np.array([ip_bytes(WEB["addr"])] * n, dtype="V16"),
        "dst_addr": np.array([ip_bytes(r["dst"]["addr"]) for r in rows], dtype="V16"),
        "src_port": np.array([r["sport"] for r in rows], dtype=np.uint16),
        "dst_port": np.array([r["dport"] for r in rows], dtype=np.uint16),
        "proto": np.array([r.get("proto", 6) for r in rows], dtype=np.uint8),
    }
    for k in ("l7_protocol", "encryption", "tls_version", "tls_cipher", "tls_sni"):
        cols[k] = np.array([r.get(k, "") for r in rows], dtype=object)
    return _table(cols, schema.L7)


CASES = [  # (flow, its L7 summary or None, the rules it violates)
    (flow(PCI, 40001, 8080), {"l7_protocol": "http", "encryption": "plaintext"}, {"clear-to-pci"}),
    (
        flow(PCI, 40002, 8443),
        {"l7_protocol": "tls", "encryption": "tls", "tls_version": "TLS1.3", "tls_sni": "pay.bank.example"},
        set(),
    ),  # fmt: skip
    (flow(PCI, 40003, 5432), None, set()),  # no summary: the port alone condemns nothing here
    (
        flow(PCI, 40004, 443),
        {"l7_protocol": "tls", "encryption": "tls", "tls_version": "TLS1.0", "tls_sni": "old.bank.example"},
        {"tls12"},
    ),  # fmt: skip
    (
        flow(PCI, 40005, 443),
        {
            "l7_protocol": "tls",
            "encryption": "tls",
            "tls_version": "TLS1.2",
            "tls_cipher": "0x002f",
            "tls_sni": "evil.example",
        },
        {"tls12", "sni"},
    ),  # fmt: skip
    (flow(RESOLVER, 40006, 53, "udp"), {"l7_protocol": "dns", "proto": 17}, set()),
    (flow(ROGUE, 40007, 53, "udp"), {"l7_protocol": "dns", "proto": 17}, {"resolvers"}),
    (flow(ROGUE, 40008, 8053, "udp"), {"l7_protocol": "dns", "proto": 17}, {"resolvers"}),  # DNS on any port
    (flow(WEB, 40009, 8080), {"l7_protocol": "http", "encryption": "plaintext"}, set()),  # not into pci
]


@pytest.fixture(scope="module")
def store(module_store_factory):
    return module_store_factory()


def test_l7_rule_types(store):
    policy = Policy.model_validate(POLICY)
    summaries = [
        {**s, "dst": f["dst"], "sport": f["src_port"], "dport": f["dst_port"]}
        for f, s, _ in CASES
        if s is not None
    ]
    store.insert(l7_rows(summaries), target=schema.L7)
    found = evaluate_flows(store, policy, [f for f, _, _ in CASES])
    got: dict[int, set[str]] = {}
    for v in found:
        for ev in v["evidence"]:
            got.setdefault(ev["src_port"], set()).add(v["rule"])
    for f, _, rules in CASES:
        assert got.get(f["src_port"], set()) == rules, f["src_port"]


def test_l7_rule_types_refuse_bad_input():
    with pytest.raises(ValidationError):
        Policy.model_validate({**POLICY, "rules": [{"id": "r", "type": "dns_resolvers", "approved": []}]})
    with pytest.raises(ValidationError):
        Policy.model_validate(
            {**POLICY, "rules": [{"id": "r", "type": "tls_minimum", "min_version": "TLS9"}]}
        )
