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

from collectors.decode import iter_records
from collectors.pcap import PcapReader
from tests.collectors import _exporters as ex
from tests.collectors import _tshark
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
