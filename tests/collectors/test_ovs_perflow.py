"""Open vSwitch per-flow IPFIX (an OpenFlow ``sample`` action) and sampling 1 in N (sFlow, bridge IPFIX,
per-flow IPFIX), decoded by netobs and checked against the traffic that was sent, tshark and pmacct.

Every check runs twice: on the committed captures (tests/testdata/ovs-perflow-*, ovs-sampled-*, made by
``scripts/capture_ovs_exports.py``, with golden summaries) and on a live lab started by the test.

Sampling is random per packet in OVS (the datapath ``sample`` action draws each packet with probability p =
1/N), so the number of samples K of n packets is Binomial(n, p) and the estimate K·N has mean n and standard
deviation sqrt(n·(N-1)); the tests accept SIGMAS of them (a false alarm about once in 1.7 million runs).
OVS 3.1 IPFIX (bridge and per-flow) exports no sampling rate: it multiplies each sampled packet by 1/p
itself (ofproto-dpif-ipfix.c: "use the sampling probability as an approximation of the number of matched
packets"), so its packet counts come in multiples of N and the decoded sampling_rate stays 0 (unknown, which
queries count as 1). Setting ``collector.default_sampling_rate`` to N would count such traffic N times over.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from collectors.jsonl import iter_records
from tests.collectors import _exporters as ex
from tests.collectors import _pmacct, _tshark
from tests.collectors.test_ovs_captures import REGEN, _ms, summary
from tests.services._require import unavailable
from tests.services.ovs import LabError, OvsLab, Traffic, lab_unavailable_reason

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent.parent / "testdata"
SIGMAS = 5
SAMPLED = ex.OVS_SCENARIOS["sampled"]["exporters"]
GOLDEN = ["ovs-perflow-perflow", "ovs-sampled-sflow", "ovs-sampled-ipfix", "ovs-sampled-perflow"]


def binomial_tolerance(sent: int, rate: int, sigmas: float = SIGMAS) -> float:
    """How far K·rate may stray from ``sent`` when K ~ Binomial(sent, 1/rate): sigmas·sqrt(sent·(rate-1))."""
    return sigmas * math.sqrt(sent * (rate - 1))


def _oracles() -> None:
    if reason := _pmacct.missing() or (None if _tshark.available() else "tshark is not installed"):
        unavailable(reason)


def _committed(scenario: str) -> dict:
    """A committed scenario: its captures, their collector ports and the traffic, as a live run gives them."""
    info_file = DATA / f"ovs-{scenario}.json"
    if not info_file.exists():
        pytest.skip(f"{info_file.name} not generated yet (scripts/capture_ovs_exports.py)")
    info = json.loads(info_file.read_text())
    return {
        "traffic": [Traffic(**t) for t in info["traffic"]],
        "ports": {name: e["port"] for name, e in info["exporters"].items()},
        "pcaps": {name: DATA / e["pcap"] for name, e in info["exporters"].items()},
    }


def _live(scenario: str, work: Path) -> dict:
    if reason := lab_unavailable_reason() or (
        None if shutil.which("tcpdump") else "tcpdump is not installed"
    ):
        unavailable(reason)
    try:
        return ex.run_scenario(scenario, work)
    except ex.LostTraffic as exc:
        pytest.fail(str(exc))
    except (LabError, OSError, subprocess.SubprocessError) as exc:
        unavailable(f"OVS lab failed: {exc}")
        raise


def _load(request: pytest.FixtureRequest, scenario: str, work: Path) -> dict:
    _oracles()
    run = _committed(scenario) if request.param == "committed" else _live(scenario, work)
    run["records"] = {name: list(iter_records(path)) for name, path in run["pcaps"].items()}
    jobs = {n: (p, "sflow" if n == "sflow" else "nfacct", True) for n, p in run["pcaps"].items()}
    run["pmacct"] = _pmacct.sums_many(jobs, work)  # renormalized: sFlow by its rate, OVS IPFIX has none
    return run


@pytest.fixture(scope="module", params=["committed", "live"])
def perflow(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _load(request, "perflow", tmp_path_factory.mktemp("perflow"))


@pytest.fixture(scope="module", params=["committed", "live"])
def sampled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _load(request, "sampled", tmp_path_factory.mktemp("sampled"))


def _fwd(t: Traffic) -> tuple:
    """The exchange's forward 5-tuple as netobs keys it (ICMP echo: port 0, type 8 * 256)."""
    if t.proto == "icmp":
        return (t.src_ip, t.dst_ip, 1, 0, 8 * 256)
    return (t.src_ip, t.dst_ip, {"tcp": 6, "udp": 17}[t.proto], t.src_port, t.dst_port)


