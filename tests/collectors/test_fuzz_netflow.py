"""Property tests of the NetFlow v9 / v5, PSAMP and template-state paths: any bytes give records or
counted errors (never an exception), and template bombs stay within the configured limits."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors._templates import Limits
from collectors.decoder import Decoder
from tests.collectors import _builders as b
from tests.collectors import _nf_builders as nf
from tests.collectors.test_fuzz import FUZZ, _check, mutated

V9_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4), (22, 4), (21, 4)]
PSAMP_FIELDS = [(301, 8), (324, 8), (410, 2), (315, b.VAR)]
SEEDS = [
    nf.v9_packet(
        [
            nf.v9_template_flowset({260: V9_FIELDS}),
            nf.v9_options_flowset(300, [(2, 4)], [(34, 4), (35, 1)]),
            nf.v9_data_flowset(300, [struct.pack(">IIB", 0, 100, 1)]),
            nf.v9_data_flowset(260, [b.record(V9_FIELDS, {8: "10.0.0.1", 2: 3})] * 3),
        ]
    ),
    nf.v5_packet([nf.v5_record("10.0.0.1", "10.0.0.2", 1, 2, first=5, last=9)] * 3, sampling=(1 << 14) | 10),
    b.ipfix_message(
        [
            b.template_set({400: PSAMP_FIELDS}),
            b.data_set(400, [b.record(PSAMP_FIELDS, {315: b.eth(b.tcp4(), vlans=(5,))})] * 2),
            struct.pack(">HHHH", 2, 8, 401, 0),  # a withdrawal
        ]
    ),
]


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_as_netflow(payload):
    d = Decoder()
    for protocol in ("netflow9", "netflow5"):
        d.decode(payload, "192.0.2.1", 0, protocol=protocol)
        d.decode(struct.pack(">H", 9 if protocol == "netflow9" else 5) + payload, "192.0.2.1", 0)
    _check(d)


@pytest.mark.slow
@FUZZ
@given(st.lists(mutated(SEEDS), min_size=1, max_size=4))
def test_mutated_netflow_and_psamp_with_shared_state(payloads):
    d = Decoder()
    for seed in SEEDS:
        d.decode(seed, "192.0.2.1", 0)
    for payload in payloads:
        d.feed(payload, "192.0.2.1", 0)
        d.feed(payload, "192.0.2.1", 0, protocol="netflow9")
        d.feed(payload, "192.0.2.1", 0, protocol="ipfix")
    _check(d)


@pytest.mark.slow
@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(256, 65535), st.lists(st.tuples(st.integers(1, 400), st.integers(0, 70)), max_size=12)
        ),
        min_size=1,
        max_size=60,
    ),
    st.integers(0, 3),
)
def test_template_bombs_stay_within_limits(templates, domain):
    limits = Limits(max_templates=16, max_fields=8)
    d = Decoder(limits=limits)
    tset = b.template_set({tid: fields for tid, fields in templates})
    d.decode(b.ipfix_message([tset], domain=domain), "192.0.2.1", 0)
    d.decode(
        nf.v9_packet([nf.v9_template_flowset({tid: f for tid, f in templates})], source_id=domain),
        "192.0.2.1",
        0,
    )
    _check(d)
    for store in (d.ipfix.templates, d.netflow9.templates):
        assert len(store) <= limits.max_templates
        assert all(len(t.fields) <= limits.max_fields for t in store._templates.values())


@pytest.mark.slow
@FUZZ
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=30))
def test_sequence_numbers_any_order_never_negative_loss(seqs):
    d = Decoder()
    d.decode(SEEDS[0], "192.0.2.1", 0)
    for seq in seqs:
        d.decode(nf.v5_packet([nf.v5_record("10.0.0.1", "10.0.0.2", 1, 2)], seq=seq), "192.0.2.1", 0)
    for v in d.stats["192.0.2.1"].loss().values():
        assert v["lost"] >= 0 and v["missing"] >= 0
