"""Real flow exporters on a crafted capture: softflowd and pmacct's pmacctd, exports recorded by tcpdump.

Each run gets its own UDP port on 127.0.0.1, a socket bound on it (otherwise lo answers ICMP port
unreachable and the exporter's next send fails) and a tcpdump writing what arrived, stopped by its PID
with SIGINT. Used by tests/collectors/test_real_exporters.py and scripts/capture_flow_exporters.py.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

SOFTFLOWD_VERSIONS = {"netflow5": "5", "netflow9": "9", "ipfix": "10", "psamp": "psamp"}
PMACCT_PROBES = {"sflow": "sfprobe", "netflow9": "nfprobe", "ipfix": "nfprobe"}
T0 = 1_700_000_000.0


def missing(tool: str) -> str | None:
    """Why a tool cannot run here (None when it can)."""
    need = {"softflowd": ("softflowd", "tcpdump"), "pmacct": ("pmacctd", "tcpdump")}[tool]
    absent = [n for n in need if shutil.which(n) is None]
    if absent:
        return f"{', '.join(absent)} not installed (scripts/install-services.sh)"
    return None if os.geteuid() == 0 else "tcpdump on lo needs root"


def craft_traffic(path: Path, seed: int = 7, tcp_flows: int = 60) -> None:
    """A deterministic mix: short TCP flows with flag mixes, VLAN, IPv6, ICMP, IPv4 fragments."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.utils import wrpcap

    rnd = random.Random(seed)
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    pkts = []
    for i in range(tcp_flows):  # many short TCP flows; handshakes, data, FIN or RST
        src, dst, sport = f"10.0.{i % 4}.{10 + i}", "10.1.0.80", 30000 + i
        flags = ["S", "A", "PA", "FA"] if i % 3 else ["S", "R"]
        for f in flags:
            pkts.append(
                eth
                / IP(src=src, dst=dst, tos=i % 8 * 4)
                / TCP(sport=sport, dport=443, flags=f)
                / (b"d" * rnd.randint(0, 300) if "P" in f else b"")
            )
    for i in range(10):  # 802.1Q tagged
        pkts.append(
            eth
            / Dot1Q(vlan=100 + i % 2)
            / IP(src="10.2.0.1", dst="10.2.0.2")
            / UDP(sport=5000 + i, dport=53)
            / (b"q" * (20 + i))
        )
    for i in range(8):  # IPv6 TCP, UDP, ICMPv6
        pkts.append(
            eth
            / IPv6(src="fd00::1", dst=f"fd00::{2 + i % 2}")
            / TCP(sport=40000, dport=8080, flags="PA")
            / (b"6" * 100)
        )
        pkts.append(
            eth / IPv6(src="fd00::5", dst="fd00::6") / UDP(sport=7000, dport=7001) / (b"u" * (50 + i))
        )
    pkts += [eth / IPv6(src="fd00::7", dst="fd00::8") / ICMPv6EchoRequest(id=1, seq=i) for i in range(3)]
    pkts += [
        eth / IP(src="10.3.0.1", dst="10.3.0.2") / ICMP(type=8, id=9, seq=i) / (b"p" * 56) for i in range(4)
    ]
    big = IP(src="10.4.0.1", dst="10.4.0.2", id=77) / UDP(sport=6000, dport=6001) / (b"F" * 3000)
    pkts += [eth / f for f in fragment(big, fragsize=1200)]
    for i, p in enumerate(pkts):
        p.time = T0 + i * 0.005
    wrpcap(str(path), pkts)


