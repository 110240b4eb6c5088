"""Issue 20 on a real Open vSwitch: a pod with two NICs on two bridges, and an SNAT gateway.

Three bridges on one userspace OVS, each exporting bridge IPFIX to one collector socket:

- the lab's bridge, the *business* plane: pod1 ``eth0`` 10.244.1.11 and pod2 10.244.1.12;
- ``b2``, the *storage* plane: pod1's second NIC ``net1`` 10.250.0.11 and the gateway's inside leg;
- ``b3``, the underlay: the gateway's outside leg (with the EIP 10.99.0.100) and a legacy host
  10.99.0.50 that only the CMDB knows.

The gateway is a network namespace that forwards and translates (Linux iptables ``SNAT`` of the
whole storage subnet to the EIP), described to netobs as Kube-OVN describes it: an ``IptablesEIP``
and an ``IptablesSnatRule`` for ``10.250.0.0/24``. pod1 sends UDP on both NICs; the datagrams are
decoded and go through the real enrichment with the metadata converted from Kube-OVN/Multus wire
objects and a CMDB CSV. The flow seen after translation (EIP → host, on ``b3``) must name pod1 and
its storage plane, joined with the pre-NAT observation on ``b2``.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pytest

from collectors.decoder import Decoder
from pipeline.enrich import Enricher
from pipeline.metadata import k8s_convert
from pipeline.metadata.cmdb import apply_cmdb
from pipeline.metadata.model import Center, Node, Site
from pipeline.metadata.versions import Change, MetadataStore
from tests.integration.test_counting_live import Sink
from tests.pipeline import _kube_ovn as ko
from tests.services._require import unavailable
from tests.services.ovs import LabError, OvsLab, in_netns, lab_unavailable_reason

pytestmark = pytest.mark.integration

EIP, HOST, GW_IN, GW_OUT, NET1 = "10.99.0.100", "10.99.0.50", "10.250.0.1", "10.99.0.1", "10.250.0.11"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


class Plumbing:
    """The second and third bridge, the gateway and the host: created by the test, removed by it."""

    def __init__(self, lab: OvsLab):
        self.lab, p = lab, lab.prefix
        self.b2, self.b3 = f"{p}b2", f"{p}b3"
        self.gw, self.ext = f"{p}-gw", f"{p}-ext"
        self.links: list[str] = []
        self.netns: list[str] = []

    def veth(self, host: str, ns: str, inner: str, addrs: list[str], bridge: str) -> None:
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", inner, "netns", ns)
        self.links.append(host)
        sh("sysctl", "-qw", f"net.ipv6.conf.{host}.disable_ipv6=1")
        for a in addrs:
            sh("ip", "-n", ns, "addr", "add", a, "dev", inner)
        sh("ethtool", "-K", host, "tx", "off")
        sh("ip", "netns", "exec", ns, "ethtool", "-K", inner, "tx", "off")
        sh("ip", "-n", ns, "link", "set", inner, "up")
        sh("ip", "link", "set", host, "up")
        self.lab.vsctl("add-port", bridge, host)

    def start(self) -> None:
        lab, p = self.lab, self.lab.prefix
        for br in (self.b2, self.b3):
            lab.vsctl("add-br", br, "--", "set", "bridge", br, f"datapath_type={lab.datapath_type}")
        for ns in (self.gw, self.ext):
            sh("ip", "netns", "add", ns)
            self.netns.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        pod1 = lab.pod("pod1").netns
        self.veth(f"{p}n1", pod1, "net1", [f"{NET1}/24"], self.b2)
        sh("ip", "-n", pod1, "route", "add", "10.99.0.0/24", "via", GW_IN, "dev", "net1")
        self.veth(f"{p}g0", self.gw, "g0", [f"{GW_IN}/24"], self.b2)
        self.veth(f"{p}g1", self.gw, "g1", [f"{GW_OUT}/24", f"{EIP}/24"], self.b3)
        self.veth(f"{p}e0", self.ext, "e0", [f"{HOST}/24"], self.b3)
        sh("ip", "netns", "exec", self.gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "netns", "exec", self.gw, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.250.0.0/24",
           "-o", "g1", "-j", "SNAT", "--to-source", EIP)  # fmt: skip

    def stop(self) -> None:
        for br in (self.b2, self.b3):
            subprocess.run(["ovs-vsctl", f"--db=unix:{self.lab.workdir}/db.sock", "--if-exists", "del-br", br],
                           capture_output=True, timeout=20, env=self.lab.env)  # fmt: skip
        for dev in self.links:
            if Path(f"/sys/class/net/{dev}").exists():
                subprocess.run(["ip", "link", "del", dev], capture_output=True, timeout=20)
        for ns in self.netns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def udp(src_ns: str, src: str, sport: int, dst_ns: str, dst: str, dport: int, count: int = 20) -> list[str]:
    """Send ``count`` datagrams; the sources the receiver saw them from (the EIP after the SNAT)."""
    srv = in_netns(dst_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    cli = in_netns(src_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    try:
        srv.bind((dst, dport))
        srv.settimeout(2.0)
        cli.bind((src, sport))
        seen = []
        for _ in range(count):
            cli.sendto(b"payment-batch" * 10, (dst, dport))
            try:
                seen.append(srv.recvfrom(2048)[1][0])
            except TimeoutError:
                pass
            time.sleep(0.005)
        return seen
    finally:
        srv.close()
        cli.close()


def metadata(cmdb: Path) -> MetadataStore:
    meta = MetadataStore()
    convert = lambda res, obj: k8s_convert.CONVERTERS[res][1](obj)  # noqa: E731
    objs = [
        Site(name="sh"), Center(name="dc1", site="sh"), Node(name="node-1", ip="127.0.0.1", center="dc1"),
        convert("namespaces", ko.namespace("lab", tenant="payments")),
        convert("subnets", ko.subnet("ovn-default", "10.244.1.0/24", plane="business")),
        convert("subnets", ko.subnet("storage", "10.250.0.0/24", provider="storage-net.lab.ovn", plane="storage")),
        convert("subnets", ko.subnet("underlay-99", "10.99.0.0/24", provider="ovn", vlan="vlan99")),
        convert("vlans", ko.vlan("vlan99", 99, "underlay")),
        convert("provider-networks", ko.provider_network("underlay", "eth1")),
        convert("pods", ko.pod("lab", "pod1", "10.244.1.11", node="node-1", attachments=[("lab/storage-net", "net1", NET1)])),
        convert("pods", ko.pod("lab", "pod2", "10.244.1.12", node="node-1")),
        convert("iptables-eips", ko.iptables_eip("eip-gw", EIP)),
        convert("iptables-snat-rules", ko.iptables_snat("snat-storage", "eip-gw", "10.250.0.0/24")),
    ]  # fmt: skip
    meta.apply([Change.upsert(o) for o in objs], 0)
    loaded = apply_cmdb(meta, cmdb, at=0)
    assert not loaded.problems and [h.name for h in loaded.hosts] == ["clearing-db-01"]
    return meta


def test_multi_nic_pod_planes_and_snat_attribution_on_real_ovs(tmp_path):
    if reason := lab_unavailable_reason():
        unavailable(reason)
    for tool in ("iptables", "ethtool"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            unavailable(f"{tool} not installed (scripts/install-services.sh)")
    lab = OvsLab(tmp_path / "ovs", pods=2)
    try:
        lab.start()
    except (LabError, OSError, subprocess.SubprocessError) as exc:
        unavailable(f"OVS lab failed to start: {exc}\n{lab.log_tail()}")
    plumbing = Plumbing(lab)
    sink = Sink()
    try:
        plumbing.start()
        for i, br in enumerate((lab.bridge, plumbing.b2, plumbing.b3), start=1):
            lab.vsctl("--", "--id=@i", "create", "IPFIX", f'targets="127.0.0.1:{sink.port}"', f"obs_domain_id={i}",
                      "sampling=1", "cache_active_timeout=2", "cache_max_flows=1024", "--", "set", "bridge", br, "ipfix=@i")  # fmt: skip
        time.sleep(0.5)
        pod1, pod2 = lab.pod("pod1"), lab.pod("pod2")
        business = udp(pod1.netns, pod1.ip, 41000, pod2.netns, pod2.ip, 9000)
        storage = udp(pod1.netns, NET1, 41001, plumbing.ext, HOST, 9001)
        assert business and set(business) == {pod1.ip}
        assert storage and set(storage) == {EIP}, "the gateway did not translate"
        time.sleep(3)  # the IPFIX active timeout
        for br in (lab.bridge, plumbing.b2, plumbing.b3):
            lab.vsctl("clear", "bridge", br, "ipfix")  # exports the cache
        sink.idle()
    finally:
        datagrams = sink.close()
        plumbing.stop()
        lab.stop()
    cmdb = tmp_path / "cmdb.csv"
    cmdb.write_text("Name,Addresses,Application,Tenant,Zone,Center,Owner\n"
                    f"clearing-db-01,{HOST},clearing,payments,legacy,dc1,team-clearing\n")  # fmt: skip
    decoder = Decoder()
    tables = []
    for received, (addr, port), payload in datagrams:
        out = decoder.decode(payload, addr, received, session=f"{addr}:{port}")
        if len(out.flows):
            tables.append(out.flows.to_arrow())
    assert tables, "OVS exported nothing"
    rows = Enricher(metadata(cmdb)).enrich(pa.Table.from_batches(tables)).to_pylist()

    def ours(src, sport, dst, dport):
        return [r for r in rows if (r["src_port"], r["dst_port"]) == (sport, dport)
                and _ip(r["src_addr"]) == src and _ip(r["dst_addr"]) == dst]  # fmt: skip

    biz = ours(pod1.ip, 41000, pod2.ip, 9000)
    pre = ours(NET1, 41001, HOST, 9001)
    post = ours(EIP, 41001, HOST, 9001)
    assert biz and pre and post, (
        f"records missing: {len(biz)} business, {len(pre)} pre-NAT, {len(post)} post-NAT"
    )
    for r in biz:  # the first NIC: the business plane
        assert (r["src_pod"], r["src_plane"], r["dst_pod"], r["dst_plane"]) == (
            "pod1",
            "business",
            "pod2",
            "business",
        )
    for r in pre:  # the second NIC: the storage plane, towards a legacy host on the underlay
        assert (r["src_pod"], r["src_plane"], r["src_subnet"]) == ("pod1", "storage", "storage")
        assert (r["dst_host"], r["dst_workload"], r["dst_subnet"]) == (
            "clearing-db-01",
            "clearing",
            "underlay-99",
        )
    for r in post:  # after the SNAT gateway: the EIP, named as the pod behind it
        assert (r["src_pod"], r["src_namespace"], r["src_plane"]) == ("pod1", "lab", "storage")
        assert (r["src_nat"], r["nat_confidence"]) == ("snat_join", 90)
        assert r["dst_host"] == "clearing-db-01"
    assert {r["observation_domain"] for r in pre} == {2} and {r["observation_domain"] for r in post} == {3}


def _ip(raw: bytes) -> str:
    import ipaddress

    a = ipaddress.IPv6Address(raw)
    return str(a.ipv4_mapped or a)
