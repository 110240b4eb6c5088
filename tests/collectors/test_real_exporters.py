"""Real softflowd and pmacct exports of a crafted capture (tests/testdata/softflowd-*, pmacct-*), checked
against golden summaries, against tshark per 5-tuple, and against the crafted traffic itself.

Regenerate the captures with ``scripts/capture_flow_exporters.py`` and the golden files with
``NETOBS_REGEN_GOLDEN=1 pytest tests/collectors``; review both diffs. The live tests run the
exporters again on the committed traffic (they need softflowd / pmacct, tcpdump and root).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collectors.jsonl import iter_records
from collectors.pcap import PcapReader
from tests.collectors import _exporters as ex
from tests.collectors import _pmacct, _tshark
from tests.collectors.test_ovs_captures import REGEN, summary
from tests.services._require import unavailable

DATA = Path(__file__).parent.parent / "testdata"
SOFTFLOWD = [f"softflowd-{k}" for k in ex.SOFTFLOWD_VERSIONS]
PMACCT = [f"pmacct-{k}" for k in ex.PMACCT_PROBES]
L2 = {"psamp", "sflow"}  # frame bytes (Ethernet header, 802.1Q tag; sFlow adds the FCS)


def _capture(name: str) -> Path:
    path = DATA / f"{name}.pcap"
    if not path.exists():
        pytest.skip(f"{path.name} not generated yet (scripts/capture_flow_exporters.py)")
    return path


def _traffic(name: str) -> Path:
    return DATA / ("exporters-traffic-small.pcap" if name.endswith("psamp") else "exporters-traffic.pcap")


def ours(path: Path, key=_tshark._key) -> dict:
    """5-tuple → [packets, bytes] of what netobs decodes from a capture (flows only)."""
    sums: dict = {}
    for r in iter_records(path):
        if r["kind"] == "flow":
            s = sums.setdefault(
                key(r["src_addr"], r["dst_addr"], r["proto"], r["src_port"], r["dst_port"]), [0, 0]
            )
            s[0] += r["packets"]
            s[1] += r["bytes"]
    return sums


def _by_host_pair(src, dst, proto, *_):
    return (src, dst, proto)


@pytest.mark.parametrize("name", SOFTFLOWD + PMACCT)
def test_golden_summary(name):
    got = summary(_capture(name))
    golden = DATA / f"{name}.golden.json"
    if REGEN:
        golden.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    if not golden.exists():
        pytest.fail(f"{golden.name} missing: run with NETOBS_REGEN_GOLDEN=1 and review it")
    assert got == json.loads(golden.read_text())
    assert not any(s["errors"] for s in got["stats"].values())


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SOFTFLOWD + PMACCT if not n.endswith("psamp")])
def test_same_sums_as_tshark(name):
    path = _capture(name)
    if not _tshark.available():
        unavailable("tshark is not installed (apt-get install tshark)")
    port = next(iter(PcapReader(path))).dst_port
    theirs = (_tshark.sflow_sums if name.endswith("sflow") else _tshark.cflow_sums)(str(path), port)
    assert ours(path) == theirs and len(theirs) > 60


@pytest.mark.parametrize("name", SOFTFLOWD)
def test_softflowd_counts_every_crafted_packet(name):
    """softflowd saw the whole file: per host pair and protocol its packets (and IP bytes) are the truth."""
    truth = ex.truth(_traffic(name))
    got = ours(_capture(name), key=_by_host_pair)
    kind = name.split("-")[1]
    if kind == "netflow5":  # v5 has no IPv6
        truth = {k: v for k, v in truth.items() if ":" not in k[0]}
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in truth.items()}
    if kind not in L2:
        assert got == truth
    else:  # PSAMP: frame sizes, 14 bytes of Ethernet (+4 per 802.1Q tag) over the IP bytes
        assert all(got[k][1] - v[1] in {14 * v[0], 18 * v[0]} for k, v in truth.items())


def test_psamp_records_are_typed_and_parsed():
    recs = [r for r in iter_records(_capture("softflowd-psamp")) if r["kind"] == "flow"]
    assert {r["type"] for r in recs} == {"psamp"}
    assert {r["vlan"] for r in recs} == {0, 100, 101}
    assert {r["etype"] for r in recs} == {0x0800, 0x86DD}
    assert all(r["flow_start"] == r["flow_end"] and r["flow_start"].startswith("2023-11-14") for r in recs)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(ex.SOFTFLOWD_VERSIONS))
def test_live_softflowd(kind, tmp_path):
    reason = ex.missing("softflowd")
    if reason:
        unavailable(reason)
    traffic = _traffic(f"x-{kind}")
    out = tmp_path / f"{kind}.pcap"
    assert ex.run_softflowd(traffic, kind, out) > 0
    truth = ex.truth(traffic)
    if kind == "netflow5":
        truth = {k: v for k, v in truth.items() if ":" not in k[0]}
    got = ours(out, key=_by_host_pair)
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in truth.items()}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(ex.PMACCT_PROBES))
def test_live_pmacctd_same_as_tshark(kind, tmp_path):
    reason = ex.missing("pmacct")
    if reason:
        unavailable(reason)
    if not _tshark.available():
        unavailable("tshark is not installed (apt-get install tshark)")
    out = tmp_path / f"{kind}.pcap"
    assert ex.run_pmacctd(DATA / "exporters-traffic.pcap", kind, out, tmp_path) > 0
    port = next(iter(PcapReader(out))).dst_port
    theirs = (_tshark.sflow_sums if kind == "sflow" else _tshark.cflow_sums)(str(out), port)
    got = ours(out)
    assert got == theirs
    # Every crafted host pair shows up (pmacct may count a few packets of the file's tail twice).
    assert {k[:3] for k in got} == set(ex.truth(DATA / "exporters-traffic.pcap"))


# --- pmacct (sfacctd / nfacctd reading the captures) as a second oracle ---------------------------------------
@pytest.fixture(scope="module")
def pmacct_sums(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """pmacct's per-5-tuple sums of every committed capture (renormalize on: softflowd's sampling options say
    1 in 1, pmacct's sfprobe samples say 1; scaling must change nothing)."""
    if reason := _pmacct.missing():
        unavailable(reason)
    jobs = {n: (_capture(n), "sflow" if n.endswith("sflow") else "nfacct", True) for n in SOFTFLOWD + PMACCT}
    return _pmacct.sums_many(jobs, tmp_path_factory.mktemp("pmacct"))


