#!/usr/bin/env python3
"""Capture real Open vSwitch sFlow and IPFIX exports of a known traffic mix, for demos and golden tests.

Starts the OVS lab (tests/services/ovs.py), records the export datagrams on lo with tcpdump (independent of
our code), generates pings, TCP transfers and UDP bursts between pods, and writes:

    tests/testdata/ovs-sflow.pcap    sFlow v5, sampling=1 (every packet is a flow sample), header=128, polling=10
    tests/testdata/ovs-ipfix.pcap    bridge IPFIX, sampling=1, cache_active_timeout=2, templates included
    tests/testdata/ovs-traffic.json  pods (ip, mac, ifindex, ofport) and each exchange's 5-tuple and counts

and the scenarios of tests/collectors/_exporters.py (OVS_SCENARIOS), each with a JSON of its exporters'
options, collector ports and traffic:

    ovs-perflow-perflow.pcap   per-flow IPFIX (OpenFlow sample action, probability 65535, obs ids 42/4242)
    ovs-sampled-{sflow,ipfix,perflow}.pcap   one UDP stream, sFlow 1:10, bridge IPFIX 1:10, per-flow 1:5
    ovs-perflow.json  ovs-sampled.json

Needs root and openvswitch-switch + tcpdump.
Usage: sudo .venv/bin/python scripts/capture_ovs_exports.py [--out DIR] [--only basic|perflow|sampled]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collectors.pcap import PcapReader  # noqa: E402
from tests.collectors import _exporters as ex  # noqa: E402
from tests.services.ovs import OvsLab, Traffic, lab_unavailable_reason  # noqa: E402

MAX_PCAP_BYTES = 300_000
SFLOW = {"sampling": 1, "header": 128, "polling": 10}
IPFIX = {"sampling": 1, "cache_active_timeout": 2, "obs_domain_id": 1, "cache_max_flows": 1024}
ATTEMPTS = 3
MIN_SFLOW_SECONDS = 12  # long enough for every port's first sFlow counter sample (polling=10)


class Sink:
    """A socket bound on the collector port. Without one, lo answers ICMP port unreachable and OVS's connected
    UDP socket then fails the *next* send with ECONNREFUSED: every other export datagram would be lost."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.count, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                self.sock.recv(65535)
                self.count += 1
            except TimeoutError:
                pass

    def close(self) -> int:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        return self.count


class Tcpdump:
    """tcpdump on lo for one UDP port, stopped by its PID with SIGINT (which flushes the file)."""

    def __init__(self, port: int, path: Path) -> None:
        self.path = path
        # -Z root: Debian's tcpdump otherwise drops to user "tcpdump" before opening the output file.
        # --immediate-mode: packets still in an unretired TPACKET_V3 block are lost at SIGINT otherwise. It uses a
        # ring of snaplen-sized slots, so keep -s small (exports are < 1500 bytes) and -B large, or bursts drop.
        cmd = "tcpdump -i lo -n -s 8192 -B 8192 -U --immediate-mode -Z root -w".split()
        cmd += [str(path), f"udp and dst host 127.0.0.1 and dst port {port}"]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stderr
        lines = [self.proc.stderr.readline()]  # "listening on lo, ..." once the filter is in place
        while lines[-1] and "listening on" not in lines[-1] and len(lines) < 5:
            lines.append(self.proc.stderr.readline())
        if "listening on" not in lines[-1]:
            self.proc.kill()
            raise RuntimeError(f"tcpdump did not start: {''.join(lines).strip()}")

    def stop(self) -> tuple[int, int]:
        """(captured, dropped by kernel)."""
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=10)
        captured = re.search(r"(\d+) packets? captured", err)
        dropped = re.search(r"(\d+) packets? dropped by kernel", err)
        return int(captured.group(1)) if captured else -1, int(dropped.group(1)) if dropped else -1


def traffic_mix(lab: OvsLab) -> list[Traffic]:
    """Known exchanges with fixed source ports, small enough to keep each capture well under 300 KB."""
    return [
        lab.ping("pod1", "pod2", count=4, interval=0.2),
        lab.ping("pod2", "pod3", count=2, interval=0.2, ipv6=True),
        lab.tcp_transfer("pod1", "pod2", 8080, 20_000, sport=40001),
        lab.tcp_transfer("pod3", "pod1", 5432, 60_000, sport=40002),
        lab.tcp_transfer("pod1", "pod3", 8080, 150_000, sport=40003),
        lab.tcp_transfer("pod2", "pod3", 443, 1_500, sport=40004, ipv6=True),
        lab.udp_send("pod1", "pod3", 53, count=10, size=80, sport=40005),
        lab.udp_send("pod3", "pod2", 9999, count=20, size=1000, sport=40006),
        lab.udp_send("pod2", "pod1", 5353, count=5, size=120, sport=40007, ipv6=True),
    ]


