"""The vectorized NAT rule attribution (pipeline/nat.py) against a per-row reference of its rules.

The reference below is the rule text of the module written row by row (the implementation before it
was vectorized): for each row whose end is an EIP, the first live rule of the EIP that applies (a
FIP or one-address SNAT of a source, a DNAT on the row's own port and protocol), else the join
with the pre-NAT observations of its live subnet SNAT rules (one inside address: 90 on the same
port, 75 on another; several, one of them on the same port: 80), else the first live subnet (30).
Rules, versions, observations and rows are drawn at test time (seed printed); small pools of
addresses and ports make the ambiguous cases frequent.
"""

from __future__ import annotations

import ipaddress
import os
import random

import numpy as np
import pyarrow as pa
import pytest

from netobs.batch import FlowBatch, ip_bytes, ip_str
from pipeline.enrich import Enricher
from pipeline.lookups import Addresses, clip_times
from pipeline.metadata.model import Eip, NatRule
from pipeline.metadata.versions import Change, MetadataStore
from pipeline.nat import CONFIDENCE, METHODS

T = 1_700_000_000_000
WINDOW = 120_000


def table(rows: list[tuple], times: list[int]) -> pa.Table:
    cols = {
        "src_addr": np.array([ip_bytes(r[0]) for r in rows], dtype="V16"),
        "dst_addr": np.array([ip_bytes(r[1]) for r in rows], dtype="V16"),
        "src_port": np.array([r[2] for r in rows], dtype="uint16"),
        "dst_port": np.array([r[3] for r in rows], dtype="uint16"),
        "proto": np.array([r[4] for r in rows], dtype="uint8"),
        "flow_start": np.array(times, dtype="int64"),
    }
    return pa.Table.from_batches([FlowBatch(cols).to_arrow()])


def draw(rnd: random.Random):
    """Metadata (EIPs and their rules, some ended), pre-NAT observations and post-NAT rows."""
    meta = MetadataStore()
    eips = [f"198.18.0.{i}" for i in range(1, rnd.randrange(3, 7))]
    objs: list = [Eip(name=f"e{k}", ips=(a,), flavour="iptables") for k, a in enumerate(eips)]
    ends = {}
    # one subnet SNAT rule per CIDR (the prefix index keeps one version of a prefix at a time)
    cidrs = rnd.sample([f"10.20.{i}.0/{n}" for i in range(4) for n in (24, 25)], 8)
    for k in range(rnd.randrange(3, 12)):
        e = rnd.randrange(len(eips))
        kind = rnd.choice(("fip", "snat", "snat", "snat1", "dnat"))
        if kind == "snat" and not cidrs:
            kind = "fip"
        internal = cidrs.pop() if kind == "snat" else f"10.20.{rnd.randrange(4)}.{rnd.randrange(1, 9)}"
        port, proto = (rnd.choice((80, 443)), rnd.choice((0, 6, 17))) if kind == "dnat" else (0, 0)
        objs.append(NatRule(name=f"r{k}", type="snat" if kind == "snat1" else kind, flavour="iptables", eip=f"e{e}",
                            internal=internal, external_port=port, internal_port=port,
                            protocol={0: "", 6: "tcp", 17: "udp"}[proto]))  # fmt: skip
        ends[f"r{k}"] = T + rnd.randrange(0, 4 * WINDOW) if rnd.random() < 0.3 else None
    meta.apply([Change.upsert(o) for o in objs], 0)
    for name, end in sorted(ends.items(), key=lambda x: x[1] or 0):
        if end is not None:
            meta.apply([Change.delete("nat", name)], end)
    remotes = [f"203.0.113.{i}" for i in range(1, 4)]
    ports = [40000, 40001, 40002]
    pre = [
        (f"10.20.{rnd.randrange(4)}.{rnd.randrange(1, 9)}", rnd.choice(remotes), rnd.choice(ports),
         rnd.choice((80, 443)), rnd.choice((6, 17)))
        for _ in range(rnd.randrange(0, 40))
    ]  # fmt: skip
    pre_t = [T + rnd.randrange(0, 2 * WINDOW) for _ in pre]
    post, post_t = [], []
    for _ in range(rnd.randrange(1, 120)):
        eip, remote, p, q, proto = (rnd.choice(eips), rnd.choice(remotes), rnd.choice(ports),
                                    rnd.choice((80, 443)), rnd.choice((6, 17)))  # fmt: skip
        post.append((eip, remote, p, q, proto) if rnd.random() < 0.5 else (remote, eip, q, p, proto))
        post_t.append(T + rnd.randrange(0, 4 * WINDOW))
    return meta, pre, pre_t, post, post_t


