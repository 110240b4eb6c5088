"""The C sFlow decoder (collectors/_native/sflow.c) against the Python reference, differentially.

Every capture under tests/testdata, the builders' edge cases (tunnels, tags, MPLS, IPv6
extension headers, fragments, headers cut at every length, interface encodings,
counters, sequence findings) and fuzzed bytes go through a :class:`Decoder` on each path;
the flow and counter batches, the per-call errors and sequence findings and every
exporter's statistics must be identical.
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import IP, UDP, IPOption_RR
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment

from collectors import sflow
from collectors._sequence import LATE_WINDOW
from collectors.decoder import Decoded, Decoder, detect
from collectors.pcap import read_udp
from collectors.sflow import IF_DISCARDED, IF_MULTIPLE, SflowDecoder
from collectors.stats import ExporterStats
from tests.collectors import _builders as b
from tests.collectors.test_fuzz import mutated

pytestmark = pytest.mark.skipif(
    sflow.native_module(force=True) is None, reason="collectors._native_sflow not built (make setup)"
)

DATA = Path(__file__).parent.parent / "testdata"
EXPORTER = "198.51.100.7"
T = 1_764_480_000_123
FUZZ = settings(
    max_examples=int(os.environ.get("NETOBS_FUZZ_EXAMPLES", "300")),
    deadline=1000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def decoders(default_sampling_rate: int = 0, max_streams: int | None = None) -> tuple[Decoder, Decoder]:
    """(Python, native) decoders, alike but for the sFlow path."""
    py, native = Decoder(default_sampling_rate), Decoder(default_sampling_rate)
    py.sflow = SflowDecoder(default_sampling_rate, native=False)
    native.sflow = SflowDecoder(default_sampling_rate, native=True)
    if max_streams is not None:
        for tracker in (py.sflow.sequences, py.sflow.sample_sequences):
            tracker.max_streams = max_streams
        native.sflow._native = sflow.native_module(force=True).State(max_streams, LATE_WINDOW)
    return py, native


def assert_same_columns(a: dict, b_: dict) -> None:
    assert a.keys() == b_.keys()
    for name in a:
        x, y = a[name], b_[name]
        assert x.dtype == y.dtype, name
        assert x.flags.c_contiguous and y.flags.c_contiguous, name  # as consumers view them
        assert x.tolist() == y.tolist(), name


def assert_same(py_out: Decoded, native_out: Decoded, py: Decoder, native: Decoder) -> None:
    assert len(py_out.flows) == len(native_out.flows)
    assert_same_columns(py_out.flows.columns, native_out.flows.columns)
    assert len(py_out.counters) == len(native_out.counters)
    assert_same_columns(py_out.counters.columns, native_out.counters.columns)
    assert py_out.errors == native_out.errors
    assert py_out.sequences == native_out.sequences
    assert {k: s.as_dict() for k, s in py.stats.items()} == {k: s.as_dict() for k, s in native.stats.items()}
    assert py.sflow.streams() == native.sflow.streams()
    internal = [r for _, r in native_out.errors if r.startswith("internal")]
    assert not internal, native_out.errors


def run_both(datagrams, batch: int = 64, **kw) -> tuple[int, Decoder]:
    """Feed (payload, exporter, time) through both paths, flushing every ``batch``; flows seen."""
    py, native = decoders(**kw)
    flows = 0
    for start in range(0, len(datagrams), batch):
        chunk = datagrams[start : start + batch]
        py_out, native_out = py.decode_many(chunk), native.decode_many(chunk)
        assert_same(py_out, native_out, py, native)
        flows += len(native_out.flows)
    return flows, native


def test_native_is_the_default_and_env_forces_python(monkeypatch):
    monkeypatch.delenv("NETOBS_NATIVE", raising=False)
    assert SflowDecoder().native and Decoder().sflow.native
    monkeypatch.setenv("NETOBS_NATIVE", "0")
    assert not SflowDecoder().native
    assert not Decoder().sflow.native
    assert SflowDecoder(native=True).native  # asked for explicitly (the tests here)
    assert not SflowDecoder(native=False).native


SFLOW_CAPTURES = sorted(
    p.name for p in DATA.glob("*.pcap") if any(detect(d.payload) == "sflow" for d in read_udp(p))
)


def test_captures_found():
    assert {"ovs-sflow.pcap", "pmacct-sflow.pcap"} <= set(SFLOW_CAPTURES)


@pytest.mark.parametrize("name", SFLOW_CAPTURES)
@pytest.mark.parametrize("batch", [1, 64])
def test_captures(name, batch):
    datagrams = [(d.payload, d.src_ip, d.timestamp_ns // 1_000_000) for d in read_udp(DATA / name)]
    flows, _ = run_both(datagrams, batch)
    assert flows > 0


def _geneve(inner, proto: int) -> bytes:
    return b.eth(
        IP(src="192.168.1.1", dst="192.168.1.2") / UDP(dport=6081) / GENEVE(vni=3, proto=proto) / inner
    )


def _patched(frame: bytes, at: int, value: int) -> bytes:
    return frame[:at] + bytes([value]) + frame[at + 1 :]


def _frames() -> dict[str, bytes]:
    """Frames for raw header records: every layer and tunnel the parser knows."""
    geneve = b.eth(b.geneve(b.eth(b.udp4()), vni=12, options=b.ovn_geneve_option()))
    vxlan = b.eth(b.vxlan(b.eth(b.tcp4(), vlans=(5,)), vni=99))
    tunnel_header = 14 + 20 + 8  # Ethernet, IPv4, UDP
    mpls = bytes.fromhex("0200000000020200000000018847") + bytes.fromhex("000640ff000651ff")
    return {
        "tcp4": b.eth(b.tcp4(flags="SA", tos=0x28)),
        "udp4": b.eth(b.udp4()),
        "icmp4": b.eth(b.icmp4(type_=3, code=1)),
        "tcp6": b.eth(b.tcp6(tc=0x20)),
        "tcp6_hbh": b.eth(b.tcp6(hbh=True)),
        "udp6_later_fragment": b.eth(b.udp6_later_fragment()),
        "udp6_first_fragment": b.eth(
            IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrFragment(offset=0, nh=17) / UDP(dport=53)
        ),
        "icmp6": b.eth(b.icmp6()),
        "ipv4_options": b.eth(b.tcp4(dport=22, options=[IPOption_RR(routers=["10.9.9.9"])])),
        "ipv4_later_fragment": b.eth(IP(src="10.0.0.1", dst="10.0.0.2", frag=10, proto=6) / (b"\x00" * 40)),
        "vlan": b.eth(b.tcp4(), vlans=(77,)),
        "qinq": b.eth(b.udp4(), vlans=(100, 200), qinq=True),
        "mpls": mpls + bytes(b.udp4()),
        "mpls_not_ip": mpls + b"\x10" * 30,
        "geneve_ovn": geneve,
        "geneve_ovn_ports": b.eth(
            b.geneve(
                b.eth(b.tcp6()),
                vni=0x0A0B,
                options=b.geneve_option(0x0101, 1, b"\x11" * 8)
                + b.ovn_ports_option(0x7FFF, 0xFFFF, reserved=1),
            )
        ),
        "geneve_ovn_wrong_length": b.eth(
            b.geneve(
                b.eth(b.udp4()), options=b.geneve_option(0x0102, 0x80, bytes(8)) + b.ovn_ports_option(1, 2)
            )
        ),
        "geneve_option_overruns": b.eth(
            b.geneve(b.eth(b.udp4()), options=b.geneve_option(0x0101, 1, bytes(4), length=9) + bytes(4))
        ),
        "geneve_ipv6_inner": b.eth(b.geneve(b.eth(b.tcp6()), vni=7)),
        "geneve_ip_inner": _geneve(b.tcp4(), 0x0800),
        "geneve_unknown_inner": _geneve(b.tcp4(), 0x1234),
        "geneve_version_1": _patched(geneve, tunnel_header, geneve[tunnel_header] | 0x40),
        "vxlan": vxlan,
        "vxlan_no_vni_flag": _patched(vxlan, tunnel_header, 0),
        "gre_key_teb": b.eth(
            IP(src="1.1.1.1", dst="2.2.2.2", proto=47)
            / (bytes.fromhex("b0006558000000000000000700000009") + b.eth(b.udp4()))
        ),
        "gre_ipv4": b.eth(
            IP(src="1.1.1.1", dst="2.2.2.2", proto=47) / (b"\x00\x00\x08\x00" + bytes(b.tcp4()))
        ),
        "gre_v1": b.eth(IP(src="1.1.1.1", dst="2.2.2.2", proto=47) / (b"\x00\x01\x08\x00" + bytes(b.tcp4()))),
        "arp": b.eth(b"\x00\x01\x08\x00\x06\x04\x00\x01" + bytes(20)),
    }


FRAMES = _frames()


def _flow(records, **kw) -> bytes:
    return b.sflow_datagram([b.flow_sample(records, **kw)])


def _cases() -> dict[str, list[bytes]]:
    cases = {
        f"raw_{name}": [_flow([b.raw_header_record(f, frame_length=1514)])] for name, f in FRAMES.items()
    }
    cases["raw_ip_header_protocols"] = [
        _flow([b.raw_header_record(bytes(b.tcp4()), proto=11)]),
        _flow([b.raw_header_record(bytes(b.tcp6()), proto=12)]),
        _flow([b.raw_header_record(bytes(b.udp4()), proto=99)]),
        _flow([b.raw_header_record(b"", proto=11)]),
    ]
    cases["interfaces"] = [
        _flow([b.raw_header_record(FRAMES["udp4"])], inp=3, out=out, source=src, seq=i)
        for i, (src, out) in enumerate(
            [
                ((0, 3), 0x3FFFFFFF),
                ((0, 4), IF_DISCARDED | 256),
                ((0, 9), IF_MULTIPLE | 3),
                ((2, 3), IF_MULTIPLE),
            ]
        )
    ]
    cases["expanded"] = [
        b.sflow_datagram(
            [
                b.expanded_flow_sample(
                    [b.raw_header_record(FRAMES["tcp6"])],
                    source=(0, 70000),
                    inp=(0, 70000),
                    out=(fmt, 5),
                    seq=i,
                )
                for i, fmt in enumerate((0, 1, 2, 3))
            ]
        )
    ]
    cases["fallback_records"] = [
        _flow(
            [
                b.sampled_ipv4_record("10.1.1.1", "10.2.2.2", 6, 1234, 80, flags=0x18, tos=4),
                b.switch_record(55),
            ]
        ),
        _flow([b.sampled_ipv6_record("fd00::a", "fd00::b", 17, 0x1FFFF, 53, flags=0x1FFFF, prio=0x1FF)]),
        _flow([b._tlv(2, struct.pack(">I6s2x6s2xI", 80, b"\x02" * 6, b"\x04" * 6, 0x800))]),
        _flow(
            [b._tlv(2, struct.pack(">I6s2x6s2xI", 80, b"\x02" * 6, b"\x04" * 6, 0x800)), b.switch_record(9)]
        ),
        _flow([b.sampled_ipv4_record("1.1.1.1", "2.2.2.2", 17, 1, 2), b.raw_header_record(FRAMES["tcp4"])]),
        _flow(
            [
                b.raw_header_record(FRAMES["vlan"]),
                b.switch_record(8),
                b.sampled_ipv4_record("1.1.1.1", "2.2.2.2", 1, 1, 2),
            ]
        ),
        _flow([b.raw_header_record(FRAMES["udp4"]), b.raw_header_record(FRAMES["tcp6"], frame_length=99)]),
        _flow([b.switch_record(0xFFFF)]),
        _flow([]),
    ]
    raw = b.raw_header_record(FRAMES["tcp4"])
    cases["router_gateway"] = [
        _flow([raw, b.router_record("192.0.2.254", 24, 16)]),
        _flow([raw, b.router_record("2001:db8::1", 48, 128), b.gateway_record("2001:db8::fe")]),
        _flow([b.gateway_record("10.9.9.9"), raw, b.router_record(None, 0, 0)]),
        _flow([raw, b.gateway_record(as_=65000, src_as=0, path=())]),
        _flow([raw, b.gateway_record(path=((2, (1, 2)), (1, (70000, 70001)), (2, ())), communities=(7, 8))]),
        _flow([b.sampled_ipv4_record("10.1.1.1", "10.2.2.2", 6, 1, 2), b.gateway_record(next_hop=None)]),
        _flow(
            [raw, b.router_record("10.0.0.1", 129, 8), b.gateway_record(), b.router_record("10.0.0.2", 1, 2)]
        ),
        _flow([raw, b._tlv(1002, struct.pack(">I4sII", 3, bytes(4), 1, 1)), b._tlv(1003, b"")]),
        _flow([raw, b._tlv(1002, struct.pack(">I8s", 2, bytes(8))), b._tlv(1003, struct.pack(">I", 2))]),
        _flow(
            [raw, b._tlv(1003, struct.pack(">I4sIIIIII", 1, bytes(4), 1, 2, 3, 0xFFFFFFFF, 2, 1) + bytes(4))]
        ),
        _flow([raw, b._tlv(1003, struct.pack(">I4sIIIIII", 1, bytes(4), 1, 2, 3, 1, 2, 500) + bytes(8))]),
    ]
    counters = [
        b.counter_sample([b.generic_if_counters(if_index=9), b._tlv(2, b"\x00" * 52)], source=(0, 9)),
        b.counter_sample([b.generic_if_counters(if_index=10)], source=(0, 10), expanded=True),
        b.counter_sample([b._tlv(1005, struct.pack(">I", 3) + b"abc\x00")], source=(0, 11)),
    ]
    cases["counters_between_flows"] = [
        b.sflow_datagram([counters[0], b.flow_sample([b.raw_header_record(FRAMES["qinq"])]), *counters[1:]]),
        b.sflow_datagram(counters, agent="2001:db8::1", sub_agent=3),
    ]
    cases["agents"] = [
        b.sflow_datagram([b.flow_sample([b.raw_header_record(FRAMES["tcp4"])])], agent=agent)
        for agent in ("0.0.0.0", "::", "::ffff:0.0.0.0", "2001:db8::9", "192.0.2.99")
    ]
    seqs = [1, 2, 4, 3, 3, 100_000, 100_001, 0xFFFFFFFF, 0, 1]
    cases["sequences"] = [
        b.sflow_datagram(
            [b.flow_sample([b.raw_header_record(FRAMES["udp4"])], seq=s), b.counter_sample([], seq=s)], seq=s
        )
        for s in seqs
    ]
    return cases


CASES = _cases()


@pytest.mark.parametrize("datagrams", CASES.values(), ids=CASES.keys())
def test_builder_cases(datagrams):
    flows, _ = run_both([(d, EXPORTER, T) for d in datagrams], batch=1)
    assert flows > 0  # every case has flow samples (the comparison is in run_both)
    run_both([(d, EXPORTER, T) for d in datagrams], batch=64)


def unpadded(header: bytes, proto: int = 1, seq: int = 1) -> bytes:
    """A datagram that ends exactly where its raw header does (no XDR padding after it)."""
    rec = struct.pack(">IIIIII", 1, 16 + len(header), proto, 1500, 4, len(header)) + header
    sample = struct.pack(">IIIIIIII", seq, 3, 100, 1000, 0, 3, 4, 1) + rec
    return b.sflow_datagram([struct.pack(">II", 1, len(sample)) + sample])


@pytest.mark.parametrize("name", FRAMES)
def test_headers_cut_at_every_length(name):
    frame = FRAMES[name]
    datagrams = [
        (_flow([b.raw_header_record(frame, header_len=n)], seq=n + 1), EXPORTER, T)
        for n in range(len(frame) + 1)
    ]
    datagrams += [(unpadded(frame[:n], seq=n + 1), EXPORTER, T) for n in range(len(frame) + 1)]
    flows, _ = run_both(datagrams, batch=16)
    assert flows == 2 * (len(frame) + 1)


def test_default_sampling_rate_and_many_datagrams_per_flush():
    datagrams = [
        (_flow([b.raw_header_record(f)], rate=rate, seq=i), f"10.0.0.{i % 3 + 1}", T + i)
        for i, (f, rate) in enumerate((f, r) for f in FRAMES.values() for r in (0, 512))
    ]
    flows, _ = run_both(datagrams, batch=64, default_sampling_rate=100)
    assert flows == len(datagrams)


def test_too_many_streams_counted_alike():
    sample = b.flow_sample([b.raw_header_record(FRAMES["udp4"])])
    datagrams = [(b.sflow_datagram([sample], sub_agent=i), EXPORTER, T) for i in range(6)]
    _, native = run_both(datagrams, batch=1, max_streams=3)
    assert native.sflow.streams() == (3, 3)
    assert native.stats[EXPORTER].errors["sequence:too_many_streams"] == 3 + 3  # datagrams and samples


def _with_sample_count(datagram: bytes, count: int) -> bytes:
    return datagram[:24] + struct.pack(">I", count) + datagram[28:]  # IPv4 agent: the count at 24


MALFORMED = {  # payload, the reason counted when fed as sFlow
    "empty": (b"", "sflow:bad_version"),
    "bad_version": (b"\x00\x00\x00\x04" + bytes(40), "sflow:bad_version"),
    "bad_agent_type": (b"\x00\x00\x00\x05\x00\x00\x00\x07" + bytes(40), "sflow:bad_header"),
    "short_header": (b.sflow_datagram([])[:20], "sflow:bad_header"),
    "sample_overflows": (b.sflow_datagram([b.flow_sample([])])[:-4], "sflow:truncated_sample"),
    "record_overflows": (
        b.sflow_datagram([b.flow_sample([struct.pack(">II", 1, 500) + bytes(16)])]),
        "sflow:truncated_record",
    ),
    "short_samples": (
        b.sflow_datagram([b._tlv(1, bytes(12)), b._tlv(3, bytes(40)), b._tlv(4, bytes(4))]),
        "sflow:short_sample",
    ),
    "unknown_sample": (b.sflow_datagram([b._tlv(0x1234 << 12 | 1, bytes(8))]), "sflow:unknown_sample_format"),
    "huge_sample_count": (
        _with_sample_count(b.sflow_datagram([b.flow_sample([b.switch_record()])]), 0xFFFFFFFF),
        "sflow:truncated_sample",
    ),
    "huge_record_count": (
        b.sflow_datagram(
            [b._tlv(1, struct.pack(">IIIIIIII", 1, 3, 1, 1, 0, 3, 4, 0xFFFFFFFF) + b.switch_record(3))]
        ),
        "sflow:truncated_record",
    ),
    "bad_router_record": (
        _flow([b._tlv(1002, struct.pack(">I4sI", 1, bytes(4), 1))]),
        "sflow:bad_router_record",
    ),
    "bad_gateway_record": (
        _flow([b._tlv(1003, struct.pack(">I4sIIIIII", 1, bytes(4), 1, 2, 3, 2, 2, 0))]),
        "sflow:bad_gateway_record",
    ),
    "huge_header_length": (  # cut at the record's end: no error, the header that is there
        _flow([b._tlv(1, struct.pack(">IIII", 1, 64, 4, 0xFFFFFFFF) + FRAMES["tcp4"][:40])]),
        None,
    ),
}


@pytest.mark.parametrize("payload,reason", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_counted_alike(payload, reason):
    run_both([(payload, EXPORTER, T)], batch=1)
    py, nat = decoders()
    for d in (py, nat):
        d.feed(payload, EXPORTER, T, protocol="sflow")  # skip detection: the sFlow checks themselves
    assert_same(py.flush(), nat.flush(), py, nat)
    errors = nat.stats[EXPORTER].errors
    assert set(errors) == ({reason} if reason else set())


def test_exporter_address_must_be_16_bytes():
    state = sflow.native_module(force=True).State()
    with pytest.raises(ValueError):
        state.feed(_flow([]), b"\x00" * 4, T, ExporterStats())


SEEDS = [d for ds in CASES.values() for d in ds] + [p for p, _ in MALFORMED.values()]


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(payload):
    run_both([(payload, EXPORTER, T), (b"\x00\x00\x00\x05\x00\x00\x00\x01" + payload, EXPORTER, T)], batch=2)


@pytest.mark.slow
@FUZZ
@given(st.lists(mutated(SEEDS), min_size=1, max_size=6))
def test_fuzz_mutated_datagrams(payloads):
    run_both([(p, EXPORTER, T) for p in payloads], batch=3)


@FUZZ
@given(mutated(list(FRAMES.values())), st.sampled_from([1, 11, 12]))
def test_fuzz_mutated_headers(frame, proto):
    run_both([(_flow([b.raw_header_record(frame, proto=proto, header_len=256)]), EXPORTER, T)], batch=1)


def test_columns_are_contiguous_and_writable():
    _, native = decoders()
    out = native.decode(_flow([b.raw_header_record(FRAMES["geneve_ovn"])]), EXPORTER, T)
    for name, col in out.flows.columns.items():
        assert col.flags.c_contiguous, name
    assert out.flows.columns["src_port"].flags.writeable
    assert np.asarray(out.flows.columns["tunnel_type"]).tolist() == ["geneve"]


def test_flush_shapes_alike_on_both_paths_when_their_cache_is_full(monkeypatch):
    """A flush takes the columns that are 0 in every row from shared zeros cached per shape
    (rows, zero columns); datagrams of many shapes, flushed one by one and in pairs, with a
    cache of 3 shapes (cleared when full), decode as the Python path does."""
    monkeypatch.setattr(sflow, "_MAX_FIXED", 3)
    seed = random.randrange(1 << 32)
    print("seed", seed)
    rng = random.Random(seed)
    frames = list(FRAMES.values())
    datagrams = []
    for i in range(60):
        records = [[b.raw_header_record(rng.choice(frames))] for _ in range(rng.randint(1, 5))]
        samples = [b.flow_sample(r, rate=rng.choice([0, 1, 100]), seq=i) for r in records]
        if rng.random() < 0.3:
            samples.append(b.flow_sample([b.router_record(), b.gateway_record()], seq=i))
        datagrams.append((b.sflow_datagram(samples, seq=i), EXPORTER, T + i))
    for batch in (1, 2):
        flows, native = run_both(datagrams, batch=batch)
        assert flows > 60
        assert len(native.sflow._fixed_by_rows) <= 3
