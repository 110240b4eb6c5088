#!/usr/bin/env python3
"""Capture real softflowd and pmacct exports of a crafted traffic capture, for golden and oracle tests.

Crafts tests/testdata/exporters-traffic.pcap with scapy (short TCP flows with flag mixes, 802.1Q,
IPv6 TCP/UDP/ICMPv6, ICMP, IPv4 fragments; fixed seed and timestamps), then runs each exporter on it
in file mode, recording the export datagrams on lo with tcpdump (tests/collectors/_exporters.py):

    softflowd-netflow5.pcap  softflowd-netflow9.pcap  softflowd-ipfix.pcap  softflowd-psamp.pcap
    pmacct-sflow.pcap        pmacct-netflow9.pcap     pmacct-ipfix.pcap

PSAMP sends one ~1.4 KB message per packet, so it runs on a smaller traffic file
(exporters-traffic-small.pcap). Needs root, softflowd, pmacct and tcpdump.
Usage: sudo .venv/bin/python scripts/capture_flow_exporters.py [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.collectors import _exporters as ex  # noqa: E402

MAX_BYTES = 200_000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "testdata")
    args = ap.parse_args()
    for tool in ("softflowd", "pmacct"):
        reason = ex.missing(tool)
        if reason:
            print(f"cannot capture: {reason}", file=sys.stderr)
            return 1
    out: Path = args.out
    traffic, small = out / "exporters-traffic.pcap", out / "exporters-traffic-small.pcap"
    ex.craft_traffic(traffic)
    ex.craft_traffic(small, tcp_flows=10)
    work = Path(tempfile.mkdtemp(prefix="flowcap-"))
    for kind in ex.SOFTFLOWD_VERSIONS:
        path = out / f"softflowd-{kind}.pcap"
        got = ex.run_softflowd(small if kind == "psamp" else traffic, kind, path)
        print(f"{path.name}: {got} datagrams, {path.stat().st_size} bytes")
    for kind in ex.PMACCT_PROBES:
        path = out / f"pmacct-{kind}.pcap"
        got = ex.run_pmacctd(traffic, kind, path, work)
        print(f"{path.name}: {got} datagrams, {path.stat().st_size} bytes")
    too_big = [p.name for p in out.glob("*.pcap") if p.stat().st_size > MAX_BYTES and "ovs" not in p.name]
    if too_big:
        print(f"too big for the repository: {too_big}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
