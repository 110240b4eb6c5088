"""The native counting pass (netobs/_native/counting.c) against the numpy reference: the same columns
on random batches drawn at test time (exporters, directions, nodes, centers, ports, flags, ICMP,
biflows, listening ports, clock skews, missing columns), and refused arguments instead of a crash."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from netobs import observations
from netobs.counting import CountingConfig, ExporterCounting
from netobs.observations import Counter, Listening, Observations

pytestmark = pytest.mark.skipif(observations._native is None, reason="the C extension is not built")

SEED = int.from_bytes(os.urandom(4), "little")
NODES = ["", "node-a", "node-b", "node-c", "gw-1"]
CENTERS = ["", "dc1", "dc2", "dc3"]
ADDRS = ["10.0.0.1", "10.0.0.2", "10.1.0.9", "192.0.2.7", "2001:db8::5", "203.0.113.4"]


def addr16(text: str) -> bytes:
    return observations._addr16(text)


def batch(rng: np.random.Generator, n: int, drop: set[str]) -> pa.Table:
    ts = pa.timestamp("ms", tz="UTC")
    now = 1_800_000_000_000
    recv = now + rng.integers(0, 600_000, n)
    end = recv - rng.choice([0, 1_000, 30_000, 10**10, -(10**9)], n)  # late, skewed, ahead of time
    start = end - rng.choice([0, 500, 10**8, -5], n)
    proto = rng.choice([6, 17, 1, 58, 47], n).astype(np.uint8)
    icmp_code = (rng.choice([0, 8, 128, 129, 13, 3], n).astype(np.uint16) << 8) | rng.integers(0, 4, n)
    dport = np.where(
        np.isin(proto, (1, 58)), icmp_code, rng.choice([0, 22, 443, 5432, 8080, 40000, 61000], n)
    )
    exporters = rng.integers(0, 5, n)
    cols: dict[str, pa.Array] = {
        "time_received": pa.array(recv, pa.int64()).cast(ts),
        "flow_end": pa.array(end, pa.int64()).cast(ts),
        "flow_start": pa.array(start, pa.int64()).cast(ts),
        "type": pa.array(
            np.array(["ipfix", "sflow", "netflow9", "ipfix", "netflow5"])[exporters].astype(object)
        ),
        "exporter": pa.array([addr16(f"198.51.100.{e}") for e in exporters], pa.binary(16)),
        "exporter_node": pa.array(
            np.array(["node-a", "node-b", "", "gw-1", "node-c"])[exporters].astype(object)
        ),
        "exporter_center": pa.array(np.array(["dc1", "dc1", "dc2", "dc3", ""])[exporters].astype(object)),
        "observation_domain": pa.array(rng.choice([0, 0, 7], n).astype(np.uint32)),
        "direction": pa.array(rng.choice(["ingress", "egress", "", "unknown"], n).astype(object)),
        "src_addr": pa.array([addr16(a) for a in rng.choice(ADDRS, n)], pa.binary(16)),
        "dst_addr": pa.array([addr16(a) for a in rng.choice(ADDRS, n)], pa.binary(16)),
        "src_port": pa.array(
            rng.choice([0, 22, 443, 5432, 8080, 40000, 61000, 1023, 1024], n).astype(np.uint16)
        ),
        "dst_port": pa.array(dport.astype(np.uint16)),
        "proto": pa.array(proto),
        "tcp_flags": pa.array(rng.choice([0, 0x02, 0x12, 0x10, 0x18, 0x13], n).astype(np.uint16)),
        "packets": pa.array(rng.integers(0, 4, n).astype(np.uint64)),
        "biflow": pa.array(rng.choice([0, 0, 1, 2], n).astype(np.uint8)),
        "biflow_direction": pa.array(rng.choice([0, 1, 2, 3], n).astype(np.uint8)),
        "observation_point": pa.array(rng.choice([0, 0, 0, 5], n).astype(np.uint32)),
    }
    for end_ in ("src", "dst"):
        cols[f"{end_}_node"] = pa.array(rng.choice(NODES, n).astype(object))
        cols[f"{end_}_center"] = pa.array(rng.choice(CENTERS, n).astype(object))
        if rng.random() < 0.5:
            cols[f"{end_}_node"] = cols[f"{end_}_node"].dictionary_encode()
    return pa.table({k: v for k, v in cols.items() if k not in drop})


def counter(config: CountingConfig) -> Counter:
    return Counter(Observations(config))


@pytest.mark.parametrize("round_", range(12))
def test_the_native_pass_equals_the_numpy_reference(round_, monkeypatch):
    rng = np.random.default_rng([SEED, round_])
    print("seed", SEED, "round", round_)
    monkeypatch.setattr(observations, "_now_ms", lambda: 1_800_000_123_456)  # a batch without any time
    optional = ["tcp_flags", "biflow", "biflow_direction", "time_received", "flow_end", "flow_start",
                "observation_domain", "observation_point", "exporter_node", "exporter_center", "src_center"]  # fmt: skip
    drop = {c for c in optional if rng.random() < 0.2}
    rules = (ExporterCounting(match=("198.51.100.3/32",), count="never"),) if rng.random() < 0.5 else ()
    config = CountingConfig(
        exporters=rules,
        covered_nodes=str(rng.choice(["learned", "all"])),
        dual_detect_rows=int(rng.integers(0, 50)),
    )
    listening = Listening()
    if rng.random() < 0.7:
        pod = type("V", (), {})
        v = pod()
        v.kind, v.key, v.valid_to = "pod", "ns/p", 2**62
        v.attrs = {"ip": "10.0.0.2", "ports": [40000, 8080], "namespace": "ns"}
        listening = Listening([v])
    batches = [batch(rng, int(rng.integers(1, 3000)), drop) for _ in range(3)]
    native, reference = counter(config), counter(config)
    for table in batches:
        monkeypatch.setenv("NETOBS_NATIVE", "1")
        got = native.apply(table, listening)
        monkeypatch.setenv("NETOBS_NATIVE", "0")
        want = reference.apply(table, listening)
        assert got.schema == want.schema
        for name in observations._TYPES:
            assert got.column(name).to_pylist() == want.column(name).to_pylist(), (name, SEED, round_)
        assert native.reason_counts.tolist() == reference.reason_counts.tolist()


def test_refused_arguments_raise_instead_of_reading_out_of_bounds():
    kernel = observations._native
    n = 4
    rows = [np.zeros(n, t) for t in (np.int64, np.int8, np.int32, np.int32, np.int32, np.int32, np.uint16,
                                     np.uint16, np.uint8)]  # fmt: skip
    per_exp = [np.zeros(2, np.int64), np.zeros(2, np.int64)] + [np.zeros(2, np.uint8) for _ in range(5)]
    luts = [observations._DECISIONS, observations._COUNTING, observations._RANK,
            np.ascontiguousarray(observations._PAIR.ravel()), observations._ECHO_REQUEST.view(np.uint8),
            observations._ECHO_REPLY.view(np.uint8)]  # fmt: skip
    outs = [np.zeros(n, t) for t in (np.int32, np.uint8, np.int32, np.int32, np.int32, np.int64, np.int64)]
    outs.append(np.zeros(len(observations.REASON_NAMES), np.int64))
    consts = (0, 1, 1, 1, 3, 6, 9, 12, 15, 18)

    def call(rows=rows, per_exp=per_exp, luts=luts, outs=outs):
        covered = np.zeros(1, np.uint8)
        return kernel.apply(
            (*rows, *[None] * 9, *per_exp, covered, np.zeros(1, np.uint8), *luts, *outs), consts
        )

    call()  # valid
    bad_exporter = list(rows)
    bad_exporter[0] = np.array([0, 1, 2, 0], np.int64)  # code 2 of a 2-entry exporter table
    with pytest.raises(ValueError, match="exporter code"):
        call(rows=bad_exporter)
    bad_node = list(rows)
    bad_node[2] = np.array([0, 0, 5, 0], np.int32)
    with pytest.raises(ValueError, match="node or center code"):
        call(rows=bad_node)
    with pytest.raises(ValueError, match="rows"):
        call(rows=[*rows[:8], np.zeros(n + 1, np.uint8)])
    with pytest.raises(ValueError, match="bytes"):
        call(rows=[np.zeros(n, np.int32), *rows[1:]])
    with pytest.raises(ValueError, match="lookup table"):
        call(luts=[luts[0][:100], *luts[1:]])
    with pytest.raises(ValueError, match="arrays expected"):
        kernel.apply((None,), consts)


def test_exporter_keys_number_in_order_of_first_appearance():
    """Thousands of exporters (the table grows several times), runs and repeats, against pandas."""
    rng = np.random.default_rng(SEED)
    n = 50_000
    which = np.repeat(rng.integers(0, 5000, n // 5), 5)  # runs of five, as records of one datagram
    raw = np.zeros((n, 16), np.uint8)
    raw[:, 12:16] = which.astype(">u4").view(np.uint8).reshape(n, 4)
    types = (which % 3).astype(np.int64)
    domains = (which % 2).astype(np.uint32)
    codes = np.empty(n, np.int64)
    first = observations._native.exporter_keys(raw.ravel(), types, domains, codes)
    want, _ = pd.factorize(which)
    assert codes.tolist() == want.tolist()
    assert first == [int(np.flatnonzero(which == w)[0]) for w in pd.unique(which)]
    codes_no_domain = np.empty(n, np.int64)
    assert len(observations._native.exporter_keys(raw.ravel(), types, None, codes_no_domain)) == len(first)
    with pytest.raises(ValueError, match="lengths"):
        observations._native.exporter_keys(raw.ravel()[:-16], types, None, codes)
    with pytest.raises(ValueError, match="domains"):
        observations._native.exporter_keys(raw.ravel(), types, domains[:-1], codes)


def test_dense_keys_number_in_order_of_first_appearance():
    """Small integer keys (the enrichment's address numbers with the type), against pandas."""
    rng = np.random.default_rng(SEED)
    for nkeys in (1, 7, 3000):
        keys = rng.integers(0, nkeys, int(rng.integers(0, 20_000))).astype(np.int64)
        codes = np.empty(len(keys), np.int64)
        first = observations._native.dense_keys(keys, nkeys, codes)
        want, uniq = pd.factorize(keys)
        assert codes.tolist() == want.tolist()
        assert first == [int(np.flatnonzero(keys == u)[0]) for u in uniq]
    codes = np.empty(2, np.int64)
    with pytest.raises(IndexError):
        observations._native.dense_keys(np.array([0, 5], np.int64), 5, codes)
    with pytest.raises(IndexError):
        observations._native.dense_keys(np.array([-1, 0], np.int64), 5, codes)
    with pytest.raises(ValueError):
        observations._native.dense_keys(np.array([0, 1, 2], np.int64), 5, codes)
