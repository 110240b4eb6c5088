"""The enrichment hands its node and center codes to the counting model (no re-coding of the
string columns); the counting columns must be exactly what the model computes from the strings."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

from netobs import observations
from pipeline.enrich import Enricher
from pipeline.metadata.model import Center, Namespace, Network, Node, Pod, Site
from pipeline.metadata.versions import Change, MetadataStore

T0 = 1_700_000_000_000
COUNTING = ("counted", "count_reason", "initiator", "role_method", "role_confidence", "observer")


def _bank(rng: np.random.Generator) -> tuple[MetadataStore, int, int]:
    nodes, pods = int(rng.integers(3, 30)), int(rng.integers(20, 400))
    meta = MetadataStore()
    objs = [Site(name="a"), Site(name="b")]
    objs += [Center(name=f"dc{c}", site="a" if c < 3 else "b") for c in (1, 2, 3)]
    objs += [Node(name=f"n{k}", ip=f"192.0.2.{k + 1}", center=f"dc{1 + k % 3}") for k in range(nodes)]
    objs += [Namespace(name=f"ns{k}", tenant=f"t{k % 3}") for k in range(4)]
    objs += [Network(name="pods", cidr="10.64.0.0/16", vpc="v", center="dc1")]
    objs += [
        Pod(name=f"p{i}", namespace=f"ns{i % 4}", ip=f"10.64.{i // 256}.{i % 256}", node=f"n{i % nodes}")
        for i in range(pods)
    ]
    meta.apply([Change.upsert(o) for o in objs], T0)
    # a node changes center mid-way (time-correct codes), a pod moves
    meta.apply([Change.upsert(Node(name="n0", ip="192.0.2.1", center="dc3"))], T0 + 1_800_000)
    # a node's address goes to another node (re-IP), and a node leaves
    t = T0 + int(rng.integers(0, 3_600_000))
    if nodes > 3:
        meta.apply([Change.upsert(Node(name="n1", ip="192.0.2.250", center="dc1"))], t)
        meta.apply([Change.upsert(Node(name="n2", ip="192.0.2.2", center="dc2"))], t + 1)
        meta.apply([Change.delete("node", "n3")], t + 2)
    return meta, nodes, pods


def _flows(rng: np.random.Generator, n: int, nodes: int, pods: int) -> pa.Table:
    def addrs(kind: np.ndarray, i: np.ndarray) -> pa.Array:
        b = np.zeros((n, 16), dtype=np.uint8)
        b[:, 10:12] = 0xFF
        b[:, 12], b[:, 13], b[:, 14], b[:, 15] = 10, 64, i // 256, i % 256
        out = kind == 1  # outside every network
        b[out, 12], b[out, 13] = 203, 0
        node = kind == 2  # a node address
        b[node, 12], b[node, 13], b[node, 14], b[node, 15] = 192, 0, 2, 1 + i[node] % nodes
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(b.tobytes())])

    exporter = np.zeros((n, 16), dtype=np.uint8)
    exporter[:, 10:12], exporter[:, 12:14], exporter[:, 14] = 0xFF, (192, 0), 2
    # nodes' own addresses (known), and one unknown exporter (a router)
    exporter[:, 15] = 1 + rng.integers(0, nodes + 1, n) % (nodes + 1)
    start = T0 + rng.integers(0, 3_600_000, n)
    ts = pa.timestamp("ms", tz="UTC")
    return pa.table(
        {
            "flow_start": pa.array(start, pa.int64()).cast(ts),
            "flow_end": pa.array(start + rng.integers(0, 60_000, n), pa.int64()).cast(ts),
            "time_received": pa.array(start + 61_000, pa.int64()).cast(ts),
            "type": pa.array(rng.choice(["ipfix", "sflow", "netflow5"], n).astype(object), pa.string()),
            "direction": pa.array(rng.choice(["ingress", "egress", ""], n).astype(object), pa.string()),
            "src_addr": addrs(rng.integers(0, 3, n), rng.integers(0, pods, n)),
            "dst_addr": addrs(rng.integers(0, 3, n), rng.integers(0, pods, n)),
            "src_port": pa.array(rng.choice([443, 5432, 40000, 51515], n).astype(np.uint16)),
            "dst_port": pa.array(rng.choice([443, 8080, 33333, 61000], n).astype(np.uint16)),
            "proto": pa.array(rng.choice([6, 17, 1], n).astype(np.uint8)),
            "tcp_flags": pa.array(rng.choice([0x02, 0x12, 0x18, 0x11], n).astype(np.uint16)),
            "packets": pa.array(rng.integers(1, 50, n).astype(np.uint64)),
            "exporter": pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(16), n, [None, pa.py_buffer(exporter.tobytes())]
            ),
        }
    )


@pytest.mark.parametrize("dictionary", [True, False])
def test_codes_handed_over_count_as_the_strings_do(dictionary, monkeypatch):
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    meta, nodes, pods = _bank(rng)
    batches = [_flows(rng, int(rng.integers(1, 3000)), nodes, pods) for _ in range(4)]
    handed = Enricher(meta, dictionary=dictionary)
    got = [handed.enrich(b) for b in batches]
    monkeypatch.setattr(observations._Codes, "given", classmethod(lambda cls, coded, space: None))
    hashed = observations.Counter._exporters  # the exporters numbered from the addresses again
    monkeypatch.setattr(
        observations.Counter, "_exporters", lambda self, table, given=None: hashed(self, table)
    )
    recoded = Enricher(meta, dictionary=dictionary)
    want = [recoded.enrich(b) for b in batches]
    for g, w in zip(got, want, strict=True):
        for name in COUNTING + ("exporter_node", "exporter_center", "src_node", "dst_center"):
            assert g.column(name).to_pylist() == w.column(name).to_pylist(), (seed, name)
    assert list(handed.counter.observations.exporters) == list(recoded.counter.observations.exporters)


@pytest.mark.parametrize("domains", ["none", "one", "several"])
def test_exporters_numbered_from_the_enrichment_codes_as_by_hashing(domains):
    """The counter's numbering of (exporter, type, domain) from the enrichment's address codes is the
    numbering by hashing each row's address: same rows together, same order of first appearance."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    meta, nodes, pods = _bank(rng)
    enricher = Enricher(meta)
    for _ in range(5):
        table = _flows(rng, int(rng.integers(300, 5000)), nodes, pods)
        if domains != "none":
            dom = (
                np.full(table.num_rows, 7, np.uint32)
                if domains == "one"
                else rng.integers(0, 3, table.num_rows)
            )
            table = table.append_column("observation_domain", pa.array(dom.astype(np.uint32)))
        from pipeline import enrich

        times = enrich.clip_times(enrich._times(table))
        out, _, _, numbered = enrich._exporter_columns(enricher.tables(), table, times, True)
        assert numbered is not None and numbered[0].max() < numbered[1]
        counter = enricher.counter
        got_codes, got = counter._exporters(out, numbered)
        want_codes, want = counter._exporters(out)
        assert got_codes.tolist() == want_codes.tolist(), seed
        assert [(e.address, e.type, e.domain) for e in got] == [(e.address, e.type, e.domain) for e in want]


def test_exporters_looked_up_per_distinct_address_as_per_row(monkeypatch):
    """Per distinct exporter at the batch's first and last time, per row where versions differ:
    the same node and center as a lookup per row, across a center change, a re-IP and a removal."""
    from pipeline import enrich

    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    meta, nodes, pods = _bank(rng)
    tab = Enricher(meta).tables()
    for _ in range(6):
        table = _flows(rng, int(rng.integers(300, 5000)), nodes, pods)
        times = enrich.clip_times(enrich._times(table))
        got = enrich._exporters(tab, table.column("exporter"), times)
        codes, k = got[2]  # each row's address numbered: one number per distinct address
        texts = table.column("exporter").to_pylist()
        assert len({(int(c), t) for c, t in zip(codes, texts, strict=True)}) == k == len(set(texts)), seed
        want = tab.exporter(enrich.Addresses.from_arrow(table.column("exporter")), times)
        assert got[0].tolist() == want[0].tolist(), seed
        assert got[1].tolist() == want[1].tolist(), seed
        local = enrich._exporters(tab, table.column("exporter"), times, local=True)
        assert local[0].tolist() == tab.local["node"][want[0]].tolist(), seed
        assert local[1].tolist() == tab.local["center"][want[1]].tolist(), seed
