"""Real Open vSwitch 3.1 exports (tests/testdata/ovs-*.pcap) against golden summaries,
against tshark record by record, and against the traffic the capture script generated.

Regenerate the golden files with ``NETOBS_REGEN_GOLDEN=1 pytest tests/collectors`` and
review the diff.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collectors.decoder import Decoder
from collectors.jsonl import iter_records
from tests.collectors import _pmacct, _tshark
from tests.services._require import unavailable

DATA = Path(__file__).parent.parent / "testdata"
CAPTURES = {"ovs-sflow": 6343, "ovs-ipfix": 4739}
REGEN = os.environ.get("NETOBS_REGEN_GOLDEN", "") not in ("", "0")


def _pcap(name: str) -> Path:
    path = DATA / f"{name}.pcap"
    if not path.exists():
        pytest.skip(f"{path.name} not generated yet (scripts/capture_ovs_exports.py)")
    return path


def summary(path: Path) -> dict:
    """A stable digest of a decoded capture: sums per flow key, counters per interface."""
    decoder = Decoder()
    flows: dict = defaultdict(lambda: {"records": 0, "packets": 0, "bytes": 0})
    counters: dict = defaultdict(lambda: {"records": 0, "in_octets": 0, "out_octets": 0})
    times = []
    for r in iter_records(path, decoder):
        if r["kind"] == "counter":
            c = counters[str(r["if_index"])]
            c["records"] += 1
            c["in_octets"] = max(c["in_octets"], r["in_octets"])
            c["out_octets"] = max(c["out_octets"], r["out_octets"])
            continue
        key = " ".join(
            str(r[k])
            for k in (
                "src_addr",
                "dst_addr",
                "proto",
                "src_port",
                "dst_port",
                "direction",
                "in_if",
                "out_if",
                "sampling_rate",
                "tunnel_type",
                "tunnel_id",
            )
        )
        f = flows[key]
        f["records"] += 1
        f["packets"] += r["packets"]
        f["bytes"] += r["bytes"]
        times += [r["flow_start"], r["flow_end"]]
    stats = {k: v.as_dict() for k, v in decoder.stats.items()}
    return {
        "capture": path.name,
        "stats": stats,
        "first_time": min(times),
        "last_time": max(times),
        "flows": dict(sorted(flows.items())),
        "counters": dict(sorted(counters.items())),
    }


@pytest.mark.parametrize("name", CAPTURES)
def test_golden_summary(name):
    got = summary(_pcap(name))
    golden = DATA / f"{name}.golden.json"
    if REGEN:
        golden.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    if not golden.exists():
        pytest.fail(f"{golden.name} missing: run with NETOBS_REGEN_GOLDEN=1 and review it")
    assert got == json.loads(golden.read_text())


def _ms(text: str) -> int:
    return round(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize("name", CAPTURES)
def test_same_as_tshark_record_by_record(name):
    path = _pcap(name)
    if not _tshark.available():
        unavailable("tshark is not installed (apt-get install tshark)")
    theirs = (_tshark.sflow_flows if "sflow" in name else _tshark.ipfix_flows)(str(path), CAPTURES[name])
    ours = [r for r in iter_records(path) if r["kind"] == "flow"]
    assert len(ours) == len(theirs) > 0
    for i, (t, o) in enumerate(zip(theirs, ours, strict=True)):
        o = {**o, "flow_start": _ms(o["flow_start"]), "flow_end": _ms(o["flow_end"])}
        assert {k: o[k] for k in t} == t, f"record {i}"


@pytest.fixture(scope="module")
def pmacct_sums(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """pmacct's per-5-tuple sums of both captures (sfacctd renormalized by the samples' rate, nfacctd as is)."""
    if reason := _pmacct.missing():
        unavailable(reason)
    jobs = {name: (_pcap(name), "sflow" if "sflow" in name else "nfacct", True) for name in CAPTURES}
    return _pmacct.sums_many(jobs, tmp_path_factory.mktemp("pmacct"))


@pytest.mark.integration
@pytest.mark.parametrize("name", CAPTURES)
def test_same_sums_as_pmacct(name, pmacct_sums):
    """A second independent decoder: every IP 5-tuple's packets and bytes (IPFIX: both directions summed)."""
    ours = _pmacct.netobs_capture_sums(_pcap(name), scale=True)
    assert _pmacct.compare(ours, pmacct_sums[name]) == []
    assert len(ours) > 20


def _ingress_packets(path: Path) -> dict:
    sums: dict = defaultdict(int)
    for r in iter_records(path):
        if r["kind"] == "flow" and r["direction"] != "egress":
            sums[(r["src_addr"], r["dst_addr"], r["proto"], r["src_port"], r["dst_port"])] += r["packets"]
    return sums


@pytest.mark.parametrize("name", CAPTURES)
def test_packets_match_generated_traffic(name):
    """Sampling 1 in 1: every packet the pods sent is in the export, once (at ingress)."""
    traffic_file = DATA / "ovs-traffic.json"
    if not traffic_file.exists():
        pytest.skip("ovs-traffic.json not generated yet")
    traffic = json.loads(traffic_file.read_text())
    assert traffic[name.split("-")[1]]["sampling"] == 1
    sums = _ingress_packets(_pcap(name))
    for t in traffic["traffic"]:
        v6 = ":" in t["src_ip"]
        if t["proto"] == "icmp":
            proto, fwd_ports = (58, (0, 128 * 256)) if v6 else (1, (0, 8 * 256))
        else:
            proto, fwd_ports = {"tcp": 6, "udp": 17}[t["proto"]], (t["src_port"], t["dst_port"])
        sent = t["tcp"]["segs_out"] if t["tcp"] else t["sent_packets"]
        assert sums[(t["src_ip"], t["dst_ip"], proto) + fwd_ports] == sent, t
        if t["tcp"]:
            back = (t["dst_ip"], t["src_ip"], proto, t["dst_port"], t["src_port"])
            assert sums[back] == t["tcp"]["segs_in"], t


@pytest.mark.parametrize("name", CAPTURES)
def test_interfaces_are_the_pods_host_ifindexes(name):
    """Both exports name ports by the host ifIndex; sFlow floods as 0x80000000|ports."""
    traffic_file = DATA / "ovs-traffic.json"
    if not traffic_file.exists():
        pytest.skip("ovs-traffic.json not generated yet")
    ports = {p["host_ifindex"] for p in json.loads(traffic_file.read_text())["pods"]}
    seen_in, seen_out, counters = set(), set(), set()
    for r in iter_records(_pcap(name)):
        if r["kind"] == "counter":
            counters.add(r["if_index"])
        else:
            seen_in.add(r["in_if"])
            seen_out.add(r["out_if"])
    assert seen_in == ports
    if "sflow" in name:
        assert counters == ports
        assert all(v >> 30 == 2 for v in seen_out - ports)  # format 2: "multiple" (flooded)
    else:
        assert seen_out - ports <= {0}  # ingress records carry no egress interface