def _frames(path: Path) -> tuple[dict, set]:
    """From the crafted traffic (scapy): 5-tuple → Ethernet header bytes (14, 18 with an 802.1Q tag), and the
    (src, dst, proto) of IPv4 fragments."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q
    from scapy.utils import rdpcap

    l2, fragmented = {}, set()
    for p in rdpcap(str(path)):
        ip = p.getlayer(IP) or p.getlayer(IPv6)
        proto = ip.proto if ip.version == 4 else (58 if p.haslayer("ICMPv6EchoRequest") else ip.nh)
        l4 = p.getlayer(TCP) or p.getlayer(UDP)
        ports = (l4.sport, l4.dport) if l4 and not (ip.version == 4 and ip.frag) else (0, 0)
        l2[_tshark._key(ip.src, ip.dst, proto, *ports)] = 18 if p.haslayer(Dot1Q) else 14
        if ip.version == 4 and (ip.frag or ip.flags.MF):
            fragmented.add((ip.src, ip.dst, proto))
    return l2, fragmented


def _merge_ports(sums: dict, pairs: set) -> dict:
    """Sums with the ports of the given (src, dst, proto) set to 0."""
    out: dict = {}
    for k, (packets, nbytes) in sums.items():
        k = k[:3] + (0, 0) if k[:3] in pairs else k
        s = out.setdefault(k, [0, 0])
        s[0] += packets
        s[1] += nbytes
    return out


@pytest.mark.integration
@pytest.mark.parametrize("name", [n for n in SOFTFLOWD + PMACCT if not n.endswith("psamp")])
def test_same_sums_as_pmacct(name, pmacct_sums):
    ours = _pmacct.netobs_capture_sums(_capture(name), scale=True)
    assert _pmacct.compare(ours, pmacct_sums[name]) == [] and len(ours) > 60


@pytest.mark.integration
def test_psamp_same_sums_as_pmacct(pmacct_sums):
    """PSAMP packet reports: same packets per 5-tuple; netobs counts frame bytes (dataLinkFrameSize), pmacct
    the IP bytes. pmacct 1.7.7 reads UDP ports out of non-first IPv4 fragments' payload, so the fragmented
    host pair is compared without ports."""
    l2, fragmented = _frames(_traffic("softflowd-psamp"))
    assert fragmented == {("10.4.0.1", "10.4.0.2", 17)}
    ours = _merge_ports(_pmacct.netobs_capture_sums(_capture("softflowd-psamp")), fragmented)
    theirs = _merge_ports(pmacct_sums["softflowd-psamp"], fragmented)
    diffs = _pmacct.compare(ours, theirs, bytes_offset=lambda k, packets: l2[k] * packets)
    assert diffs == [] and len(ours) > 20


def test_psamp_same_sums_as_tshark():
    """tshark dissects each report's frame section: same packets and frame bytes per 5-tuple. tshark reassembles
    the IPv4 fragments and puts the UDP ports on the last one; netobs keeps them on the first (which carries
    the UDP header), so the fragmented host pair is compared without ports."""
    path = _capture("softflowd-psamp")
    if not _tshark.available():
        unavailable("tshark is not installed (apt-get install tshark)")
    _, fragmented = _frames(_traffic("softflowd-psamp"))
    theirs = _merge_ports(_tshark.psamp_sums(str(path), next(iter(PcapReader(path))).dst_port), fragmented)
    ours = _merge_ports(_pmacct.netobs_capture_sums(path), fragmented)
    assert _pmacct.compare(ours, theirs) == [] and len(ours) > 20


@pytest.mark.integration
def test_pmacct_comparison_catches_one_wrong_record(pmacct_sums):
    """The oracle comparison can fail: one record off by a packet, by a byte, or missing is reported."""
    records = list(iter_records(_capture("softflowd-ipfix")))
    theirs = pmacct_sums["softflowd-ipfix"]
    assert _pmacct.compare(_pmacct.netobs_sums(records), theirs) == []
    i = next(i for i, r in enumerate(records) if r["kind"] == "flow" and r["proto"] == 17)
    for change in ({"packets": records[i]["packets"] + 1}, {"bytes": records[i]["bytes"] - 1}, None):
        wrong = records[:i] + ([{**records[i], **change}] if change else []) + records[i + 1 :]
        diffs = _pmacct.compare(_pmacct.netobs_sums(wrong), theirs)
        r = records[i]
        assert len(diffs) == 1 and diffs[0].startswith(
            str(_tshark._key(r["src_addr"], r["dst_addr"], 17, r["src_port"], r["dst_port"]))
        )
