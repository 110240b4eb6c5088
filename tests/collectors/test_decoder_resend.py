"""Messages the decoder has seen before, and payloads that are not ``bytes``.

An exporter re-sends its templates and options records (a refresh, or the collector bench's
sender cycling its replay set): each receipt counts its records and moves the sequence on, and a
changed sampling options record takes effect for the flows after it. A datagram handed over as a
bytearray or memoryview decodes as its bytes do (a bytearray once lost the rest of a message to
an ``internal:TypeError``: its template set was kept as a dict key)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from analytics.scenario.exporter import MAX_RECORDS, OPTIONS_TEMPLATE, RECORD, _message, _templates
from collectors.decoder import Decoder
from collectors.replay import load_payloads

TESTDATA = Path(__file__).resolve().parent.parent / "testdata"
CAPTURES = sorted(p for p in TESTDATA.glob("*.pcap") if not p.name.startswith("exporters-traffic"))
KINDS = {"bytes": bytes, "bytearray": bytearray, "memoryview": lambda p: memoryview(bytearray(p))}
EXP = "192.0.2.77"


@pytest.fixture(params=["1", "0"], ids=["native", "python"])
def decoder(request, monkeypatch):
    monkeypatch.setenv("NETOBS_NATIVE", request.param)
    return Decoder()


def _records(rng: np.random.Generator, n: int) -> np.ndarray:
    rec = np.zeros(n, dtype=RECORD)
    rec["start"] = 1_700_000_000_000 - rng.integers(0, 60_000, n)
    rec["end"] = 1_700_000_000_000
    rec["src"] = 0x0A100000 + rng.integers(1, 60_000, n)
    rec["dst"] = 0x0A100000 + rng.integers(1, 60_000, n)
    rec["sport"], rec["dport"], rec["proto"] = rng.integers(1024, 65535, n), 443, 6
    rec["packets"] = rng.integers(1, 2000, n)
    rec["bytes"] = rec["packets"] * 100
    return rec


def _export(rng: np.random.Generator, rates: list[int]) -> tuple[list[bytes], list[int]]:
    """Per rate: a message with the templates and a sampling options record (the exporter's
    refresh, the same bytes but for the sequence number when the rate does not change), then a
    few data messages. Sequence numbers count options records too (RFC 7011 §3.1). Returns the
    messages and the rate each data record was sampled at."""
    messages, expected, seq = [], [], int(rng.integers(0, 1 << 32))
    for rate in rates:
        opt = struct.pack("!HHII", OPTIONS_TEMPLATE, 12, 1, rate)
        messages.append(_message(_templates() + opt, 1_700_000_000, seq & 0xFFFFFFFF, 1))
        seq += 1
        for _ in range(int(rng.integers(1, 4))):
            n = int(rng.integers(1, MAX_RECORDS + 1))
            body = _records(rng, n).tobytes()
            data = struct.pack("!HH", 256, 4 + len(body)) + body
            messages.append(_message(data, 1_700_000_000, seq & 0xFFFFFFFF, 1))
            seq += n
            expected += [rate] * n
    return messages, expected


def _rates(decoder: Decoder) -> np.ndarray:
    flows = decoder.flush().flows
    return flows.columns["sampling_rate"] if len(flows) else np.zeros(0, dtype=np.uint32)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_resent_options_records_count_and_changed_rates_apply(decoder, kind):
    seed = int.from_bytes(os.urandom(4), "little")
    print("seed", seed)
    rng = np.random.default_rng(seed)
    first = int(rng.integers(2, 5000))
    rates = [first, first, int(rng.integers(2, 5000)), first]  # a refresh, a change, a change back
    messages, expected = _export(rng, rates)
    rows = []
    for message in messages:
        decoder.feed(KINDS[kind](message), EXP, 0)
        if rng.random() < 0.5:  # flushed per message or per several, as the collector does
            rows.append(_rates(decoder))
    rows.append(_rates(decoder))
    stats = decoder.stats[EXP]
    assert stats.options_records == len(rates), seed
    assert stats.templates == 2 * len(rates), seed
    assert stats.flow_records == len(expected), seed
    assert dict(stats.sequences) == {} and stats.sequence_gaps == 0, seed
    assert dict(stats.errors) == {}, seed
    assert np.concatenate(rows).tolist() == expected, seed


@pytest.mark.parametrize("kind", ["bytearray", "memoryview"])
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
def test_real_captures_decode_alike_from_any_bytes_like(decoder, capture, kind):
    """Every export capture of tests/testdata (OVS, pmacct, softflowd: sFlow, IPFIX, PSAMP,
    NetFlow v9 and v5), twice: as bytes, and as ``kind``; flushed every few datagrams."""
    payloads = load_payloads(capture)
    results = []
    for convert in (bytes, KINDS[kind]):
        d = Decoder()
        batches = []
        for i, payload in enumerate(payloads * 2):
            d.feed(convert(payload), EXP, 1_700_000_000_000)
            if i % 7 == 6:
                batches.append(d.flush().flows)
        batches.append(d.flush().flows)
        flows = {k: np.concatenate([b.columns[k] for b in batches]) for k in batches[0].columns}
        results.append((flows, d.stats[EXP].as_dict()))
    (flows, stats), (other, other_stats) = results
    assert other_stats == stats
    assert not [e for e in stats["errors"] if e.startswith("internal:")]
    assert flows.keys() == other.keys()
    for name, column in flows.items():
        assert np.array_equal(column, other[name]), name