def reference(nat, pre, pre_t, post, post_t):
    """(method, confidence, inside) per row and end, row by row."""
    seen: dict[tuple, list[tuple[int, str, int]]] = {}
    nets = [(ipaddress.ip_network(r.internal, strict=False), r) for r in nat.snat_rules]
    for (s, d, sp, dp, proto), t in zip(pre, pre_t, strict=True):
        for inside, iport, other, oport in ((s, sp, d, dp), (d, dp, s, sp)):
            if any(ipaddress.ip_address(inside) in n and r.start <= t < r.end for n, r in nets):
                seen.setdefault((other, oport, proto), []).append((t, inside, iport))
    out = []
    for (s, d, sp, dp, proto), t in zip(post, post_t, strict=True):
        row = {}
        for end, addr, own_port, remote, rport in (("src", s, sp, d, dp), ("dst", d, dp, s, sp)):
            live = [r for r in nat.rules if r.eip == addr and r.start <= t < r.end]
            hit = None
            for x in live:
                if x.type == "fip" or (x.type == "snat" and x.one_address and end == "src"):
                    hit = (
                        "fip" if x.type == "fip" else "snat",
                        95,
                        str(ipaddress.ip_network(x.internal).network_address),
                    )
                    break
                if x.type == "dnat" and own_port == x.external_port and (not x.proto or x.proto == proto):
                    hit = ("dnat", 90, x.internal)
                    break
            subnets = [x for x in live if x.type == "snat" and not x.one_address]
            if hit is None and subnets:
                inside = {
                    (a, p)
                    for ts, a, p in seen.get((remote, rport, proto), [])
                    if abs(ts - t) <= WINDOW
                    and any(ipaddress.ip_address(a) in ipaddress.ip_network(x.internal) and x.start <= t < x.end
                            for x in subnets)
                }  # fmt: skip
                addrs = {a for a, _ in inside}
                same = {a for a, p in inside if p == own_port}
                if len(addrs) == 1:
                    hit = ("snat_join", 90 if same else 75, next(iter(addrs)))
                elif len(same) == 1:
                    hit = ("snat_join", 80, next(iter(same)))
                else:
                    hit = ("snat_subnet", 30, str(ipaddress.ip_network(subnets[0].internal).network_address))
            row[end] = hit
        out.append(row)
    return out


@pytest.mark.parametrize("batches", [1, 2])
def test_vectorized_rules_agree_with_the_per_row_reference(batches):
    seed = int(os.environ.get("NETOBS_TEST_SEED") or random.SystemRandom().randrange(1 << 30))
    print("seed", seed)
    rnd = random.Random(seed)
    for _ in range(20):
        meta, pre, pre_t, post, post_t = draw(rnd)
        enricher = Enricher(meta)
        if pre:
            enricher.enrich(table(pre, pre_t))
        tab = enricher.tables()
        want = reference(tab.nat, pre, pre_t, post, post_t)
        cut = rnd.randrange(len(post) + 1) if batches == 2 else len(post)
        got_rows: list[dict] = []
        for lo, hi in ((0, cut), (cut, len(post))) if batches == 2 else ((0, len(post)),):
            if lo == hi:
                continue
            tb = table(post[lo:hi], post_t[lo:hi])
            times = clip_times(np.array(post_t[lo:hi], np.int64))
            src, dst = (
                Addresses.from_arrow(tb.column("src_addr")),
                Addresses.from_arrow(tb.column("dst_addr")),
            )
            a = enricher.nat.attribute(tab, tb, src, dst, times, {}, {})
            for i in range(hi - lo):
                row = {}
                for end in ("src", "dst"):
                    m = int(getattr(a, f"{end}_method")[i])
                    rows, addrs = getattr(a, f"{end}_internal")
                    if m == 0:
                        row[end] = None
                        continue
                    k = int(np.flatnonzero(rows == i)[0])
                    raw = np.zeros(16, np.uint8)
                    raw[10:12] = 0xFF
                    raw[12:] = np.frombuffer(int(addrs.u32[k]).to_bytes(4, "big"), np.uint8)
                    row[end] = (METHODS[m], None, ip_str(raw.tobytes()))
                row["confidence"] = int(a.confidence[i])
                got_rows.append(row)
        assert len(got_rows) == len(want)
        for i, (g, w) in enumerate(zip(got_rows, want, strict=True)):
            context = f"seed {seed} row {i} {post[i]} t+{post_t[i] - T}: got {g} want {w}"
            for end in ("src", "dst"):
                assert (g[end] and (g[end][0], g[end][2])) == (w[end] and (w[end][0], w[end][2])), context
            confs = [w[e][1] for e in ("src", "dst") if w[e]]
            assert g["confidence"] == (min(confs) if confs else 0), context
    assert CONFIDENCE  # the module's table is what the reference's numbers mirror