def truth(path: Path) -> dict:
    """(src, dst, proto) → [packets, IP bytes] of the crafted capture, read back with scapy."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import rdpcap

    sums: dict = defaultdict(lambda: [0, 0])
    for p in rdpcap(str(path)):
        ip = p.getlayer(IP) or p.getlayer(IPv6)
        proto = ip.proto if ip.version == 4 else (58 if p.haslayer("ICMPv6EchoRequest") else ip.nh)
        size = ip.len if ip.version == 4 else 40 + ip.plen
        s = sums[(ip.src, ip.dst, proto)]
        s[0] += 1
        s[1] += size
    return dict(sums)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Capture:
    """A sink socket plus tcpdump on lo for one UDP port; :meth:`stop` → datagrams the socket got."""

    def __init__(self, port: int, path: Path):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.1)
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()
        cmd = [
            "tcpdump",
            "-i",
            "lo",
            "-n",
            "-s",
            "8192",
            "-B",
            "8192",
            "-U",
            "--immediate-mode",
            "-Z",
            "root",
        ]
        cmd += ["-w", str(path), f"udp and dst host 127.0.0.1 and dst port {port}"]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        line = ""
        for _ in range(5):  # "listening on lo" once the filter is in place
            line = self.proc.stderr.readline()
            if not line or "listening on" in line:
                break
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"tcpdump did not start: {line.strip()}")

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                self.sock.recv(65535)
                self.received += 1
            except TimeoutError:
                pass

    def stop(self) -> int:
        time.sleep(0.3)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        return self.received


def run_softflowd(traffic: Path, kind: str, out: Path, port: int | None = None) -> int:
    """softflowd in file mode exporting ``kind`` (netflow5/netflow9/ipfix/psamp) to a capture; datagrams."""
    port = port or free_port()
    cap = Capture(port, out)
    try:
        cmd = [
            "softflowd",
            "-d",
            "-r",
            str(traffic),
            "-n",
            f"127.0.0.1:{port}",
            "-v",
            SOFTFLOWD_VERSIONS[kind],
        ]
        cmd += ["-A", "milli", "-c", "none", "-6", "-p", str(out.with_suffix(".pid"))]
        subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=True)
    finally:
        got = cap.stop()
        out.with_suffix(".pid").unlink(missing_ok=True)
    return got


def run_pmacctd(traffic: Path, kind: str, out: Path, work: Path, port: int | None = None) -> int:
    """pmacctd reading the capture (pcap_savefile) with its sfprobe / nfprobe plugin; SIGINT flushes."""
    port = port or free_port()
    probe = PMACCT_PROBES[kind]
    conf = [
        "daemonize: false",
        f"pcap_savefile: {traffic}",
        "pcap_savefile_wait: true",
        f"plugins: {probe}[p]",
        f"{probe}_receiver[p]: 127.0.0.1:{port}",
    ]
    conf += (
        ["sfprobe_agentip[p]: 127.0.0.1"]
        if kind == "sflow"
        else [f"nfprobe_version[p]: {9 if kind == 'netflow9' else 10}"]
    )
    path = work / f"pmacctd-{kind}.conf"
    path.write_text("\n".join(conf) + "\n")
    cap = Capture(port, out)
    proc = subprocess.Popen(
        ["pmacctd", "-f", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3)  # reads the whole file, then waits (pcap_savefile_wait)
        proc.send_signal(signal.SIGINT)  # flushes the probe's cache
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        got = cap.stop()
    return got


class LostTraffic(RuntimeError):
    """Every attempt lost or resent a packet between the pods: the sent counts would not be the truth."""


def ovs_run(work: Path, exporters: dict, traffic, attempts: int = 3) -> dict:
    """Real OVS exports of known traffic: start a lab, capture each exporter's datagrams (tcpdump on lo), run
    ``traffic(lab) -> [Traffic]``, flush, stop. ``exporters``: name → fn(lab, port) enabling it.

    Returns {"traffic", "ports", "datagrams", "pcaps"}. Retries when the pods lost or resent a packet; raises
    LostTraffic when every attempt did, the lab's error otherwise. The lab runs in a thread of its own (its
    daemons die with the thread that started them).
    """
    from tests.services.ovs import OvsLab

    outcome: dict = {}

    def attempt(n: int) -> None:
        lab = OvsLab(work / f"ovs{n}", pods=3, ipv6=True)
        caps: dict[str, Capture] = {}
        try:
            lab.start()
            ports = {name: free_port() for name in exporters}
            pcaps = {name: work / f"{name}{n}.pcap" for name in exporters}
            caps = {name: Capture(ports[name], pcaps[name]) for name in exporters}
            for name, enable in exporters.items():
                enable(lab, ports[name])
            sent = traffic(lab)
            lab.flush_exports()
            lab.disable_exports()
            time.sleep(0.5)
            got = {name: cap.stop() for name, cap in caps.items()}
            outcome.update(traffic=sent, ports=ports, datagrams=got, pcaps=pcaps)
            outcome["lost"] = [t for t in sent if _lost(t)]
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc
        finally:
            for cap in caps.values():
                if cap.proc.poll() is None:
                    cap.stop()
            lab.stop()

    for n in range(attempts):
        outcome.clear()
        worker = threading.Thread(target=attempt, args=(n,))
        worker.start()
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        if not outcome["lost"]:
            return outcome
    raise LostTraffic(f"every attempt lost or resent packets: {outcome['lost']}")


def _lost(t) -> bool:
    if t.proto == "tcp":
        return t.received_bytes != t.sent_bytes or bool(t.tcp and t.tcp["total_retrans"])
    return t.received_packets != t.sent_packets


# --- OVS scenarios shared by tests/collectors/test_ovs_perflow.py and scripts/capture_ovs_exports.py ----------
OBS_DOMAIN, OBS_POINT = 42, 4242
SAMPLED_PACKETS = 4000


def perflow_traffic(lab) -> list:
    """IPv4 UDP, ICMP and TCP (matched by the per-flow rule) and IPv6 UDP (not matched)."""
    return [
        lab.udp_send("pod1", "pod2", 5000, count=30, size=100, sport=40001, interval=0.001),
        lab.ping("pod2", "pod3", count=3, interval=0.05),
        lab.tcp_transfer("pod1", "pod3", 8080, 20_000, sport=40002),
        lab.udp_send("pod3", "pod1", 5353, count=5, size=60, sport=40003, ipv6=True),
    ]


def sampled_traffic(lab) -> list:
    """One UDP stream of SAMPLED_PACKETS datagrams (64 payload bytes), paced so that OVS drops none."""
    return [lab.udp_send("pod1", "pod2", 5000, count=SAMPLED_PACKETS, size=64, sport=40010, interval=0.0002)]


#: name → exporters (name → kind and options) and traffic. Per-flow probability is in 1/65535 units.
OVS_SCENARIOS = {
    "perflow": {
        "exporters": {
            "perflow": dict(
                kind="perflow",
                probability=65535,
                collector_set_id=7,
                obs_domain_id=OBS_DOMAIN,
                obs_point_id=OBS_POINT,
            ),
        },
        "traffic": perflow_traffic,
    },
    "sampled": {
        "exporters": {
            "sflow": dict(kind="sflow", sampling=10, polling=30),
            "ipfix": dict(kind="ipfix", sampling=10),
            "perflow": dict(kind="perflow", probability=13107),  # exactly 1 in 5
        },
        "traffic": sampled_traffic,
    },
}


def sampling_rate(options: dict) -> int:
    """The 1-in-N of an exporter of OVS_SCENARIOS."""
    return 65535 // options["probability"] if options["kind"] == "perflow" else options["sampling"]


def run_scenario(name: str, work: Path, attempts: int = 3) -> dict:
    """:func:`ovs_run` of one of OVS_SCENARIOS."""
    scenario = OVS_SCENARIOS[name]

    def enabler(options: dict):
        kind, rest = options["kind"], {k: v for k, v in options.items() if k != "kind"}
        method = {"sflow": "enable_sflow", "ipfix": "enable_ipfix", "perflow": "enable_perflow_ipfix"}[kind]
        return lambda lab, port: getattr(lab, method)(port, **rest)

    exporters = {n: enabler(o) for n, o in scenario["exporters"].items()}
    return ovs_run(work, exporters, scenario["traffic"], attempts)