class Flawed(RuntimeError):
    """This run's capture is not exact (lost or retransmitted packets, a datagram tcpdump missed): retry."""


def check_traffic(traffic: list[Traffic]) -> None:
    for t in traffic:
        lost = t.received_bytes != t.sent_bytes if t.proto == "tcp" else t.received_packets != t.sent_packets
        if lost or (t.tcp and t.tcp["total_retrans"]):
            raise Flawed(
                f"{t.proto} {t.src_ip}:{t.src_port} -> {t.dst_ip}:{t.dst_port}: lost or resent packets"
            )


def capture(out: Path, sflow_port: int, ipfix_port: int, prefix: str) -> dict:
    """One attempt: lab, tcpdumps, exporters, traffic; copies the pcaps to out only if everything checks."""
    work = Path(tempfile.mkdtemp(prefix="ovscap-"))
    sinks = {"sflow": Sink(sflow_port), "ipfix": Sink(ipfix_port)}
    lab = OvsLab(work / "ovs", prefix=prefix, pods=3, ipv6=True)
    dumps: dict[str, Tcpdump] = {}
    try:
        lab.start()
        dumps = {
            "sflow": Tcpdump(sflow_port, work / "sflow.pcap"),
            "ipfix": Tcpdump(ipfix_port, work / "ipfix.pcap"),
        }
        started = time.monotonic()
        lab.enable_sflow(sflow_port, **SFLOW)
        lab.enable_ipfix(ipfix_port, **IPFIX)
        traffic = traffic_mix(lab)
        check_traffic(traffic)
        time.sleep(max(0.0, MIN_SFLOW_SECONDS - (time.monotonic() - started)))
        lab.disable_exports()  # ships the last sFlow buffer, then IPFIX exports what is left in its cache
        time.sleep(1.0)
        stats = {}
        for name, dump in dumps.items():
            (captured, dropped), received = dump.stop(), sinks[name].close()
            if dropped != 0 or captured != received:
                raise Flawed(
                    f"{name}: tcpdump captured {captured} (dropped {dropped}), the sink got {received}"
                )
            if (size := dump.path.stat().st_size) > MAX_PCAP_BYTES:
                raise RuntimeError(f"{name}: capture is {size} bytes, over {MAX_PCAP_BYTES}")
            stats[name] = {"datagrams": captured, "pcap_bytes": size}
        for name, dump in dumps.items():
            shutil.copyfile(dump.path, out / f"ovs-{name}.pcap")
        return describe(lab, traffic, stats, sflow_port, ipfix_port, lab.ovs_version())
    finally:
        for dump in dumps.values():
            if dump.proc.poll() is None:
                dump.proc.kill()
                dump.proc.wait()
        for sink in sinks.values():
            sink.close()
        lab.stop()
        shutil.rmtree(work, ignore_errors=True)


def describe(
    lab: OvsLab, traffic: list[Traffic], stats: dict, sflow_port: int, ipfix_port: int, version: str
) -> dict:
    stats["sflow"]["agent"] = "127.0.0.1"  # set by OvsLab.enable_sflow
    return {
        "generator": "scripts/capture_ovs_exports.py",
        "captured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ovs_version": version,
        "datapath_type": lab.datapath_type,
        "bridge": lab.bridge,
        "sflow": {
            "pcap": "ovs-sflow.pcap",
            "collector": f"127.0.0.1:{sflow_port}",
            **SFLOW,
            **stats["sflow"],
        },
        "ipfix": {
            "pcap": "ovs-ipfix.pcap",
            "collector": f"127.0.0.1:{ipfix_port}",
            **IPFIX,
            **stats["ipfix"],
        },
        "pods": [asdict(p) for p in lab.pods],
        "traffic": [t.as_dict() for t in traffic],
        "notes": [
            "sent_bytes/received_bytes are application payload; tcp.segs_out/segs_in are every segment "
            "src->dst / dst->src (SYN, ACK, FIN included) from the client's TCP_INFO",
            "ICMP: src_port is the echo identifier; each echo carries 56 payload bytes",
            "also in the captures but not listed: ARP, IPv6 neighbour discovery and MLD from the pods",
            "sFlow frame lengths include the 4-byte FCS; flooded frames have sFlow output 0x80000000|ports",
            "sFlow input/output ifIndex and IPFIX ingress/egressInterface (IE 10/14) are host_ifindex; "
            "the bridge's internal port is 0 in IPFIX",
            "bridge IPFIX reports each flow twice, ingress and egress (flowDirection 0/1); a flooded frame "
            "gets one egress record per output port",
            "IPFIX IE 85/86 (octet/packetTotalCount) are the exporter's running totals, not per-flow totals",
            "IPFIX flowEndReason is 2 (active timeout) except for records flushed when IPFIX was removed (4)",
        ],
    }