def _rev(t: Traffic) -> tuple:
    if t.proto == "icmp":
        return (t.dst_ip, t.src_ip, 1, 0, 0)
    return (t.dst_ip, t.src_ip, 6, t.dst_port, t.src_port)


def _packets(records: list[dict]) -> dict:
    """5-tuple → packets over flow records."""
    out: dict = defaultdict(int)
    for r in records:
        if r["kind"] == "flow":
            out[(r["src_addr"], r["dst_addr"], r["proto"], r["src_port"], r["dst_port"])] += r["packets"]
    return dict(out)


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_summary(name):
    path = DATA / f"{name}.pcap"
    if not path.exists():
        pytest.skip(f"{path.name} not generated yet (scripts/capture_ovs_exports.py)")
    got = summary(path)
    golden = DATA / f"{name}.golden.json"
    if REGEN:
        golden.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    if not golden.exists():
        pytest.fail(f"{golden.name} missing: run with NETOBS_REGEN_GOLDEN=1 and review it")
    assert got == json.loads(golden.read_text())
    assert not any(s["errors"] for s in got["stats"].values())


# --- per-flow IPFIX, every packet ---------------------------------------------------------------------------
def test_perflow_counts_every_packet_of_the_matched_flows(perflow):
    """probability=65535: every IPv4 packet once, at ingress; IPv6 is not matched by the rule, so absent."""
    udp, ping, tcp, udp6 = perflow["traffic"]
    records = perflow["records"]["perflow"]
    assert _packets(records) == {
        _fwd(udp): udp.sent_packets,
        _fwd(ping): ping.sent_packets,
        _rev(ping): ping.received_packets,
        _fwd(tcp): tcp.tcp["segs_out"],
        _rev(tcp): tcp.tcp["segs_in"],
    }
    flows = [r for r in records if r["kind"] == "flow"]
    udp_bytes = sum(r["bytes"] for r in flows if r["src_port"] == udp.src_port)
    assert udp_bytes == udp.sent_packets * (20 + 8 + 100)  # octetDeltaCount: IP bytes
    assert not any(r["src_addr"] == udp6.src_ip for r in flows)
    assert {r["direction"] for r in flows} == {"ingress"}
    assert {r["sampling_rate"] for r in flows} == {0}  # OVS exports no rate; counts need no scaling


def test_perflow_observation_ids(perflow):
    """The sample action's obs_domain_id is the message's observation domain (netobs: observation_domain);
    its obs_point_id is IE 138 in every record (netobs: observation_point), as tshark shows it."""
    flows = [r for r in perflow["records"]["perflow"] if r["kind"] == "flow"]
    assert flows and {r["observation_domain"] for r in flows} == {ex.OBS_DOMAIN}
    path, port = str(perflow["pcaps"]["perflow"]), perflow["ports"]["perflow"]
    points = _tshark.ipfix_values(path, port, "cflow.observation_point_id")
    assert len(points) == len(flows) and set(points) == {str(ex.OBS_POINT)}
    assert [r["observation_point"] for r in flows] == [int(p) for p in points]


def test_perflow_same_as_tshark_record_by_record(perflow):
    path, port = perflow["pcaps"]["perflow"], perflow["ports"]["perflow"]
    theirs = _tshark.ipfix_flows(str(path), port)
    ours = [r for r in perflow["records"]["perflow"] if r["kind"] == "flow"]
    assert len(ours) == len(theirs) > 0
    for i, (t, o) in enumerate(zip(theirs, ours, strict=True)):
        o = {**o, "flow_start": _ms(o["flow_start"]), "flow_end": _ms(o["flow_end"])}
        assert {k: o[k] for k in t} == t, f"record {i}"


