"""The detection scenario under the counting matrix's wire conventions: each convention's datagrams of
a bank bucket decode with the real decoder, every observation point samples on its own, and an
asymmetric path is observable exactly where the convention's exporters can tell it."""

from __future__ import annotations

import os
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from analytics.scenario import wire
from analytics.scenario.bank import Bank
from analytics.scenario.conventions import ROUTERS
from analytics.scenario.generate import CONVENTIONS, _node_ends
from analytics.scenario.traffic import normal_bucket
from collectors.decoder import Decoder

T = 1_761_523_200_000 + 3 * 3_600_000  # a Monday, 03:00


@pytest.fixture
def rng():
    seed = int(os.environ.get("NETOBS_TEST_SEED") or np.random.SeedSequence().entropy % 2**32)
    print(f"seed {seed}")
    return np.random.default_rng(seed)


def test_every_convention_is_offered():
    assert set(CONVENTIONS) >= {
        "probe_both_ends",
        "ovs_sflow",
        "netflow5",
        "biflow",
        "ovs_perflow_ipfix",
        "late",
    }


@pytest.mark.parametrize("convention", wire.WIRE_CONVENTIONS)
def test_a_bucket_decodes_under_every_wire_convention(convention, rng):
    bank = Bank(13)
    bucket = normal_bucket(bank, T, rng, np.full(13, 3e6))
    reps = wire.reports(bucket, convention, 100, rng, _node_ends(bank))
    enc = wire.Encoder(convention, rng)
    enc.add(reps)
    dgrams = list(enc.ready(float("inf")))
    assert dgrams and [d[0] for d in dgrams] == sorted(d[0] for d in dgrams)  # arrival order
    dec = Decoder()
    flows, errors = 0, 0
    exporters, rates = set(), set()
    for ts, address, payload in dgrams:
        out = dec.decode(payload, address, int(ts * 1000), session=f"{address}:4739")
        errors += sum(out.errors.values())
        if len(out.flows):
            cols = out.flows.to_arrow()
            flows += len(out.flows)
            exporters |= {address}
            rates |= set(cols.column("sampling_rate").to_pylist())
    assert errors == 0 and flows > 0
    nodes = {p.node_ip for p in bank.pods} | set(ROUTERS.values())
    assert exporters <= nodes
    assert rates == {100}
    # each observation point sampled on its own: the same direction's counts differ between points
    by_dir: dict[tuple, list[int]] = {}
    for r in reps:
        by_dir.setdefault((r.src.ip, r.dst.ip, r.sport, r.start_ms), []).append(r.packets)
    multi = [v for v in by_dir.values() if len(v) > 1]
    if convention not in ("ovs_bridge_ipfix", "late", "probe_egress", "biflow") and multi:
        assert any(len(set(v)) > 1 for v in multi)


def test_an_asymmetric_path_is_observable_where_the_exporters_can_tell():
    bank = Bank(13)
    nodes = _node_ends(bank)
    client, server = bank.pods_of("tenant03", "api", 1)[0], bank.pods_of("tenant03", "db", 2)[0]
    other = next(n for n, e in nodes.items() if e.center == 3)  # the reply comes back through dc3
    for convention, tells in (("ovs_bridge_ipfix", True), ("router_ingress", True), ("probe_egress", False)):
        usual = wire.points(convention, server, client, None, nodes)
        now = wire.points(convention, server, client, (other,), nodes)
        assert (usual != now) == tells, (convention, usual, now)


def test_a_scan_is_scored_only_where_sampling_leaves_enough_distinct_ports():
    from analytics.scenario.generate import ScenarioSpec, _scan_unobservable

    bank = Bank(13)
    slow = {"tenant": "tenant12", "center": 1, "ports": 20, "hosts": 20, "probe_bytes": 120.0, "rotate": True}
    fast = {"tenant": "tenant09", "center": 1, "ports": 300, "hosts": 20}  # probes of the default size
    spec = lambda conv, rate: ScenarioSpec(tenants=13, days=8, sampling=rate, convention=conv)  # noqa: E731
    # Sampled bytes (the first generator): a 120-byte probe survives 1:1000 one time in nine; a day holds enough.
    assert _scan_unobservable(slow, bank, spec("probe_both_ends", 1000), 72) == ""
    # Packet sampling: a one-packet probe survives one time in a thousand; nothing to tell.
    assert "1-packet probes sampled 1:1000" in _scan_unobservable(slow, bank, spec("netflow5", 1000), 72)
    assert _scan_unobservable(fast, bank, spec("netflow5", 100), 2) == ""
    # Routers see no probe to a target on the scanner's own node.
    why = _scan_unobservable(fast, bank, spec("router_ingress", 1000), 2)
    assert "on the scanner's node" in why


