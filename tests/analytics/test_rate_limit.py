"""Observed pod rates against their Kube-OVN rate limits (``rate_limit`` detector).

The detector's rules on hand-made series, then end to end: conversations of known rate exported
under a counting convention drawn at test time (OVS bridge IPFIX reporting each packet at ingress
and egress, sFlow, a probe, routers; sampling rates drawn as deployments vary them), decoded,
enriched, counted and stored in the embedded store, with the limits as Kube-OVN pod annotations
in the inventory (the metadata store). Seeds are drawn at test time and printed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import yaml

from analytics import model
from analytics.config import AnalyticsConfig, RateLimitConfig
from analytics.detectors.rate_limit import detect_rate_limits
from analytics.runner import Analysis
from analytics.scenario.bank import Bank
from analytics.scenario.conventions import Conversation, End, export, inventory, write
from netobs.counting import CountingConfig
from netobs.store import make_store
from netobs_app import components
from netobs_app.capture import decoded
from netobs_app.scenario import _scenario_settings
from netobs_app.settings import Settings
from pipeline.enrich import make_enricher
from pipeline.enrich_ingest import Ingest
from pipeline.metadata.k8s_convert import pod as convert_pod

BUCKET = timedelta(minutes=5)
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture()
def rnd() -> random.Random:
    seed = random.SystemRandom().randrange(1 << 30)
    print("seed", seed)
    return random.Random(seed)


def usage(rates_mbps: list[float], sampled: list[int], pod="api-0", direction="egress") -> pd.DataFrame:
    secs = BUCKET.total_seconds()
    return pd.DataFrame(
        {
            "time": [pd.Timestamp(T0 + i * BUCKET) for i in range(len(rates_mbps))],
            "cluster": "",
            "namespace": "pay",
            "pod": pod,
            "direction": direction,
            "bytes": [r * 1e6 * secs / 8 for r in rates_mbps],
            "raw_packets": sampled,
        }
    )


def limits(mbps: float, pod="api-0", direction="egress", since=T0, until=None) -> pd.DataFrame:
    end = int((until or T0 + timedelta(days=1)).timestamp() * 1000)
    return pd.DataFrame(
        [("", "pay", pod, direction, mbps, int(since.timestamp() * 1000), end)],
        columns=["cluster", "namespace", "pod", "direction", "limit_mbps", "valid_from", "valid_to"],
    )


def kinds(found) -> list[tuple]:
    return [(f.type, f.window_start, f.window_end) for f in found]


def test_exceeded_saturated_and_quiet_buckets():
    found = detect_rate_limits(
        usage([30, 31, 9.5, 2, 9.6], [5000] * 5), limits(10), RateLimitConfig(), BUCKET
    )
    assert kinds(found) == [
        ("rate_limit_exceeded", T0, T0 + 2 * BUCKET),
        ("rate_limit_saturated", T0 + 2 * BUCKET, T0 + 3 * BUCKET),
        ("rate_limit_saturated", T0 + 4 * BUCKET, T0 + 5 * BUCKET),
    ]
    assert found[0].severity == "warning" and found[1].severity == "info"
    assert found[0].entities == {"cluster": "", "namespace": "pay", "pod": "api-0", "direction": "egress"}
    assert "10 Mbit/s egress_rate limit" in found[0].summary


def test_too_few_samples_cannot_prove_an_exceedance():
    """Twice the limit estimated from 9 sampled packets (1:4096): not judged; from 16: the lower
    bound 2 * (1 - 2/sqrt(16)) = 1.0 is not above 1.1: at its limit as far as one can tell (saturated)."""
    cfg = RateLimitConfig()
    assert detect_rate_limits(usage([20], [9]), limits(10), cfg, BUCKET) == []
    assert [f.type for f in detect_rate_limits(usage([20], [16]), limits(10), cfg, BUCKET)] == [
        "rate_limit_saturated"
    ]
    assert [f.type for f in detect_rate_limits(usage([20], [400]), limits(10), cfg, BUCKET)] == [
        "rate_limit_exceeded"
    ]


def test_the_limit_in_force_at_each_bucket_applies_and_other_pods_or_directions_do_not():
    lim = pd.concat(
        [
            limits(10, until=T0 + 2 * BUCKET),
            limits(100, since=T0 + 2 * BUCKET),
            limits(1, direction="ingress"),  # the other direction
            limits(1, pod="api-1"),
        ]
    )
    found = detect_rate_limits(usage([30, 30, 30, 30], [9999] * 4), lim, RateLimitConfig(), BUCKET)
    assert kinds(found) == [("rate_limit_exceeded", T0, T0 + 2 * BUCKET)]


def test_a_record_is_spread_over_the_buckets_it_covers():
    """A record of 12 minutes from 10:03 to 10:15 with 1200 bytes: 200 in 10:00-10:05, 500 in
    10:05-10:10, 500 in 10:10-10:15 (whose end is 10:15: none in 10:15-10:20)."""
    s = int((T0 + timedelta(minutes=3)).timestamp() * 1000)
    e = s + 12 * 60_000
    b = 300_000
    parts = pd.DataFrame(
        {
            "cluster": [""], "namespace": ["pay"], "pod": ["api-0"], "direction": ["egress"],
            "b0": [s // b], "b1": [e // b],
            "first_bytes": [1200 * 2 / 12], "last_bytes": [0.0], "mid_bytes": [1200 * 5 / 12],
            "first_packets": [2.0], "last_packets": [0.0], "mid_packets": [5.0],
        }
    )  # fmt: skip
    out = model.spread_rates(parts, T0, T0 + timedelta(hours=1), 300)
    assert out["bytes"].round(6).tolist() == [200.0, 500.0, 500.0, 0.0]
    assert out["time"].tolist() == [pd.Timestamp(T0 + i * BUCKET) for i in range(4)]


# ---- end to end -----------------------------------------------------------------------------------
#: Client pods by what they must show → their true egress rate as a fraction of their limit.
CASES = {"over": 3.0, "near": 0.97, "quiet": 0.3}


def _conversation(
    cid: int, client: End, server: End, mbps: float, start_ms: int, span_ms: int
) -> Conversation:
    size = 1200
    packets = int(mbps * 1e6 * span_ms / 1000 / 8 / size)
    return Conversation(cid, client, server, 40000 + cid, 443, 6, start_ms, span_ms,
                        fwd_packets=packets, rev_packets=max(1, packets // 20), fwd_size=size, rev_size=80)  # fmt: skip


@pytest.mark.slow
def test_pods_against_their_limits_end_to_end(tmp_path, rnd):
    convention = rnd.choice(("ovs_bridge_ipfix", "ovs_sflow", "probe_egress", "biflow", "mixed"))
    bank = Bank(tenants=2)
    pods = [p for p in bank.pods if p.center == 1]
    rnd.shuffle(pods)
    clients = {kind: pods[i] for i, kind in enumerate(CASES)}
    server = next(p for p in pods[len(CASES) :] if p.node != clients["over"].node)
    limit = rnd.choice((1.0, 2.0, 5.0))
    start_ms = int(T0.timestamp() * 1000) + rnd.randrange(0, 300_000)  # not on a bucket edge
    span_ms = 15 * 60_000
    convs = [
        _conversation(i, End(c.ip, c.node, c.node_ip, c.center), End(server.ip, server.node, server.node_ip, 1),
                      limit * share, start_ms, span_ms)
        for i, (c, share) in enumerate((clients[k], s) for k, s in CASES.items())
    ]  # fmt: skip
    exp = export(convs, convention, np.random.default_rng(rnd.randrange(1 << 30)))
    print("convention", convention, "sampling", exp.sampling, "limit", limit)
    inv = inventory(bank)
    names = {}
    for pod in inv["pods"]:
        if pod["ip"] in {c.ip for c in clients.values()}:
            # the Kube-OVN annotation, converted by the real converter (Mbit/s)
            annotated = convert_pod(
                {"metadata": {"name": pod["name"], "namespace": pod["namespace"],
                              "annotations": {"ovn.kubernetes.io/egress_rate": f"{limit:g}"}},
                 "spec": {"nodeName": pod["node"]}, "status": {"podIP": pod["ip"]}}
            )  # fmt: skip
            pod["egress_rate_mbps"] = annotated.egress_rate_mbps
            names[pod["ip"]] = pod["name"]
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inv, sort_keys=False))
    pcap = write(exp, tmp_path / convention)
    from analytics.scenario.conventions import counting_config

    cfg = _scenario_settings(Settings(), tmp_path).model_copy(
        update={"counting": CountingConfig.model_validate(counting_config())}
    )
    store = make_store(cfg.store, components.schema(cfg))
    store.start()
    try:
        ingest = Ingest(make_enricher(cfg, store), store, progress=None)
        for flows, _, rejects in decoded(str(pcap), cfg):
            ingest.add(flows, rejects)
        ingest.flush()
        assert ingest.rejects == 0
        analysis = Analysis(
            store.query_arrow, cfg.store.database, AnalyticsConfig(), T0, T0 + timedelta(minutes=30)
        )
        found = analysis.rate_limits()
        window = (T0, T0 + timedelta(minutes=30))
        rows = store.query_arrow(model.pod_rates(cfg.store.database, *window, 300)).to_pandas()
        parts = model.spread_rates(rows, *window, 300)
    finally:
        store.stop()
    by = {(f.entities["pod"], f.type) for f in found}
    over, near, quiet = (names[clients[k].ip] for k in CASES)
    context = f"convention {convention} sampling {exp.sampling}: {[f.summary for f in found]}"
    assert (over, "rate_limit_exceeded") in by, context
    assert not [f for f in found if f.entities["pod"] in (near, quiet) and f.type == "rate_limit_exceeded"], (
        context
    )
    assert not [f for f in found if f.entities["pod"] == quiet], context
    assert analysis.notes["rate_limit"]["limited_pods"] == 3
    # Every fully covered bucket's estimate is the truth within its sampling error (counted once:
    # double counting would be 2x), and saturation is reported exactly where the estimate says so.
    first_full, last_full = (start_ms // 300_000 + 1) * 300, (start_ms + span_ms) // 300_000 * 300 - 300
    flagged = {
        int(t.timestamp())
        for f in found
        if f.entities["pod"] == near and f.type == "rate_limit_saturated"
        for t in pd.date_range(f.window_start, f.window_end, freq=BUCKET, inclusive="left")
    }
    for kind, conv in zip(CASES, convs, strict=True):
        rows = parts[(parts["direction"] == "egress") & (parts["pod"] == names[clients[kind].ip])]
        secs = np.array([int(t.timestamp()) for t in rows["time"]], np.int64)
        full = rows[(secs >= first_full) & (secs <= last_full)]
        assert len(full) >= 2, context
        est = full["bytes"].to_numpy() * 8 / 300 / 1e6
        truth = conv.fwd_bytes * 8 / (span_ms / 1000) / 1e6
        tol = 4 / np.sqrt(np.maximum(full["raw_packets"].to_numpy(), 1)) + 0.03
        assert (np.abs(est / truth - 1) <= tol).all(), f"{kind}: {est} vs {truth} ±{tol}; {context}"
        if kind == "near":
            full_secs = secs[(secs >= first_full) & (secs <= last_full)]
            expect = {int(t) for t, e in zip(full_secs, est, strict=True) if e >= 0.9 * limit}
            assert expect == flagged & set(full_secs.tolist()), f"{expect} vs {flagged}; {context}"
