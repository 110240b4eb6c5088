"""A throwaway Open vSwitch node for tests: real ovsdb-server and ovs-vswitchd run by hand in a work dir, one
bridge on the userspace datapath, and N pods (network namespaces on veths) that really exchange traffic.

Datapath ``dummy`` by default: the same userspace datapath code as ``netdev`` (dpif-netdev; ``--enable-dummy``
registers it under another name) except that internal ports are not kernel taps. ``netdev`` creates a host-wide
tap ``ovs-netdev`` (a second lab fails with EBUSY) and persistent taps that outlive a killed daemon, so
``datapath_type="netdev"`` works but is serialized by a host-wide lock.

Traffic runs in this process: a short-lived thread enters the pod's namespace (setns) only to create a socket,
which then stays in that namespace. No subprocess per transfer; exact byte and TCP segment counts.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.services._require import unavailable

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
BINARIES = "ovsdb-tool ovsdb-server ovs-vswitchd ovs-vsctl ovs-appctl ovs-ofctl ip ethtool".split()
NETDEV_LOCK = "/run/lock/netobs-ovs-netdev.lock"
SFLOW_TICK = 1.2  # the sFlow agent ships its buffered samples once a second
_libc = ctypes.CDLL(None, use_errno=True)


class LabError(RuntimeError):
    """The lab could not be started or driven."""


@dataclass(frozen=True)
class Pod:
    name: str
    netns: str
    ip: str
    ip6: str | None
    mac: str
    host_if: str  # the bridge port (root namespace end of the veth); IPFIX interfaceName
    host_ifindex: int  # sFlow input/output ifIndex and IPFIX ingress/egressInterface
    ofport: int  # OpenFlow port number (pod i gets ofport i)
    ifname: str = "eth0"


@dataclass
class Traffic:
    """One exchange as the applications saw it. sent_*: the sender (TCP: sent_packets is every segment src->dst,
    SYN/ACK/FIN included). received_*: the receiver (TCP: segments carrying data; ICMP: echo replies back at the
    sender). ICMP: src_port is the echo identifier, bytes are echo payload (56 each)."""

    proto: str
    src_pod: str
    dst_pod: str
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    sent_packets: int
    sent_bytes: int
    received_packets: int
    received_bytes: int
    started: float
    ended: float
    tcp: dict[str, int] | None = None  # client TCP_INFO: segs_out (src->dst), segs_in (dst->src), retrans

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def in_netns(netns: str, fn: Callable[[], Any]) -> Any:
    """Run fn in a fresh thread that has joined netns (setns moves only the calling thread)."""

    def run() -> Any:
        with open(f"/run/netns/{netns}") as f:
            if _libc.setns(f.fileno(), 0x40000000) != 0:  # CLONE_NEWNET
                raise OSError(ctypes.get_errno(), f"setns {netns}")
        return fn()

    with ThreadPoolExecutor(1) as pool:  # its thread ends with the pool: nothing else runs in netns
        return pool.submit(run).result()


def _sock(netns: str, family: int, kind: int, proto: int = 0, timeout: float = 10.0) -> socket.socket:
    s = in_netns(netns, lambda: socket.socket(family, kind, proto))
    s.settimeout(timeout)
    return s


def _tcp_info(s: socket.socket) -> dict[str, int]:
    raw = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160)  # offsets of struct tcp_info, linux/tcp.h
    values = [*struct.unpack_from("I", raw, 100), *struct.unpack_from("II", raw, 136)]
    values += struct.unpack_from("II", raw, 152)
    names = ("total_retrans", "segs_out", "segs_in", "data_segs_in", "data_segs_out")
    return dict(zip(names, values, strict=True))


def _die_with_parent() -> None:
    _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: no orphaned daemons if the test run is killed


class OvsLab:
    """ovsdb-server + ovs-vswitchd + bridge + pods. Inert until start(); stop() is idempotent. The daemons get
    SIGTERM when the thread that called start() exits, so start from a thread that outlives the lab."""

    def __init__(
        self,
        workdir: str | Path,
        prefix: str = "",
        pods: int = 3,
        ipv6: bool = False,
        datapath_type: str = "dummy",
    ) -> None:
        self.prefix, self.datapath_type = prefix or "nl" + secrets.token_hex(2), datapath_type
        if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", self.prefix) or not 1 <= pods <= 99:
            raise ValueError("prefix: 1-10 lowercase alphanumerics (names <= 15 chars); pods: 1-99")
        if datapath_type not in ("dummy", "netdev"):
            raise ValueError("datapath_type must be 'dummy' or 'netdev'")
        self.workdir, self.n_pods, self.ipv6, self.bridge = Path(workdir), pods, ipv6, f"{self.prefix}br"
        self.pods: list[Pod] = []
        self.sflow: dict[str, Any] | None = None
        self.ipfix: dict[str, Any] | None = None
        self.perflow: dict[str, Any] | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._netns: list[str] = []
        self._host_ifs: list[str] = []
        self._lock: Any = None
        w = str(self.workdir)
        self.env = dict(os.environ, OVS_RUNDIR=w, OVS_LOGDIR=w, OVS_DBDIR=w, OVS_SYSCONFDIR=w)
        self.env["OVS_PKGDATADIR"] = str(SCHEMA.parent)

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> OvsLab:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        w, br = self.workdir, self.bridge
        w.mkdir(parents=True, exist_ok=True)
        if Path(f"/run/netns/{self.prefix}-pod1").exists() or Path(f"/sys/class/net/{br}").exists():
            raise LabError(f"prefix {self.prefix!r} is already in use on this host")
        if self.datapath_type == "netdev":
            self._take_netdev_lock()
        (w / "conf.db").unlink(missing_ok=True)
        self._run("ovsdb-tool", "create", str(w / "conf.db"), str(SCHEMA))
        self._spawn(
            "ovsdb-server", f"{w}/conf.db", f"--remote=punix:{w}/db.sock", f"--unixctl={w}/ovsdb-server.ctl"
        )
        self._wait_for(lambda: (w / "db.sock").exists(), "ovsdb-server socket")
        self.vsctl("--no-wait", "init")
        dummy = ["--enable-dummy"] if self.datapath_type == "dummy" else []
        self._spawn(
            "ovs-vswitchd", f"unix:{w}/db.sock", f"--unixctl={w}/ovs-vswitchd.ctl", "--disable-system", *dummy
        )
        self._wait_for(lambda: (w / "ovs-vswitchd.ctl").exists(), "ovs-vswitchd control socket")
        # Without --no-wait, ovs-vsctl waits until vswitchd has applied the change: that is the readiness check.
        self._vs(f"add-br {br} -- set bridge {br} datapath_type={self.datapath_type}")
        for i in range(1, self.n_pods + 1):
            self._make_pod(i)
        # ofport i for pod i keeps captures stable from run to run.
        self._vs(
            *(f"-- add-port {br} {h} -- set Interface {h} ofport_request={i}" for i, h in self._numbered())
        )
        for i, host in self._numbered():
            ifindex = int(Path(f"/sys/class/net/{host}/ifindex").read_text())
            ip, ip6 = f"10.244.1.{10 + i}", f"fd00:10:244:1::{10 + i}" if self.ipv6 else None
            ofport = int(self.vsctl("get", "Interface", host, "ofport"))
            pod = Pod(f"pod{i}", f"{self.prefix}-pod{i}", ip, ip6, _mac(ip), host, ifindex, ofport)
            self.pods.append(pod)

    def _make_pod(self, i: int) -> None:
        ns, host, ip = f"{self.prefix}-pod{i}", f"{self.prefix}h{i}", f"10.244.1.{10 + i}"
        self._run("ip", "netns", "add", ns)
        self._netns.append(ns)
        self._run(*f"ip link add {host} type veth peer name eth0 address {_mac(ip)} netns {ns}".split())
        self._host_ifs.append(host)
        # The bridge port must not speak IPv6 itself (router solicitations, MLD): it would pollute every capture.
        _sysctls({f"ipv6/conf/{host}/disable_ipv6": "1"})
        pod_conf = {"accept_ra": "0", "dad_transmits": "0"} if self.ipv6 else {"disable_ipv6": "1"}
        in_netns(ns, lambda: _sysctls({f"ipv6/conf/eth0/{k}": v for k, v in pod_conf.items()}))
        if self.ipv6:
            self._run(*f"ip -n {ns} addr add fd00:10:244:1::{10 + i}/64 dev eth0 nodad".split())
        self._run(*f"ip -n {ns} addr add {ip}/24 dev eth0".split())
        # With TX checksum offload on, OVS forwards packets whose checksum was never filled in
        # (veth pairs on the userspace datapath): TCP between pods then times out.
        self._run(*f"ethtool -K {host} tx off".split())
        self._run(*f"ip netns exec {ns} ethtool -K eth0 tx off".split())
        for cmd in (f"-n {ns} link set lo up", f"-n {ns} link set eth0 up", f"link set {host} up"):
            self._run("ip", *cmd.split())

    def stop(self) -> None:
        """Kill the daemons by PID, delete veths and namespaces. Safe to call twice or after a failed start."""
        vswitchd = self._procs.get("ovs-vswitchd")
        if vswitchd and vswitchd.poll() is None and self._lock:  # netdev: --cleanup deletes its taps
            self._run(
                "ovs-appctl", "-t", f"{self.workdir}/ovs-vswitchd.ctl", "exit", "--cleanup", check=False
            )
        for name in ("ovs-vswitchd", "ovsdb-server"):
            if (proc := self._procs.pop(name, None)) and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        for dev in self._host_ifs + ([self.bridge, "ovs-netdev"] if self._lock else []):
            # Deleting one veth end deletes its peer, synchronously (netns deletion is asynchronous).
            if Path(f"/sys/class/net/{dev}").exists():
                self._run("ip", "link", "del", dev, check=False)
        for ns in self._netns:
            self._run("ip", "netns", "del", ns, check=False)
        self._host_ifs, self._netns, self.pods = [], [], []
        self.sflow = self.ipfix = self.perflow = None
        if self._lock:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> OvsLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- exports ---------------------------------------------------------------------------------------------
    def enable_sflow(self, target_port: int, sampling: int = 1, header: int = 128, polling: int = 10) -> None:
        target = f"127.0.0.1:{target_port}"
        self.sflow = dict(target=target, agent="127.0.0.1", sampling=sampling, header=header, polling=polling)
        self._vs(f"-- --id=@s create sflow {_columns(self.sflow)} -- set bridge {self.bridge} sflow=@s")

    def enable_ipfix(
        self, target_port: int, sampling: int = 1, cache_active_timeout: int = 2, **extra: int
    ) -> None:
        """Bridge IPFIX (extra: obs_domain_id, other columns). Templates go out just before the first records,
        then only every 10 minutes: have the collector listening first. Without cache_max_flows OVS has no flow
        cache and exports every packet as its own record (flowEndReason 5, lack of resources)."""
        options = {"obs_domain_id": 1, "cache_active_timeout": cache_active_timeout, "cache_max_flows": 1024}
        options.update(extra)
        self.ipfix = dict(targets=f"127.0.0.1:{target_port}", sampling=sampling, **options)
        self._vs(f"-- --id=@i create IPFIX {_columns(self.ipfix)} -- set bridge {self.bridge} ipfix=@i")

    def enable_perflow_ipfix(
        self,
        target_port: int,
        probability: int = 65535,
        collector_set_id: int = 1,
        obs_domain_id: int = 1,
        obs_point_id: int = 1,
        match: str = "ip",
        cache_active_timeout: int = 2,
    ) -> None:
        """Per-flow IPFIX: a Flow_Sample_Collector_Set with its IPFIX row, and an OpenFlow rule matching ``match``
        whose ``sample`` action samples probability/65535 of the packets before NORMAL forwarding. The records'
        message header carries obs_domain_id, each record carries obs_point_id (IE 138). No template is sent
        before the first sampled packet. No sampling rate is exported: the counts are already multiplied by
        65535 // probability (an estimate of the matched packets)."""
        if not 1 <= probability <= 65535:
            raise ValueError("probability is in 1/65535 units: 1..65535")
        ipfix = {"targets": f"127.0.0.1:{target_port}", "cache_active_timeout": cache_active_timeout}
        ipfix["cache_max_flows"] = 1024
        self._vs(
            f"-- --id=@br get Bridge {self.bridge} -- --id=@i create IPFIX {_columns(ipfix)}",
            f"-- create Flow_Sample_Collector_Set id={collector_set_id} bridge=@br ipfix=@i",
        )
        ids = f"collector_set_id={collector_set_id},obs_domain_id={obs_domain_id},obs_point_id={obs_point_id}"
        self.ofctl(
            "add-flow",
            self.bridge,
            f"priority=10,{match},actions=sample(probability={probability},{ids}),NORMAL",
        )
        self.perflow = dict(
            ipfix,
            probability=probability,
            collector_set_id=collector_set_id,
            obs_domain_id=obs_domain_id,
            obs_point_id=obs_point_id,
            match=match,
        )

    def flush_exports(self) -> None:
        """Wait until everything sampled so far has been exported (sFlow tick, IPFIX active timeout)."""
        timeouts = [e["cache_active_timeout"] + SFLOW_TICK for e in (self.ipfix, self.perflow) if e]
        time.sleep(max(timeouts + [SFLOW_TICK if self.sflow else 0.0]))

    def disable_exports(self) -> None:
        """Let sFlow ship its buffer, then remove every exporter; removing IPFIX exports its cache (forced end)."""
        if self.sflow:
            time.sleep(SFLOW_TICK)
        self.vsctl("clear", "bridge", self.bridge, "sflow", "ipfix")
        if self.perflow:
            self.ofctl("--strict", "del-flows", self.bridge, f"priority=10,{self.perflow['match']}")
            self.vsctl("--", "--all", "destroy", "Flow_Sample_Collector_Set")
        self.sflow = self.ipfix = self.perflow = None

    # --- traffic ---------------------------------------------------------------------------------------------
    def pod(self, name: str) -> Pod:
        return next(p for p in self.pods if p.name == name)

    def _ends(self, src: str, dst: str, ipv6: bool) -> tuple[str, str, int, str, str]:
        s, d = self.pod(src), self.pod(dst)
        if ipv6 and not (s.ip6 and d.ip6):
            raise LabError("this lab was started without ipv6=True")
        sip, dip = (s.ip6, d.ip6) if ipv6 else (s.ip, d.ip)
        return s.netns, d.netns, socket.AF_INET6 if ipv6 else socket.AF_INET, str(sip), str(dip)

    def ping(self, src: str, dst: str, count: int = 3, interval: float = 0.2, ipv6: bool = False) -> Traffic:
        """ICMP echo from a raw socket; each reply is awaited up to 1 s."""
        sns, _, fam, sip, dip = self._ends(src, dst, ipv6)
        proto, request, reply = (socket.IPPROTO_ICMPV6, 128, 129) if ipv6 else (socket.IPPROTO_ICMP, 8, 0)
        ident, replies, started = secrets.randbelow(0xFFFF) + 1, 0, time.time()
        with _sock(sns, fam, socket.SOCK_RAW, proto, timeout=0.1) as sock:
            for seq in range(1, count + 1):
                msg = struct.pack("!BBHHH", request, 0, 0, ident, seq) + bytes(range(56))
                if not ipv6:  # the kernel fills in ICMPv6 checksums, not ICMPv4 ones
                    msg = msg[:2] + struct.pack("!H", _inet_checksum(msg)) + msg[4:]
                sock.sendto(msg, (dip, 0))
                replies += _await_reply(sock, (reply, ident, seq), strip_ip=not ipv6)
                time.sleep(interval)
        sent, got = (count, 56 * count), (replies, 56 * replies)
        return Traffic("icmp", src, dst, sip, dip, ident, 0, *sent, *got, started, time.time())

    def tcp_transfer(
        self,
        src: str,
        dst: str,
        port: int,
        nbytes: int,
        sport: int = 0,
        ipv6: bool = False,
        window: int = 65536,
        timeout: float = 10.0,
    ) -> Traffic:
        """Connect, send nbytes, half-close, wait for the server's close: one complete TCP conversation.
        tcp["total_retrans"] > 0: a segment was resent (dropped by the datapath, or a timer fired under load), so
        exported packet counts may differ from segs_out."""
        sns, dns, fam, sip, dip = self._ends(src, dst, ipv6)

        def serve(conn: socket.socket) -> tuple[int, int]:
            with conn:
                conn.settimeout(timeout)
                n = 0
                while chunk := conn.recv(65536):
                    n += len(chunk)
                return n, _tcp_info(conn)["data_segs_in"]

        with _sock(dns, fam, socket.SOCK_STREAM, timeout=timeout) as srv, ThreadPoolExecutor(1) as pool:
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # A bounded receive window keeps bursts within what OVS's AF_PACKET sockets absorb; with the default
            # (~3 MB) the userspace datapath drops segments of bulk transfers and TCP retransmits.
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, window)
            srv.bind((dip, port))
            srv.listen(1)
            server = pool.submit(lambda: serve(srv.accept()[0]))
            with _sock(sns, fam, socket.SOCK_STREAM, timeout=timeout) as cli:
                cli.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                cli.bind((sip, sport))
                started = time.time()
                cli.connect((dip, port))
                cli.sendall((b"netobs-ovs-lab " * (nbytes // 15 + 1))[:nbytes])
                cli.shutdown(socket.SHUT_WR)
                while cli.recv(4096):  # until the server's FIN: the conversation is complete
                    pass
                info, sport = _tcp_info(cli), cli.getsockname()[1]
            got, data_segs = server.result(timeout)
        segs = info["segs_out"]
        return Traffic(
            "tcp", src, dst, sip, dip, sport, port, segs, nbytes, data_segs, got, started, time.time(), info
        )

    def udp_send(
        self,
        src: str,
        dst: str,
        port: int,
        count: int,
        size: int,
        sport: int = 0,
        interval: float = 0.002,
        ipv6: bool = False,
    ) -> Traffic:
        """Send count datagrams of size payload bytes; the receiver counts what arrives (waits up to 2 s)."""
        sns, dns, fam, sip, dip = self._ends(src, dst, ipv6)

        def receive(srv: socket.socket) -> tuple[int, int]:
            got = nbytes = 0
            try:
                while got < count:
                    nbytes, got = nbytes + len(srv.recv(65536)), got + 1
            except TimeoutError:
                pass
            return got, nbytes

        with _sock(dns, fam, socket.SOCK_DGRAM, timeout=2.0) as srv, ThreadPoolExecutor(1) as pool:
            srv.bind((dip, port))
            receiver = pool.submit(receive, srv)
            with _sock(sns, fam, socket.SOCK_DGRAM) as cli:
                cli.bind((sip, sport))
                payload, started = (b"netobs-udp " * (size // 11 + 1))[:size], time.time()
                for _ in range(count):
                    cli.sendto(payload, (dip, port))
                    time.sleep(interval)
                sport = cli.getsockname()[1]
            got, nbytes = receiver.result(count * interval + 10)
        return Traffic(
            "udp", src, dst, sip, dip, sport, port, count, count * size, got, nbytes, started, time.time()
        )

    # --- plumbing --------------------------------------------------------------------------------------------
    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self._procs.items() if p.poll() is None}

    def ovs_version(self) -> str:
        return self._run("ovs-vswitchd", "--version").split()[-1]

    def ofctl(self, *args: str) -> str:
        """ovs-ofctl on this lab's bridge socket (found in OVS_RUNDIR)."""
        return self._run("ovs-ofctl", *args).strip()

    def vsctl(self, *args: str) -> str:
        return self._run("ovs-vsctl", f"--db=unix:{self.workdir}/db.sock", "--timeout=20", *args).strip()

    def _vs(self, *lines: str) -> str:
        return self.vsctl(*(word for line in lines for word in line.split()))

    def log_tail(self, lines: int = 15) -> str:
        names = [
            f"{daemon}.{ext}" for daemon in ("ovs-vswitchd", "ovsdb-server") for ext in ("log", "stderr")
        ]
        files = [self.workdir / name for name in names]
        tails = [(f.name, f.read_text(errors="replace").splitlines()[-lines:]) for f in files if f.exists()]
        return "\n".join(f"--- {name}\n" + "\n".join(text) for name, text in tails if text)

    def _numbered(self) -> Iterator[tuple[int, str]]:
        return enumerate(self._host_ifs, 1)

    def _run(self, *cmd: str, check: bool = True) -> str:
        res = subprocess.run(
            cmd, env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
        )
        if check and res.returncode:
            raise LabError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def _spawn(self, name: str, *args: str) -> None:
        w = self.workdir
        cmd = [name, *args, f"--log-file={w}/{name}.log", f"--pidfile={w}/{name}.pid", "-vconsole:off"]
        with open(w / f"{name}.stderr", "wb") as err:
            self._procs[name] = subprocess.Popen(
                cmd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                preexec_fn=_die_with_parent,
            )

    def _wait_for(self, ready: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if dead := [n for n, p in self._procs.items() if p.poll() is not None]:
                raise LabError(f"{what} not ready: {', '.join(dead)} exited")
            if time.monotonic() > deadline:
                raise LabError(f"{what} not ready after {timeout} s")
            time.sleep(0.05)

    def _take_netdev_lock(self, timeout: float = 120.0) -> None:
        self._lock = open(NETDEV_LOCK if os.path.isdir("/run/lock") else "/tmp/netobs-ovs-netdev.lock", "w")
        deadline = time.monotonic() + timeout
        while True:
            try:
                return fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError("another netdev-datapath lab holds the host lock") from None
                time.sleep(0.2)


def _sysctls(values: dict[str, str]) -> None:
    """Write /proc/sys/net/<key> in the calling thread's network namespace (keys the kernel lacks are skipped)."""
    for key, value in values.items():
        if os.path.exists(path := f"/proc/sys/net/{key}"):
            Path(path).write_text(value)


def _mac(ip: str) -> str:
    return "0a:58:" + ":".join(f"{int(b):02x}" for b in ip.split("."))  # deterministic, CNI-style


def _columns(values: dict[str, Any]) -> str:
    """ovs-vsctl column=value words; strings are quoted (targets contain a colon)."""
    return " ".join(f'{k}="{v}"' if isinstance(v, str) else f"{k}={v}" for k, v in values.items())


def _await_reply(sock: socket.socket, want: tuple[int, int, int], strip_ip: bool) -> int:
    """1 if the echo reply (type, identifier, sequence) arrives within a second, else 0."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            data = sock.recv(2048)
        except TimeoutError:
            continue
        data = data[(data[0] & 0x0F) * 4 :] if strip_ip else data  # raw IPv4 sockets get the IP header
        kind, _, _, ident, seq = struct.unpack_from("!BBHHH", data)
        if (kind, ident, seq) == want:
            return 1
    return 0


def _inet_checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))  # ICMP echo here is always of even length
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def lab_unavailable_reason() -> str | None:
    """Why no lab can run here, or None."""
    if os.geteuid() != 0:
        return "the OVS lab needs root (network namespaces, veths)"
    if missing := [b for b in BINARIES if not shutil.which(b)] + ([] if SCHEMA.exists() else [str(SCHEMA)]):
        return f"missing for the OVS lab: {', '.join(missing)} (apt-get install openvswitch-switch)"
    return None


@pytest.fixture
def ovs_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvsLab]:
    """A started OvsLab (3 pods, IPv4 + IPv6), fresh for every test (start ~0.3 s, stop ~0.2 s), so exporters
    and learned MACs never leak between tests. Skips on a laptop, fails under NETOBS_REQUIRE_SERVICES=1."""
    if reason := lab_unavailable_reason():
        unavailable(reason)
    lab = OvsLab(tmp_path_factory.mktemp("ovs"), ipv6=True, datapath_type="netdev")
    try:
        lab.start()
    except (LabError, OSError, subprocess.SubprocessError) as exc:
        unavailable(f"OVS lab failed to start: {exc}\n{lab.log_tail()}")
    try:
        yield lab
    finally:
        lab.stop()


__all__ = ["LabError", "OvsLab", "Pod", "Traffic", "in_netns", "lab_unavailable_reason", "ovs_lab"]
