"""Post-NAT elements (IPFIX IE 225-228, 281/282) as the first NAT source of pipeline/nat.py.

A gateway exporter reports the packet before translation with its post-NAT addresses and ports;
an exporter beyond the gateway sees only the EIP. Seeds are drawn at test time and printed.
"""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from netobs.batch import ip_bytes
from pipeline.enrich import Enricher
from pipeline.metadata.versions import MetadataStore
from tests.pipeline import _kube_ovn as ko
from tests.pipeline import test_planes
from tests.pipeline.test_planes import T, apply, col, convert, flows

bank = test_planes.bank  # the fixture: one cluster, an SNAT gateway for the storage subnet

EIP, REMOTE = "198.18.0.100", "203.0.113.7"


def with_post_nat(table: pa.Table, post: list[tuple]) -> pa.Table:
    """``table`` with (post_src, post_dst, post_sport, post_dport) per row ('' : not reported)."""
    for k, (name, kind) in enumerate(
        (("post_nat_src_addr", "a"), ("post_nat_dst_addr", "a"), ("post_nat_src_port", "p"),
         ("post_nat_dst_port", "p"))
    ):  # fmt: skip
        values = [p[k] for p in post]
        if kind == "a":
            arr = pa.array([ip_bytes(v) if v else bytes(16) for v in values], pa.binary(16))
        else:
            arr = pa.array(np.array(values, np.uint16))
        table = table.set_column(table.schema.get_field_index(name), name, arr)
    return table


@pytest.fixture()
def rnd() -> random.Random:
    seed = random.SystemRandom().randrange(1 << 30)
    print("seed", seed)
    return random.Random(seed)


def test_the_gateways_own_elements_then_name_every_outside_observation_exactly(bank, rnd):
    """Two pods of the SNAT subnet talk to one remote: the pre/post join alone could only guess by
    port; the gateway's post-NAT record maps each EIP port to its pod exactly (either direction)."""
    enricher = Enricher(bank)
    ports = rnd.sample(range(20000, 60000), 4)  # inside ports of api-0, api-1; their EIP ports
    rport = rnd.choice((443, 8443, 5432))
    gateway = with_post_nat(
        flows([("10.20.0.5", REMOTE, ports[0], rport, 6), ("10.20.0.6", REMOTE, ports[1], rport, 6)]),
        [(EIP, "", ports[2], 0), (EIP, REMOTE, ports[3], rport)],  # the second repeats the destination
    )
    out = enricher.enrich(gateway)
    assert col(out, "src_pod") == ["api-0", "api-1"]  # the observed source is the pod already
    assert col(out, "src_nat") == ["", ""]
    later = T + rnd.randrange(0, 100_000)
    outside = [
        (EIP, REMOTE, ports[2], rport, 6),
        (REMOTE, EIP, rport, ports[3], 6),
        (REMOTE, EIP, rport, ports[2], 6),
        (EIP, REMOTE, ports[3], rport, 17),  # another protocol: not this mapping
    ]
    order = list(range(len(outside)))
    rnd.shuffle(order)
    got = enricher.enrich(flows([outside[i] for i in order], times=later))
    by_row = {i: k for k, i in enumerate(order)}
    pods = [(col(got, "src_pod")[by_row[i]], col(got, "dst_pod")[by_row[i]]) for i in range(4)]
    nat = [(col(got, "src_nat")[by_row[i]], col(got, "dst_nat")[by_row[i]]) for i in range(4)]
    conf = [col(got, "nat_confidence")[by_row[i]] for i in range(4)]
    assert pods[:3] == [("api-0", ""), ("", "api-1"), ("", "api-0")]
    assert nat[:3] == [("postnat_join", ""), ("", "postnat_join"), ("", "postnat_join")]
    assert conf[:3] == [98, 98, 98]
    assert nat[3][0] != "postnat_join"  # falls back to the older sources (the subnet rule)
    assert col(got, "src_plane")[by_row[0]] == "storage/storage-net"


