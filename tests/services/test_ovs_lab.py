"""The OVS lab itself: pods really talk through the bridge, and real sFlow / IPFIX leave ovs-vswitchd."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services._require import unavailable
from tests.services.ovs import OvsLab, lab_unavailable_reason

pytestmark = pytest.mark.integration


@pytest.fixture
def collector() -> Iterator[socket.socket]:
    """A UDP socket on 127.0.0.1 standing in for a flow collector."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.2)
        yield s


@pytest.fixture
def lab_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Build extra labs (other options, several at once); all are stopped at teardown."""
    if reason := lab_unavailable_reason():
        unavailable(reason)
    labs: list[OvsLab] = []

    def make(**kwargs: Any) -> OvsLab:
        lab = OvsLab(tmp_path_factory.mktemp("ovs"), **kwargs)
        labs.append(lab)
        try:
            return lab.start()
        except Exception as exc:  # noqa: BLE001
            unavailable(f"OVS lab failed to start: {exc}\n{lab.log_tail()}")
            raise

    yield make
    for lab in labs:
        lab.stop()


def drain(sock: socket.socket, seconds: float) -> list[bytes]:
    """Everything that arrives on sock within the given time."""
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            out.append(sock.recv(65535))
        except TimeoutError:
            continue
    return out


def sflow_samples(datagram: bytes) -> list[int]:
    """Sample formats in an sFlow v5 datagram with an IPv4 agent (1 = flow sample, 2 = counter sample)."""
    assert struct.unpack_from("!II", datagram) == (5, 1)  # version, agent address type
    count, off, formats = struct.unpack_from("!I", datagram, 24)[0], 28, []
    for _ in range(count):
        tag, length = struct.unpack_from("!II", datagram, off)
        formats.append(tag & 0xFFF)
        off += 8 + length
    assert off == len(datagram), "samples do not add up to the datagram"
    return formats


def test_pods_ping_and_exchange_tcp_and_udp(ovs_lab: OvsLab) -> None:
    assert [p.ip for p in ovs_lab.pods] == ["10.244.1.11", "10.244.1.12", "10.244.1.13"]
    assert [p.ofport for p in ovs_lab.pods] == [1, 2, 3]
    ping = ovs_lab.ping("pod1", "pod2", count=3, interval=0.05)
    assert ping.received_packets == 3
    assert ovs_lab.ping("pod3", "pod1", count=2, interval=0.05, ipv6=True).received_packets == 2

    tcp = ovs_lab.tcp_transfer("pod1", "pod3", 8080, 300_000)
    assert (tcp.sent_bytes, tcp.received_bytes) == (300_000, 300_000)
    assert tcp.tcp and tcp.sent_packets >= 300_000 // 1448 and tcp.received_packets >= 300_000 // 1448
    assert (tcp.src_ip, tcp.dst_ip, tcp.dst_port) == ("10.244.1.11", "10.244.1.13", 8080) and tcp.src_port > 0
    tcp6 = ovs_lab.tcp_transfer("pod2", "pod1", 9000, 20_000, sport=40123, ipv6=True)
    assert (tcp6.received_bytes, tcp6.src_port, tcp6.dst_ip) == (20_000, 40123, "fd00:10:244:1::11")

    udp = ovs_lab.udp_send("pod2", "pod3", 5353, count=20, size=200)
    assert (udp.received_packets, udp.received_bytes) == (20, 4000)


def test_sflow_v5_datagrams_arrive(ovs_lab: OvsLab, collector: socket.socket) -> None:
    ovs_lab.enable_sflow(collector.getsockname()[1], sampling=1, header=128, polling=1)
    tcp = ovs_lab.tcp_transfer("pod1", "pod2", 8080, 30_000)
    ovs_lab.ping("pod2", "pod3", count=2, interval=0.05)
    ovs_lab.flush_exports()
    datagrams = drain(collector, 1.5)
    assert datagrams and all(d[:4] == b"\x00\x00\x00\x05" for d in datagrams)
    assert all(d[8:12] == socket.inet_aton("127.0.0.1") for d in datagrams)  # agent address
    formats = [f for d in datagrams for f in sflow_samples(d)]
    # sampling=1: every packet of the conversation is a flow sample (plus ARP and the pings).
    assert formats.count(1) >= tcp.tcp["segs_out"] + tcp.tcp["segs_in"] + 4  # type: ignore[index]
    assert formats.count(2) >= 1  # polling=1: interface counters too


def test_ipfix_datagrams_arrive(ovs_lab: OvsLab, collector: socket.socket) -> None:
    ovs_lab.enable_ipfix(collector.getsockname()[1], sampling=1, cache_active_timeout=1)
    ovs_lab.tcp_transfer("pod1", "pod2", 8080, 10_000)
    ovs_lab.udp_send("pod3", "pod1", 53, count=3, size=64)
    ovs_lab.flush_exports()
    datagrams = drain(collector, 1.0)
    assert datagrams and all(d[:2] == b"\x00\x0a" for d in datagrams)
    set_ids = {struct.unpack_from("!H", d, 16)[0] for d in datagrams}  # OVS puts one set in each message
    assert 2 in set_ids, "template set"
    assert any(s >= 256 for s in set_ids), "data set"


def test_disabling_ipfix_exports_the_cache(ovs_lab: OvsLab, collector: socket.socket) -> None:
    ovs_lab.enable_ipfix(collector.getsockname()[1], cache_active_timeout=600)
    ovs_lab.udp_send("pod1", "pod2", 53, count=3, size=64)
    time.sleep(0.3)
    ovs_lab.disable_exports()
    set_ids = [struct.unpack_from("!H", d, 16)[0] for d in drain(collector, 0.5)]
    # Templates 284/285 are IPv4 UDP ingress/egress (OVS 3.1). One record each: the 3 packets were aggregated
    # in the flow cache (without cache_max_flows, OVS would send one record per packet).
    assert (set_ids.count(284), set_ids.count(285)) == (1, 1)


def test_labs_side_by_side_then_nothing_left(lab_factory: Any) -> None:
    a, b = lab_factory(pods=2), lab_factory(pods=2)
    assert a.bridge != b.bridge and a.pods[0].netns != b.pods[0].netns
    assert a.ping("pod1", "pod2", 2, 0.05).received_packets == 2
    assert b.ping("pod2", "pod1", 2, 0.05).received_packets == 2
    pids = list(a.pids.values()) + list(b.pids.values())
    assert len(pids) == 4
    for lab in (a, b):
        lab.stop()
        lab.stop()  # idempotent
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert a.prefix not in netns and b.prefix not in netns
    assert not [n for n in Path("/sys/class/net").iterdir() if n.name.startswith((a.prefix, b.prefix))]


def test_netdev_datapath_carries_traffic(lab_factory: Any) -> None:
    lab = lab_factory(pods=2, datapath_type="netdev")
    assert lab.vsctl("get", "bridge", lab.bridge, "datapath_type") == "netdev"
    assert lab.ping("pod1", "pod2", 2, 0.05).received_packets == 2
    assert lab.tcp_transfer("pod2", "pod1", 8443, 50_000).received_bytes == 50_000