def capture_scenario(out: Path, name: str) -> dict:
    """One of OVS_SCENARIOS: run it, check every datagram the sink got is in the capture, copy the pcaps."""
    work = Path(tempfile.mkdtemp(prefix=f"ovs{name}-"))
    try:
        run = ex.run_scenario(name, work, attempts=ATTEMPTS)
        exporters = {}
        for exporter, options in ex.OVS_SCENARIOS[name]["exporters"].items():
            path, target = run["pcaps"][exporter], out / f"ovs-{name}-{exporter}.pcap"
            captured = sum(1 for _ in PcapReader(path))
            if captured != run["datagrams"][exporter]:
                raise RuntimeError(
                    f"{exporter}: tcpdump has {captured}, the sink got {run['datagrams'][exporter]}"
                )
            if (size := path.stat().st_size) > MAX_PCAP_BYTES:
                raise RuntimeError(f"{exporter}: capture is {size} bytes, over {MAX_PCAP_BYTES}")
            shutil.copyfile(path, target)
            exporters[exporter] = {**options, "pcap": target.name, "port": run["ports"][exporter]}
            exporters[exporter] |= {"datagrams": captured, "pcap_bytes": size}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "generator": "scripts/capture_ovs_exports.py",
        "captured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "scenario": name,
        "exporters": exporters,
        "traffic": [t.as_dict() for t in run["traffic"]],
        "notes": [
            "per-flow probability is in 1/65535 units; sFlow and bridge IPFIX sampling is 1 in N",
            "OVS IPFIX packet and octet counts are already multiplied by 1/probability; no rate is exported",
            "per-flow IPFIX: obs_domain_id is the message's observation domain, obs_point_id IE 138 per record",
        ],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "testdata")
    ap.add_argument("--sflow-port", type=int, default=6343)
    ap.add_argument("--ipfix-port", type=int, default=4739)
    ap.add_argument("--prefix", default="ovscap", help="name prefix of interfaces (they appear in IPFIX)")
    ap.add_argument("--only", choices=["basic", *ex.OVS_SCENARIOS], help="one capture set (default: all)")
    args = ap.parse_args()
    if reason := (lab_unavailable_reason() or (None if shutil.which("tcpdump") else "tcpdump is missing")):
        print(f"cannot capture: {reason}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ex.OVS_SCENARIOS:
        if args.only in (None, name):
            try:
                info = capture_scenario(args.out, name)
            except ex.LostTraffic as exc:
                print(f"{name}: {exc}", file=sys.stderr)
                return 1
            (args.out / f"ovs-{name}.json").write_text(json.dumps(info, indent=2) + "\n")
            for e in info["exporters"].values():
                print(f"{args.out}/{e['pcap']}: {e['datagrams']} datagrams, {e['pcap_bytes']} bytes")
    if args.only not in (None, "basic"):
        return 0
    for attempt in range(1, ATTEMPTS + 1):
        try:
            info = capture(args.out, args.sflow_port, args.ipfix_port, args.prefix)
            break
        except Flawed as exc:
            print(f"attempt {attempt}: {exc}", file=sys.stderr)
    else:
        return 1
    (args.out / "ovs-traffic.json").write_text(json.dumps(info, indent=2) + "\n")
    for name in ("sflow", "ipfix"):
        print(
            f"{args.out}/ovs-{name}.pcap: {info[name]['datagrams']} datagrams, {info[name]['pcap_bytes']} bytes"
        )
    print(f"{args.out / 'ovs-traffic.json'}: {len(info['traffic'])} exchanges")
    return 0


if __name__ == "__main__":
    sys.exit(main())
