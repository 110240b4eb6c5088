"""IPFIX template refreshes: an identical template set again changes nothing and is skipped
(counted, not parsed); anything that could change the state is parsed again."""

from __future__ import annotations

import struct

import pytest

from collectors.decoder import Decoder
from tests.collectors import _builders as b

A = [(8, 4), (12, 4), (2, 8)]  # src, dst, packets
B = [(12, 4), (8, 4), (2, 8)]  # the same template id redefined: dst first


def msg(sets, seq=0):
    return b.ipfix_message(sets, seq=seq)


def data(fields, n=1):
    return b.data_set(300, [b.record(fields, {8: "10.0.0.1", 12: "10.0.0.2", 2: 7})] * n)


def decode(decoder, payload):
    return decoder.decode(payload, "192.0.2.9", 1_700_000_000_000)


def src(out):
    return [bytes(x)[-4:] for x in out.flows.columns["src_addr"]]


@pytest.fixture(params=["native", "python"])
def decoder(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setenv("NETOBS_NATIVE", "0")
    return Decoder()


def test_an_identical_refresh_is_counted_and_skipped(decoder, monkeypatch):
    tmpl = b.template_set({300: A})
    assert not decode(decoder, msg([tmpl, data(A)])).errors
    stats = decoder.stats["192.0.2.9"]
    assert stats.templates == 1
    calls = []
    walk = decoder.ipfix._template_walk
    monkeypatch.setattr(decoder.ipfix, "_template_walk", lambda *a: calls.append(1) or walk(*a))
    for i in range(1, 4):
        out = decode(decoder, msg([tmpl, data(A)], seq=i))
        assert src(out) == [bytes([10, 0, 0, 1])]
    assert stats.templates == 4 and calls == []  # counted as refreshes, never parsed again


def test_a_redefinition_after_a_refresh_is_learned(decoder):
    decode(decoder, msg([b.template_set({300: A}), data(A)]))
    decode(decoder, msg([b.template_set({300: A})], seq=1))
    out = decode(decoder, msg([b.template_set({300: B}), data(B)], seq=1))
    # B's record starts with the destination: read with the stale A, src would be 10.0.0.2
    assert src(out) == [bytes([10, 0, 0, 1])]


def test_a_withdrawal_between_identical_sets_is_not_skipped(decoder):
    tmpl = b.template_set({300: A})
    decode(decoder, msg([tmpl]))
    withdraw = struct.pack(">HHHH", 2, 8, 300, 0)
    out = decode(decoder, msg([withdraw, data(A)], seq=0))
    assert len(out.flows) == 0 and decoder.stats["192.0.2.9"].unknown_templates == 1
    out = decode(decoder, msg([tmpl, data(A)], seq=0))  # the same bytes as before: learned again
    assert src(out) == [bytes([10, 0, 0, 1])]
    again = decode(decoder, msg([withdraw], seq=1))
    assert decoder.stats["192.0.2.9"].template_withdrawals == 2 and not again.errors


def test_a_set_with_an_error_is_parsed_each_time(decoder):
    bad = b.template_set({300: A, 1: A})  # template id 1 is reserved: refused, counted
    for i in range(3):
        decode(decoder, msg([bad], seq=i))
    errors = decoder.stats["192.0.2.9"].errors
    assert sum(errors.values()) == 3


def test_a_change_made_by_another_set_makes_the_same_bytes_count_again(decoder):
    tmpl = b.template_set({300: A})
    decode(decoder, msg([tmpl, data(A)]))
    # An options template set redefines id 300 (one key space per domain, RFC 7011 §8)...
    decode(decoder, msg([b.options_template_set(300, [(149, 4)], [(34, 4)])], seq=1))
    # ...so the earlier set, byte for byte, must be learned again, not skipped as a refresh.
    out = decode(decoder, msg([tmpl, data(A)], seq=1))
    assert src(out) == [bytes([10, 0, 0, 1])]