@pytest.mark.parametrize("convention", wire.WIRE_CONVENTIONS)
def test_the_array_encoder_writes_the_same_bytes_as_the_per_record_builders(convention, rng):
    """The packed encoder (numpy arrays of the wire layout) against the counting matrix's builders,
    one struct.pack per field: byte for byte, for every exporter and export of a bucket."""
    import copy

    from analytics.scenario import conventions as cv

    bank = Bank(13)
    bucket = normal_bucket(bank, T + int(rng.integers(0, 86_400_000)), rng, np.full(13, 3e6))
    reps = wire.reports(bucket, convention, int(rng.choice([100, 1000])), rng, _node_ends(bank))
    for r in reps[:: max(1, len(reps) // 5)]:  # reverse counts and SYN-only first packets too
        r.flags = int(rng.choice([0x02, 0x12, 0x18, 0x1B]))
    groups: dict[tuple, list] = {}
    for r in reps:
        groups.setdefault((r.exporter, r.protocol, r.style), []).append(r)
    assert groups
    for (address, protocol, style), recs in groups.items():
        if protocol in ("ipfix", "biflow"):
            ours = cv._IpfixExporter(address, style, recs[0].sampling)
            ref = copy.deepcopy(ours)
            assert wire._ipfix_datagrams(ours, wire._ipfix_records(style, recs), 1000) == ref.datagrams(
                recs, 1000
            )
            assert ours.seq == ref.seq
        elif protocol == "sflow":
            assert wire._sflow(address, recs, 1_000_000, 7, 1000) == cv._sflow(
                address, recs, 1_000_000, 7, 1000
            )


@pytest.mark.parametrize("volume", [3e6, 5e6, 7e6, 1e7, 3e8])
def test_an_asymmetric_path_is_scored_only_where_sampling_leaves_enough_packets(volume, rng):
    """The generator's rule against the detector run on sampled counts drawn here, at the chance the rule
    says the detector needs on the scenario's bank: requests seen only at the client's node, replies only
    at the server's, beside symmetric conversations at both. Where the rule says observable the detector
    finds the hour in at least 80 % of draws; where it says not, it names the packets an hour and what the
    detector needs, and finding it is a coin toss at best."""
    from analytics.detectors import detect_asymmetric
    from analytics.scenario.generate import ScenarioSpec, _asymmetry_unsampled, asymmetry_threshold

    spec = ScenarioSpec(tenants=13, days=8, sampling=1000, convention="ovs_sflow", volume=volume)
    p = {
        "nbytes": 1e7 * spec.size
    }  # the default anomaly set's asymmetric conversation, 8 times the reply bytes
    why = _asymmetry_unsampled(p, spec)
    request, reply = p["nbytes"] / 600 * 12 / 1000, p["nbytes"] * 8 / 1200 * 12 / 1000
    cols = ["t", "client", "server", "port", "proto", "client_center", "server_center", "client_node",
            "server_node", "tenant", "workload", "reply", "exporter", "exporter_center", "sampled"]  # fmt: skip
    t = pd.Timestamp("2026-11-02T10:00:00Z")
    found = 0
    draws = 60
    for _ in range(draws):
        rows = []
        for i in range(4):  # symmetric background (too few tables to learn a spread from: Poisson)
            for ex in ("n1", "n2"):
                for rep, mean in ((False, 20.0), (True, 60.0)):
                    rows.append((t, f"10.0.0.{i}", f"10.1.0.{i}", 443, 6, "dc1", "dc1", "n1", "n2", "bank", "web",
                                 rep, ex, "dc1", int(rng.poisson(mean))))  # fmt: skip
        for ex, rep, mean in (("n1", False, request), ("n2", True, reply)):
            rows.append((t, "10.0.9.1", "10.1.9.1", 8080, 6, "dc1", "dc1", "n1", "n2", "bank", "api", rep, ex,
                         "dc1", int(rng.poisson(mean))))  # fmt: skip
        obs = pd.DataFrame(rows, columns=cols)
        obs = obs[obs["sampled"] > 0]
        hits, report = detect_asymmetric(
            obs, timedelta(hours=1), max_chance=asymmetry_threshold(spec), false_per_day=1e12
        )
        assert report.dispersion == 1.0
        assert all(f.entities["client"] == "10.0.9.1" for f in hits), hits  # nothing false
        found += bool(hits)
    if why:
        assert "sampled request" in why and "of them together" in why
        assert found / draws < 0.97
    else:
        assert found / draws >= 0.8
    assert _asymmetry_unsampled(p, ScenarioSpec(tenants=13, days=8, sampling=1000, volume=volume)) == ""


def test_a_biflow_exporter_on_a_one_way_path_reports_that_direction_alone(rng):
    """Requests forced through the client's node, replies through the server's: the client node's biflow
    records carry no reverse counts (the replies never crossed it), the server node reports the replies
    as a record of their own, its biflowDirection arbitrary (0: an exporter that saw the replies alone
    does not know who opened the conversation; netobs then decides by ports and metadata). On the usual
    path one record carries both."""
    bank = Bank(13)
    nodes = _node_ends(bank)
    client, server = bank.pods_of("tenant08", "web", 1)[0], bank.pods_of("tenant08", "api", 2)[0]
    base = dict(src=wire._end(client), dst=wire._end(server), sport=45000, dport=8080, proto=6, start_ms=T,
                end_ms=T + 60_000, size=wire.REQUEST_SIZE, flags=0x1B)  # fmt: skip
    rates = {"ipfix": 1, "sflow": 1, "probe": 1, "router": 1}
    usual = wire._observe("biflow", True, base, 100, rates, rng, None, 8.0)
    assert usual and all(r.reverse[0] > 0 for r in usual)
    fwd = wire._observe("biflow", True, base, 100, rates, rng, [nodes[client.node_ip]], 8.0)
    assert [(r.exporter, r.reverse[0]) for r in fwd] == [(client.node_ip, 0)]
    back = dict(
        base, src=wire._end(server), dst=wire._end(client), sport=8080, dport=45000, size=wire.REPLY_SIZE
    )
    rev = wire._observe("biflow", False, back, 400, rates, rng, [nodes[server.node_ip]], 8.0)
    assert [(r.exporter, r.packets, r.reverse[0], r.src.ip) for r in rev] == [
        (server.node_ip, 400, 0, server.ip)
    ]
    # it cannot tell who opened the conversation (biflowDirection arbitrary); the forward records can
    assert [r.initiator for r in rev] == [0] and {r.initiator for r in usual + fwd} == {1}


def test_an_asymmetric_path_reroutes_every_conversation_between_its_pods(rng):
    """A changed route takes every flow between the two pods, not only the one the anomaly adds: an added
    flow beside unchanged ones of the same conversation is a partial asymmetry the label does not describe
    (each point still sees both directions, mostly)."""
    from analytics.scenario.anomalies import Anomaly, Label, _node_of

    bank = Bank(13)
    tenant = f"tenant{int(rng.integers(1, 14)):02d}"
    web, api = bank.pods_of(tenant, "web", 1)[0], bank.pods_of(tenant, "api", 1)[0]
    fwd, rev = (_node_of(bank, tenant, "web", 1),), (_node_of(bank, tenant, "api", 1),)
    bucket = normal_bucket(bank, T, rng, np.full(13, 3e6))
    while not any(c.client == web and c.server == api for c in bucket.conversations):
        bucket = normal_bucket(bank, T, rng, np.full(13, 3e6))  # pods are drawn per bucket
    before = len(bucket.conversations)
    label = Label("asymmetric_path", T, T + 3_600_000, {"tenant": tenant})
    params = dict(
        tenant=tenant, client=("web", 1), server=("api", 1), nbytes=1e6, forward_at=fwd, reverse_at=rev
    )
    Anomaly(label, "cross", params).apply(bank, bucket, rng)
    assert len(bucket.conversations) == before + 1
    pair = [c for c in bucket.conversations if c.client == web and c.server == api]
    assert len(pair) >= 2 and all((c.forward_at, c.reverse_at) == (fwd, rev) for c in pair)
    others = [c for c in bucket.conversations if not (c.client == web and c.server == api)]
    assert all(c.forward_at is None and c.reverse_at is None for c in others)