def test_perflow_same_sums_as_pmacct(perflow):
    ours = _pmacct.netobs_sums(perflow["records"]["perflow"], scale=True)
    assert _pmacct.compare(ours, perflow["pmacct"]["perflow"]) == [] and len(ours) == 5


# --- sampling 1 in N -----------------------------------------------------------------------------------------
def _stream(run: dict, name: str) -> tuple[Traffic, list[dict]]:
    (udp,) = run["traffic"]
    recs = [r for r in run["records"][name] if r["kind"] == "flow" and r["src_port"] == udp.src_port]
    return udp, recs


def test_sflow_sampling_n(sampled):
    udp, samples = _stream(sampled, "sflow")
    rate = ex.sampling_rate(SAMPLED["sflow"])
    assert {r["sampling_rate"] for r in samples} == {rate}
    assert {r["packets"] for r in samples} == {1}
    estimate = sum(r["packets"] * r["sampling_rate"] for r in samples)
    assert abs(estimate - udp.sent_packets) <= binomial_tolerance(udp.sent_packets, rate), estimate


@pytest.mark.parametrize("name", ["ipfix", "perflow"])
def test_ipfix_sampling_n(sampled, name):
    """OVS scales IPFIX counts itself: each record's packets are N × its samples, and N is not exported."""
    udp, recs = _stream(sampled, name)
    rate = ex.sampling_rate(SAMPLED[name])
    assert recs and {r["sampling_rate"] for r in recs} == {0}
    assert all(r["packets"] % rate == 0 and r["bytes"] == r["packets"] * (20 + 8 + 64) for r in recs)
    directions = {"ipfix": {"ingress", "egress"}, "perflow": {"ingress"}}[name]
    assert {r["direction"] for r in recs} == directions
    for direction in directions:  # bridge IPFIX samples ingress and egress independently
        estimate = sum(r["packets"] for r in recs if r["direction"] == direction)
        assert abs(estimate - udp.sent_packets) <= binomial_tolerance(udp.sent_packets, rate), direction


@pytest.mark.parametrize("name", list(SAMPLED))
def test_sampled_same_as_tshark(sampled, name):
    path, port = str(sampled["pcaps"][name]), sampled["ports"][name]
    theirs = (_tshark.sflow_sums if name == "sflow" else _tshark.cflow_sums)(path, port)
    ours = _pmacct.netobs_sums(sampled["records"][name])  # raw: tshark does not scale
    assert ours == {k: v for k, v in theirs.items() if k[:2] != ("::", "::")}  # (pmacct's view: no ARP)


@pytest.mark.parametrize("name", list(SAMPLED))
def test_sampled_same_as_pmacct_renormalized(sampled, name):
    """pmacct with *_renormalize: sFlow samples × the datagram's rate; IPFIX: no rate exported, as is."""
    ours = _pmacct.netobs_sums(sampled["records"][name], scale=True)
    assert _pmacct.compare(ours, sampled["pmacct"][name]) == [] and ours


def test_binomial_tolerance_is_tight_enough():
    """5 sigma of 4000 packets at 1:10 is 949: an estimate from a rate off by 2x (or unscaled) is outside."""
    tol = binomial_tolerance(ex.SAMPLED_PACKETS, 10)
    assert round(tol) == 949
    assert (
        ex.SAMPLED_PACKETS / 2 < ex.SAMPLED_PACKETS - tol
        and ex.SAMPLED_PACKETS * 2 > ex.SAMPLED_PACKETS + tol
    )


@pytest.mark.parametrize("probability", [0, 65536])
def test_perflow_probability_is_checked(tmp_path, probability):
    """OVS takes 1..65535 (1/65535 units); anything else is refused before the lab is touched."""
    with pytest.raises(ValueError, match="1..65535"):
        OvsLab(tmp_path).enable_perflow_ipfix(4739, probability=probability)