def test_an_inbound_dnat_record_names_the_pod_by_its_post_nat_destination(bank, rnd):
    ext, internal = rnd.randrange(1024, 65536), rnd.choice((443, 5432, 8080))
    out = Enricher(bank).enrich(
        with_post_nat(
            flows([(REMOTE, EIP, 40000, ext, 6), ("10.16.0.9", REMOTE, internal, 40000, 6)]),
            [("", "10.16.0.9", 0, internal), (EIP, "", ext, 0)],  # the request and its un-DNATed reply
        )
    )
    assert col(out, "dst_pod") == ["db-0", ""]
    assert col(out, "src_pod") == ["", "db-0"]
    assert col(out, "dst_nat") == ["postnat", ""]
    assert col(out, "nat_confidence") == [100, 0]


def test_no_nat_rule_needed_a_firewalls_nat_is_named_too(rnd):
    """A physical firewall's NAT (no Kube-OVN object): the elements alone name the pod."""
    meta = MetadataStore()
    apply(meta, [convert("pods", ko.pod("pay", "api-0", "10.16.0.5"))])
    enricher = Enricher(meta)
    public, port = f"192.0.2.{rnd.randrange(1, 255)}", rnd.randrange(1024, 65536)
    enricher.enrich(with_post_nat(flows([("10.16.0.5", REMOTE, 33000, 443, 6)]), [(public, "", port, 0)]))
    got = enricher.enrich(
        flows([(REMOTE, public, 443, port, 6), (public, REMOTE, port, 443, 6)], times=T + 500)
    )
    assert col(got, "dst_pod")[0] == "api-0" and col(got, "src_pod")[1] == "api-0"
    assert col(got, "dst_nat")[0] == "postnat_join" and col(got, "src_nat")[1] == "postnat_join"


def test_a_mapping_expires_after_the_window(rnd):
    meta = MetadataStore()
    apply(meta, [convert("pods", ko.pod("pay", "api-0", "10.16.0.5"))])
    enricher = Enricher(meta)
    window = enricher.nat.window_ms
    enricher.enrich(with_post_nat(flows([("10.16.0.5", REMOTE, 33000, 443, 6)]), [(EIP, "", 50000, 0)]))
    late = T + window + rnd.randrange(1, 10 * window)
    got = enricher.enrich(flows([(EIP, REMOTE, 50000, 443, 6)], times=late))
    assert col(got, "src_pod") == [""] and col(got, "src_nat") == [""]
    inside = T + rnd.randrange(0, window + 1)
    got = enricher.enrich(flows([(EIP, REMOTE, 50000, 443, 6)], times=inside))
    assert col(got, "src_pod") == ["api-0"]


def test_the_newest_mapping_of_a_reused_eip_port_wins(rnd):
    """An EIP port reused by another pod later: each outside record is named by the mapping of
    its time (within the window)."""
    meta = MetadataStore()
    apply(
        meta,
        [convert("pods", ko.pod("pay", "a", "10.16.0.5")), convert("pods", ko.pod("pay", "b", "10.16.0.6"))],
    )
    enricher = Enricher(meta)
    first = with_post_nat(flows([("10.16.0.5", REMOTE, 1111, 443, 6)]), [(EIP, "", 50000, 0)])
    second = with_post_nat(
        flows([("10.16.0.6", REMOTE, 2222, 443, 6)], times=T + 60_000), [(EIP, "", 50000, 0)]
    )
    batches = [first, second]
    if rnd.random() < 0.5:
        enricher.enrich(pa.concat_tables(batches))  # in one batch or two
    else:
        for b in batches:
            enricher.enrich(b)
    got = enricher.enrich(flows([(EIP, REMOTE, 50000, 443, 6)], times=T + 61_000))
    assert col(got, "src_pod") == ["b"]
