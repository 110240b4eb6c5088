"""The NAT attribution (pipeline/nat.py) on a gateway exporter's batches: most rows have an EIP end.

A subnet of 4096 pods behind 16 SNAT EIPs (iptables SNAT rules for /24s), 64 FIPs, and batches of
200k rows received from the gateway's outside: a share of them post-NAT rows whose conversation
was seen before translation (the join), FIP rows, and rows with IPFIX post-NAT elements (the
record's own IE, then the exact outside 5-tuple join). Prints, per row kind, rows per CPU-second of
``NatAttributor.attribute`` (the pre-NAT observations of the join are remembered first, untimed):

    nat.snat_join.cpu, nat.fip.cpu, nat.postnat.cpu, nat.postnat_join.cpu, nat.none.cpu (no EIP end)
"""

from __future__ import annotations

import ipaddress
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import report  # noqa: E402

from netobs.batch import FlowBatch  # noqa: E402
from pipeline.enrich import Enricher  # noqa: E402
from pipeline.lookups import Addresses, clip_times  # noqa: E402
from pipeline.metadata.model import Eip, NatRule, Network, Pod  # noqa: E402
from pipeline.metadata.versions import Change, MetadataStore  # noqa: E402

ROWS = 200_000
T = 1_700_000_000_000
PODS = 4096
EIPS = [f"198.18.0.{i}" for i in range(1, 17)]
FIPS = [f"198.18.1.{i}" for i in range(1, 65)]


def pod_ip(i: int) -> str:
    return str(ipaddress.IPv4Address(0x0A140000 + i))  # 10.20.0.0/20


def metadata() -> MetadataStore:
    meta = MetadataStore()
    objs: list = [Network(name="inside", cidr=("10.20.0.0/20",), tenant="pay")]
    objs += [Pod(name=f"p{i}", namespace="pay", ip=pod_ip(i)) for i in range(PODS)]
    for k, eip in enumerate(EIPS):
        objs.append(Eip(name=f"snat-{k}", ips=(eip,), flavour="iptables"))
        objs.append(NatRule(name=f"snat-{k}", type="snat", flavour="iptables", eip=f"snat-{k}",
                            internal=f"10.20.{k}.0/24"))  # fmt: skip
    for k, fip in enumerate(FIPS):
        objs.append(Eip(name=f"fip-{k}", ips=(fip,)))
        objs.append(NatRule(name=f"fip-{k}", type="fip", eip=f"fip-{k}", internal=pod_ip(k)))
    meta.apply([Change.upsert(o) for o in objs], 0)
    return meta


def _addr(texts: np.ndarray) -> np.ndarray:
    from netobs.batch import ip_bytes

    return np.array([ip_bytes(t) for t in texts], dtype="V16")


def batch(rng: np.random.Generator, kind: str, post: bool = False) -> pa.Table:
    """``ROWS`` rows of one kind: (inside → remote) pre-NAT rows for the join, or their outside rows."""
    n = ROWS
    pods = rng.integers(0, PODS, n)
    remotes = np.array([f"203.0.113.{i}" for i in range(1, 255)])[rng.integers(0, 254, n)]
    sport = rng.integers(20000, 60000, n).astype(np.uint16)
    eip_of = np.array(EIPS)[pods // 256]
    if kind == "pre":
        src = np.array([pod_ip(i) for i in range(PODS)])[pods]
    elif kind == "fip":
        src = np.array(FIPS)[rng.integers(0, len(FIPS), n)]
    elif kind == "none":
        src = np.array([f"192.0.2.{i}" for i in range(1, 255)])[rng.integers(0, 254, n)]
    else:
        src = eip_of
    cols = {
        "src_addr": _addr(src),
        "dst_addr": _addr(remotes),
        "src_port": sport,
        "dst_port": np.full(n, 443, np.uint16),
        "proto": np.full(n, 6, np.uint8),
        "flow_start": np.full(n, T, np.int64),
    }
    if post:  # the gateway's own records: inside source, its EIP and port after translation
        cols["src_addr"] = _addr(np.array([pod_ip(i) for i in range(PODS)])[pods])
        cols["post_nat_src_addr"] = _addr(eip_of)
        cols["post_nat_src_port"] = sport
    return pa.Table.from_batches([FlowBatch(cols).to_arrow()])


def attribute_cpu(enricher: Enricher, table: pa.Table, rounds: int = 3) -> float:
    tab = enricher.tables()
    times = clip_times(np.full(table.num_rows, T, np.int64))
    src = Addresses.from_arrow(table.column("src_addr"))
    dst = Addresses.from_arrow(table.column("dst_addr"))
    rates = []
    for _ in range(rounds):
        started = time.process_time()
        enricher.nat.attribute(tab, table, src, dst, times, {}, {})
        rates.append(table.num_rows / (time.process_time() - started))
    return statistics.median(rates)


def main() -> None:
    pa.set_cpu_count(1)
    rng = np.random.default_rng(1)
    enricher = Enricher(metadata())
    pre = batch(rng, "pre")
    enricher.enrich(pre)  # remembered for the join
    outside = batch(np.random.default_rng(1), "snat")  # the same conversations after translation
    report("nat.snat_join.cpu", attribute_cpu(enricher, outside), "rows/s")
    report("nat.fip.cpu", attribute_cpu(enricher, batch(rng, "fip")), "rows/s")
    report("nat.none.cpu", attribute_cpu(enricher, batch(rng, "none")), "rows/s")
    gateway = Enricher(metadata())
    own = batch(np.random.default_rng(2), "pre", post=True)
    report("nat.postnat.cpu", attribute_cpu(gateway, own), "rows/s")
    report("nat.postnat_join.cpu", attribute_cpu(gateway, batch(np.random.default_rng(2), "snat")), "rows/s")


if __name__ == "__main__":
    main()
