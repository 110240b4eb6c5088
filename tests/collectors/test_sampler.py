"""The sampling agent's parts: libpcap's BPF, the ring on loopback, tshark's L7 fields, privacy, OVS rows.

Frames come from real sockets (loopback), from scapy (Ethernet, IP, TCP, DNS) and by hand (a TLS 1.0
ClientHello, which scapy's TLS layer cannot build here and the system OpenSSL refuses to send); tshark, libpcap
and the kernel's AF_PACKET are the real ones.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import struct
import time

import numpy as np
import pytest
from pydantic import ValidationError

from collectors.config import PodInterfaceConfig, PrivacyRule, SamplerConfig
from collectors.sampler import l7
from collectors.sampler._capture import RECORD, BpfError, compile_bpf, native, pcap_file
from collectors.sampler._privacy import NamePrivacy
from collectors.sampler.ovs import parse_interfaces
from netobs import schema, wire
from tests.services._require import unavailable


def needs_root_and_tshark():
    if os.geteuid() != 0:
        unavailable("AF_PACKET rings need root (CAP_NET_RAW)")
    if not shutil.which("tshark"):
        unavailable("tshark is not installed (scripts/install-services.sh)")


# ---- pure parts (fast) ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "template"),
    [
        ("/orders/12345?card=4111", "/orders/{}"),
        ("/u/3f2a9c1e-7b44-4d2a-9e11-0c5d2e6f7a88/x", "/u/{}/x"),
        ("/static/app.js#frag", "/static/app.js"),
        ("/", "/"),
        ("*", "*"),
    ],
)
def test_path_template_keeps_no_values(uri, template):
    assert l7.path_template(uri) == template


def test_bpf_from_libpcap_cuts_at_the_snap_length():
    prog = compile_bpf("udp port 53 or tcp", 640)
    assert len(prog) % 8 == 0 and len(prog) > 8
    insns = np.frombuffer(prog, dtype=[("code", "<u2"), ("jt", "u1"), ("jf", "u1"), ("k", "<u4")])
    rets = insns[insns["code"] == 0x06]  # BPF_RET | BPF_K
    assert set(rets["k"].tolist()) == {0, 640}
    with pytest.raises(BpfError, match="bad capture filter"):
        compile_bpf("udp port nope", 640)
    with pytest.raises(ValidationError, match="sampler|filter|nope"):  # config --check refuses it too
        SamplerConfig(filter="udp port nope")


def test_name_privacy_per_tenant_namespace():
    cfg = SamplerConfig(
        privacy_rules=(
            PrivacyRule(namespaces=("payments",), mode="hash"),
            PrivacyRule(namespaces=("shop", "payments"), mode="truncate", labels=2),
        ),
        hash_key="k" * 16,
    )
    p = NamePrivacy(cfg)
    names = np.array(["a.b.bank.example", "a.b.bank.example", "x.example", ""], dtype=object)
    out = p.apply(names, np.array(["payments", "shop", "other", "payments"], dtype=object))
    assert out[0].startswith("h:") and len(out[0]) == 18 and "bank" not in out[0]
    assert out[1] == "bank.example" and out[2] == "x.example" and out[3] == ""
    assert p.apply(names[:1], np.array(["payments"], dtype=object))[0] == out[0]  # stable
    with pytest.raises(ValueError, match="hash_key"):
        NamePrivacy(SamplerConfig(privacy={"mode": "hash"}))


def test_ovs_rows_name_pods_like_kube_ovn():
    listing = {
        "headings": ["name", "external_ids", "type"],
        "data": [
            ["veth1", ["map", [["iface-id", "web-1.shop"], ["attached-mac", "aa:bb:cc:dd:ee:01"]]], ""],
            [
                "p2",
                ["map", [["iface-id", "api.core"], ["pod_name", "api"], ["pod_namespace", "core"]]],
                "internal",
            ],
            ["genev_sys_6081", ["map", []], "geneve"],
            ["other-br-port", ["map", [["iface-id", "x.y"]]], ""],
        ],
    }
    ports = parse_interfaces(json.dumps(listing), {"veth1", "p2", "genev_sys_6081"})
    assert sorted(ports) == ["p2", "veth1"]
    assert (ports["veth1"].pod, ports["veth1"].namespace, ports["veth1"].mac) == (
        "web-1",
        "shop",
        "aa:bb:cc:dd:ee:01",
    )
    assert (ports["p2"].pod, ports["p2"].namespace) == ("api", "core")


def test_ja4_ignores_grease_and_sorts():
    a = l7.ja4(
        "0x0303", "0x0a0a,0x0304,0x0303", "x", "0x1301,0x0a0a,0x1302", "0,16,0x2a2a,43,10", "h2,http/1.1", ""
    )
    b = l7.ja4("0x0303", "0x0304,0x0303", "x", "0x1302,0x1301", "43,10,0,16", "h2", "")
    assert a == b and a.startswith("t13d0204h2_")
    assert l7.ja4("0x0301", "", "", "0x002f", "", "", "").startswith("t10i0100")


def test_sample_kinds_travel_on_the_wire_with_their_version():
    from collectors.sampler.agent import _table

    n = 3
    cols = {"src_port": np.array([1, 2, 3], dtype=np.uint16), "agent": np.full(n, "node", dtype=object)}
    for kind in (schema.PACKET_SAMPLES, schema.L7):
        t = _table(cols, kind)
        msg = wire.encode(t.to_batches()[0])
        back = wire.decode(msg)
        assert schema.kind_of(back) == kind and back.column("src_port").to_pylist() == [1, 2, 3]
        assert back.schema.metadata[b"netobs.schema_version"] == b"1"
        newer = bytearray(msg)
        newer[6] = 2  # the version byte: a newer producer
        with pytest.raises(wire.WireError, match="newer"):
            wire.decode(bytes(newer))


# ---- the kernel's ring and tshark (root, tshark) ------------------------------------------------------
def _burst(n: int, port: int, payload: bytes = b"x" * 32) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(n):
            s.sendto(payload, ("127.0.0.1", port))


def _drain(ring) -> np.ndarray:
    time.sleep(0.15)  # the ring retires a block after 50 ms
    recs, _ = ring.drain()
    return np.frombuffer(recs, dtype=RECORD)


@pytest.mark.integration
def test_ring_samples_one_in_n_and_caps_per_pod():
    needs_root_and_tshark()
    port = random.randrange(20000, 60000)
    print(f"port {port}")
    bpf = compile_bpf(f"udp port {port}", 160)
    det = native().Ring("lo", bpf, sample_n=10)
    _burst(100, port)  # loopback shows each datagram twice (out, in): 200 frames
    recs = _drain(det)
    assert len(recs) == 20 and det.stats()["seen"] == 200 and det.stats()["sampled"] == 20
    assert (recs["payload_class"] == 4).all()  # printable payload
    det.close()
    seed = random.getrandbits(63) | 1
    print(f"seed {seed}")
    rnd = native().Ring("lo", bpf, sample_n=10, random=1, seed=seed)
    _burst(500, port)
    n = len(_drain(rnd))
    assert 50 < n < 160, n  # binomial(1000, 0.1): mean 100, sd 9.5
    rnd.close()
    capped = native().Ring("lo", bpf, sample_n=1, cap_rate=5.0)
    _burst(300, port)
    got = _drain(capped)
    st = capped.stats()
    assert st["sampled"] == len(got) and st["sampled"] + st["capped"] == st["seen"] == 600
    assert st["capped"] > 500  # the burst allows 5, refilled at 5/s while 600 frames pass
    capped.close()


def client_hello(version: int, ciphers: list[int], sni: bytes) -> bytes:
    """A TLS record holding a ClientHello (RFC 5246 7.4.1.2, RFC 6066 3), built by hand: what an
    old client sends and the system OpenSSL no longer would."""
    name = struct.pack("!BH", 0, len(sni)) + sni
    ext = struct.pack("!HH", 0, len(name) + 2) + struct.pack("!H", len(name)) + name
    body = struct.pack("!H", version) + random.randbytes(32) + b"\x00"
    body += struct.pack("!H", 2 * len(ciphers)) + b"".join(struct.pack("!H", c) for c in ciphers)
    body += b"\x01\x00" + struct.pack("!H", len(ext)) + ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return struct.pack("!BHH", 0x16, version, len(hs)) + hs


@pytest.mark.integration
def test_tls_and_dns_hellos_crafted_with_scapy_dissect_without_payload():
    needs_root_and_tshark()
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether

    raw = bytes

    marker = f"SECRETBODY{random.getrandbits(32):08x}"
    hello = client_hello(0x0301, [0x0005, 0x002F], b"old.bank.example")
    frames = [
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=443, flags="PA") / hello,
        Ether()
        / IP(src="10.0.0.1", dst="10.0.0.3")
        / UDP(sport=40001, dport=53)
        / DNS(rd=1, qd=DNSQR(qname=("a" * 60) + ".t.bank.example", qtype="TXT")),
        Ether()
        / IP(src="10.0.0.1", dst="10.0.0.2")
        / TCP(sport=40002, dport=80, flags="PA")
        / f"POST /pay/991 HTTP/1.1\r\nHost: Shop.Bank.Example\r\n\r\n{marker}".encode(),
    ]
    records = b""
    for f in frames:
        data = raw(f)
        records += np.array([(1, 0, len(data), len(data))], dtype="<u4,<u4,<u4,<u4").tobytes() + data
    fields = l7.dissect(pcap_file(records, 2048))
    s = l7.summarise(fields)
    assert list(s["l7_protocol"]) == ["tls", "dns", "http"]
    assert s["tls_sni"][0] == "old.bank.example" and s["tls_version"][0] == "TLS1.0"
    assert s["tls_ja4"][0].startswith("t10d0201") and s["tls_ja3"][0]
    assert s["dns_qname"][1] == ("a" * 60) + ".t.bank.example" and s["dns_qtype"][1] == 16
    assert s["http_host"][2] == "shop.bank.example" and s["http_path"][2] == "/pay/{}"
    assert marker not in repr(s) and marker not in fields.to_pandas().to_string()


@pytest.mark.integration
def test_agent_counts_what_it_sheds_and_survives_a_missing_interface():
    needs_root_and_tshark()

    class Producer:
        def __init__(self):
            self.rows = 0

        def send(self, rb, key):
            self.rows += rb.num_rows

        def flush(self, timeout_s=30.0):
            pass

    from collectors.sampler import SampleAgent

    port = random.randrange(20000, 60000)
    cfg = SamplerConfig(
        follow_ovs=False,
        interfaces=(
            PodInterfaceConfig(ifname="lo", pod="p"),
            PodInterfaceConfig(ifname="nosuchif0", pod="q"),
        ),
        filter=f"udp port {port}",
        sampling_rate=1,
        max_samples_per_s=0,
        max_pending_rows=50,
        flush_interval_s=30,
    )
    producer = Producer()
    agent = SampleAgent(cfg, producer)
    agent.start()
    try:
        assert agent.errors.get("ring") == 1 and list(agent.interfaces) == ["lo"]
        _burst(200, port)
        time.sleep(0.5)
    finally:
        agent.stop()
    assert agent.counts["seen"] == 400
    assert agent.counts["shed"] > 0
    assert agent.published[schema.PACKET_SAMPLES] + agent.counts["shed"] == 400
    assert producer.rows >= agent.published[schema.PACKET_SAMPLES]


@pytest.mark.integration
def test_fanout_workers_share_an_interface_each_frame_once():
    needs_root_and_tshark()
    from collectors.sampler import SampleAgent

    class Producer:
        def send(self, rb, key):
            pass

        def flush(self, timeout_s=30.0):
            pass

    port = random.randrange(20000, 60000)
    cfg = SamplerConfig(
        follow_ovs=False,
        interfaces=(PodInterfaceConfig(ifname="lo", pod="p"),),
        filter=f"udp port {port}",
        sampling_rate=1,
        fanout_workers=2,
        flush_interval_s=30,
    )
    agent = SampleAgent(cfg, Producer())
    agent.start()
    try:
        _burst(150, port)
        time.sleep(0.5)
    finally:
        agent.stop()
    assert agent.counts["seen"] == 300 and agent.published[schema.PACKET_SAMPLES] == 300
