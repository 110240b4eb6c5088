"""10^5 mutated datagrams through both decoding paths: no crash, no contained exception.

Hypothesis explores a few hundred examples per property (test_fuzz*.py); this walks far more
ground, cheaply: seeds of every protocol and of the cases real devices send (biflows,
several samplers, repeated header fields, EoMPLS, SRv6, PSAMP sections, absurd times), mutated
with a seeded generator (bit flips, cuts, insertions, all-ones words, splices of two seeds), fed
to a Python and a native decoder that share template state across datagrams. Every batch must
be well formed (one length for all columns, times in range) and no decoder may have contained
an exception (``internal:*``). ``NETOBS_FUZZ_DATAGRAMS`` changes the count, ``NETOBS_FUZZ_SEED``
the seed (a failure prints both).
"""

from __future__ import annotations

import os
import random
import struct

import pytest

from collectors._times import TIME_MAX_MS, TIME_MIN_MS
from collectors.decoder import Decoder
from collectors.sflow import SflowDecoder
from tests.collectors import _builders as b
from tests.collectors import _nf_builders as nf
from tests.collectors import test_real_devices as real
from tests.collectors.test_native_ipfix import NATIVE

EXP = "198.51.100.7"
DATAGRAMS = int(os.environ.get("NETOBS_FUZZ_DATAGRAMS", "100000"))
SEED = int(os.environ.get("NETOBS_FUZZ_SEED", "14"))
FLUSH_EVERY = 64


def _seeds() -> list[bytes]:
    frames = [
        b.eth(b.geneve(b.eth(b.tcp4()), options=b.ovn_geneve_option()), vlans=(10,)),
        real.eompls(real.CUSTOMER),
        b.eth(b.IPv6() / b"")[:12] + b"\x86\xdd" + real.srv6(b.udp4(), nh=4),
        b.eth(b.vxlan(b.eth(b.tcp6(hbh=True)))),
    ]
    sflow = b.sflow_datagram(
        [b.flow_sample([b.raw_header_record(f, header_len=200), b.switch_record(0xFFFFFFFF)]) for f in frames]
        + [
            b.expanded_flow_sample(
                [b.sampled_ipv4_record("10.0.0.1", "10.0.0.2", 6, 1, 2), b.router_record()]
            ),
            b.flow_sample([b.gateway_record(), b.raw_header_record(bytes(b.udp4()), proto=11)]),
            b.counter_sample([b.generic_if_counters()]),
        ]
    )
    biflow = real.BIFLOW + [(82, b.VAR)]
    psamp = [(301, 8), (302, 8), (323, 8), (312, 2), (315, b.VAR)]
    sampled = [(8, 4), (12, 4), (2, 8), (1, 8), (302, 8), (22, 4), (21, 4)]
    ipfix = b.ipfix_message(
        [
            b.options_template_set(310, [(302, 8)], [(305, 4), (306, 4), (160, 8)]),
            b.options_template_set(311, [(302, 8)], [(311, 8)]),
            b.template_set({320: biflow, 321: real.HUAWEI, 322: psamp, 323: sampled}),
            b.data_set(
                310, [b.record([(302, 8), (305, 4), (306, 4), (160, 8)], {302: 7, 305: 1, 306: 9, 160: 1})]
            ),
            b.data_set(311, [b.record([(302, 8), (311, 8)], {302: 8, 311: struct.pack(">d", 0.01)})]),
            b.data_set(320, [b.record(biflow, real._biflow_values())] * 2),
            b.data_set(321, [b.record(real.HUAWEI, {27: "fd00::1", 4: 4, 8: "10.0.0.1", 2: 1})]),
            b.data_set(322, [b.record(psamp, {302: 7, 315: f[:96]}) for f in frames]),
            b.data_set(323, [b.record(sampled, {302: s, 2: 1, 22: 5}) for s in (7, 8, 9)]),
        ]
    )
    v9_fields = [(8, 4), (12, 4), (2, 4), (1, 4), (48, 1), (22, 4), (21, 4)]
    v9 = nf.v9_packet(
        [
            nf.v9_options_flowset(257, [(1, 4)], [(48, 1), (49, 1), (50, 4)]),
            nf.v9_template_flowset({260: v9_fields}),
            nf.v9_data_flowset(257, [struct.pack(">IBBI", 0, 1, 2, 100)]),
            nf.v9_data_flowset(260, [b.record(v9_fields, {8: "10.0.0.1", 2: 1, 48: 1, 21: 9})] * 3),
        ]
    )
    v5 = nf.v5_packet(
        [nf.v5_record("10.0.0.1", "10.0.0.2", 1, 2, first=5, last=9)] * 4, sampling=(1 << 14) | 10
    )
    return [sflow, ipfix, v9, v5]


def _mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        pos = rng.randrange(len(data)) if data else 0
        if op < 0.35 and data:
            data[pos] ^= 1 << rng.randrange(8)
        elif op < 0.5:
            del data[pos : pos + rng.randint(1, 64)]
        elif op < 0.6:
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op < 0.8:  # lengths, counts and times set to all ones or all zeros: loop and overflow bait
            data[pos : pos + 4] = b"\xff\xff\xff\xff" if rng.random() < 0.7 else bytes(4)
        elif op < 0.9:
            data[pos : pos + 8] = struct.pack(">Q", rng.getrandbits(64))
        else:  # a splice: the head of this datagram, the tail of another
            other = rng.choice(seeds)
            data = data[:pos] + other[rng.randrange(len(other)) :]
    return bytes(data)


def _decoder(native: bool) -> Decoder:
    d = Decoder(srv6_exporters=[EXP])
    d.sflow = SflowDecoder(native=native)
    d.ipfix.native = d.netflow9.native = NATIVE if native else None
    return d


def _check(d: Decoder, where: str) -> int:
    out = d.flush()
    internal = [r for _, r in out.errors if r.startswith("internal")]
    assert not internal, (where, out.errors)
    n = len(out.flows)
    for name, col in out.flows.columns.items():
        assert len(col) == n, (where, name)
        assert col.flags.c_contiguous, (where, name)  # consumers view columns as other dtypes
    if n:
        for name in ("flow_start", "flow_end"):
            t = out.flows.columns[name]
            assert ((t >= TIME_MIN_MS) & (t < TIME_MAX_MS)).all(), (where, name)
    return n


@pytest.mark.slow
def test_mutated_datagrams_on_both_paths():
    if NATIVE is None:
        pytest.skip("collectors._native_ipfix is not built")
    rng = random.Random(SEED)
    seeds = _seeds()
    decoders = [_decoder(False), _decoder(True)]
    for d in decoders:
        for seed in seeds:
            d.feed(seed, EXP, 1_790_000_000_000)
        assert _check(d, "seeds") > 0
    flows = [0, 0]
    for i in range(DATAGRAMS):
        payload = _mutate(rng, seeds)
        for d in decoders:
            d.feed(payload, EXP, 1_790_000_000_000 + i)
        if i % FLUSH_EVERY == FLUSH_EVERY - 1:
            for k, d in enumerate(decoders):
                flows[k] += _check(d, f"seed {SEED}, datagram {i}")
    for k, d in enumerate(decoders):
        flows[k] += _check(d, f"seed {SEED}, end")
        for stats in d.stats.values():
            assert not [r for r in stats.errors if r.startswith("internal")], stats.errors
    assert flows[0] > DATAGRAMS // 10 and flows[1] > DATAGRAMS // 10  # the mutations still decode a lot
