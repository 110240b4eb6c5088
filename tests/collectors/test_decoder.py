"""The Decoder facade: protocol detection, counted errors, per-exporter statistics."""

from __future__ import annotations

import struct

import pytest

from collectors.decoder import Decoder, detect
from tests.collectors import _builders as b

T = 1_700_000_000_000
EXP = "203.0.113.5"
GOOD_IPFIX = b.ipfix_message([b.template_set({256: [(8, 4)]}), b.data_set(256, [b"\x01\x02\x03\x04"])])
NETFLOW9 = struct.pack(">HHIIII", 9, 1, 0, 0, 0, 0) + b"\x00" * 8
NETFLOW5 = struct.pack(">HHIIIIBBH", 5, 1, 0, 0, 0, 0, 0, 0, 0) + b"\x00" * 48


@pytest.mark.parametrize(
    "payload,kind",
    [
        (b.sflow_datagram([]), "sflow"),
        (b.sflow_datagram([], agent="2001:db8::1"), "sflow"),
        (GOOD_IPFIX, "ipfix"),
        (GOOD_IPFIX + b"\x00", None),  # IPFIX length must match the datagram
        (NETFLOW9, "netflow9"),
        (NETFLOW5, "netflow5"),
        (b"\x00\x00\x00\x05\x00\x00\x00\x09" + b"\x00" * 30, None),  # sFlow with a bad address type
        (b"", None),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None),
    ],
)
def test_detect(payload, kind):
    assert detect(payload) == kind


@pytest.mark.parametrize(
    "payload,reason",
    [
        (NETFLOW9, "netflow9:bad_set_length"),  # a zero-length FlowSet
        (b"junk" * 10, "unknown_protocol"),
    ],
)
def test_unsupported_protocols_are_counted_errors(payload, reason):
    d = Decoder()
    out = d.decode(payload, EXP, T)
    assert out.errors == {(EXP, reason): 1}
    assert len(out.flows) == 0 and d.stats[EXP].datagrams == 1


def _msg_with_raw_sets(raw: bytes, length: int | None = None) -> bytes:
    return struct.pack(">HHIII", 10, length or 16 + len(raw), 0, 0, 1) + raw


IPFIX_MALFORMED = {
    "set_length_below_4": (
        _msg_with_raw_sets(struct.pack(">HH", 256, 2) + b"\x00" * 8),
        "ipfix:bad_set_length",
    ),
    "set_length_zero": (_msg_with_raw_sets(struct.pack(">HH", 2, 0) + b"\x00" * 8), "ipfix:bad_set_length"),
    "set_overflows_message": (
        _msg_with_raw_sets(struct.pack(">HH", 2, 400) + b"\x00" * 8),
        "ipfix:bad_set_length",
    ),
    "template_truncated": (
        _msg_with_raw_sets(struct.pack(">HHHHHH", 2, 12, 256, 5, 8, 4)),
        "ipfix:template_truncated",
    ),
    "template_id_reserved": (
        b.ipfix_message([b.template_set({100: [(8, 4)]})]),
        "ipfix:template_id_reserved",
    ),
    "template_absurd_length": (
        b.ipfix_message([b.template_set({256: [(1, 65000), (2, 65000)]})]),
        "ipfix:template_too_long",
    ),
    "template_zero_length": (
        b.ipfix_message([b.template_set({256: [(1, 0)]})]),
        "ipfix:template_zero_length",
    ),
    "options_scope_zero": (
        b.ipfix_message([b.options_template_set(300, [], [(34, 4)])]),
        "ipfix:options_scope_invalid",
    ),
    "reserved_set_id": (b.ipfix_message([b.data_set(7, [b"\x00" * 4])]), "ipfix:reserved_set_id"),
    "header_length_too_big": (_msg_with_raw_sets(b"", length=100), "ipfix:length_mismatch"),
    "trailing_bytes": (_msg_with_raw_sets(b"\x00\x02"), "ipfix:trailing_bytes"),
    "short_header": (b"\x00\x0a\x00\x0c" + b"\x00" * 8, "ipfix:short_header"),
    "bad_header_length": (struct.pack(">HHIII", 10, 8, 0, 0, 0), "ipfix:bad_header"),
}


@pytest.mark.parametrize("payload,reason", IPFIX_MALFORMED.values(), ids=IPFIX_MALFORMED.keys())
def test_ipfix_malformed_counted_not_raised(payload, reason):
    d = Decoder()
    d.decode(payload, EXP, T, protocol="ipfix")
    errors = d.stats[EXP].errors
    assert errors[reason] == 1, errors
    assert not any(r.startswith("internal") for r in errors)


def test_truncated_variable_length_record():
    fields = [(7, 2), (82, b.VAR)]
    rec = struct.pack(">HB", 1, 200) + b"x" * 10  # says 200 bytes, has 10
    d = Decoder()
    out = d.decode(
        b.ipfix_message([b.template_set({256: fields}), b.data_set(256, [b.record(fields, {7: 5}), rec])]),
        EXP,
        T,
    )
    assert len(out.flows) == 1 and d.stats[EXP].errors["ipfix:record_truncated"] == 1


def test_all_variable_template_and_padding():
    fields = [(82, b.VAR)]
    d = Decoder()
    out = d.decode(
        b.ipfix_message([b.template_set({256: fields}), b.data_set(256, [b"\x02ab", b"\x00"])]), EXP, T
    )
    assert len(out.flows) == 2 and d.stats[EXP].error_count == 0


def test_stats_and_decode_many():
    d = Decoder()
    out = d.decode_many([(GOOD_IPFIX, EXP, T), (b.sflow_datagram([]), "192.0.2.9", T), (b"x", EXP, T)])
    assert len(out.flows) == 1
    assert d.stats[EXP].as_dict()["datagrams"] == 2
    assert d.stats[EXP].errors == {"unknown_protocol": 1}
    assert out.errors == {(EXP, "unknown_protocol"): 1}
    assert d.flush().errors == {}


def test_internal_errors_are_contained(monkeypatch):
    d = Decoder()
    monkeypatch.setattr(d.ipfix, "feed", lambda *a: 1 / 0)
    out = d.decode(GOOD_IPFIX, EXP, T)
    assert out.errors == {(EXP, "internal:ZeroDivisionError"): 1}


def _unrated_sflow(agent: str) -> bytes:
    return b.sflow_datagram([b.flow_sample([b.raw_header_record(b.eth(b.tcp4()))], rate=0)] * 2, agent=agent)


@pytest.mark.parametrize("native", [False, True])
def test_unrated_sflow_of_two_agents_takes_the_configured_rates(native):
    """The Python sFlow path's columns were strided views of its packed rows: the sampling
    defaults could not view the exporter column as words and the flush was lost (CI, a
    mutated datagram with rate 0 in every sample)."""
    from collectors.sflow import SflowDecoder

    d = Decoder(exporter_sampling=[(["192.0.2.0/24"], 64)])
    d.sflow = SflowDecoder(native=native)
    out = d.decode_many([(_unrated_sflow("192.0.2.1"), EXP, T), (_unrated_sflow("198.51.100.3"), EXP, T)])
    assert out.errors == {}
    assert out.flows.columns["sampling_rate"].tolist() == [64, 64, 0, 0]
    assert out.unsampled == {"198.51.100.3": 2}
    for name, col in out.flows.columns.items():
        assert col.flags.c_contiguous, name


def test_a_failing_sampling_step_keeps_the_decoded_flows(monkeypatch):
    """A bug in the sampling defaults is counted, and the flows stay, with the rates their
    exports gave (0: unknown), instead of the whole flush being dropped."""
    d = Decoder(exporter_sampling=[(["192.0.2.0/24"], 64)])

    def broken(columns):
        raise ValueError("a bug")

    monkeypatch.setattr(d.sampling, "apply", broken)
    d.feed(_unrated_sflow("192.0.2.1"), "192.0.2.1", T)
    d.feed(GOOD_IPFIX, EXP, T)
    out = d.flush()
    assert out.errors == {("*", "internal:ValueError"): 1}
    assert len(out.flows) == 3
    assert out.flows.columns["sampling_rate"].tolist() == [0, 0, 0]
    assert out.sflow_sources == [["192.0.2.1", 2, 0]]
    monkeypatch.undo()
    d.feed(_unrated_sflow("192.0.2.1"), "192.0.2.1", T)
    out = d.flush()
    assert out.errors == {} and out.flows.columns["sampling_rate"].tolist() == [64, 64]


def test_a_failing_decoder_flush_loses_only_its_own_rows(monkeypatch):
    d = Decoder()
    monkeypatch.setattr(d.ipfix, "flush", lambda: 1 / 0)
    d.feed(_unrated_sflow("192.0.2.1"), "192.0.2.1", T)
    d.feed(GOOD_IPFIX, EXP, T)
    out = d.flush()
    assert out.errors == {("*", "internal:ZeroDivisionError"): 1}
    assert len(out.flows) == 2 and set(out.flows.columns["type"]) == {"sflow"}
    assert out.sflow_sources == [["192.0.2.1", 2, 0]]
    assert out.unsampled == {"192.0.2.1": 2}
