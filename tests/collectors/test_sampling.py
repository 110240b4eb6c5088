"""Sampling rates the exports do not carry: per-exporter rules, the collector default, and the
count of flows left without any rate (never silently 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from collectors.decoder import Decoder
from collectors.pcap import PcapReader
from collectors.sampling import SamplingDefaults
from netobs.batch import ip_bytes
from netobs.config import ConfigError
from netobs_app.settings import load

DATA = Path(__file__).resolve().parent.parent / "testdata"


def decode_capture(name: str, decoder: Decoder):
    """All flows of a capture through one decoder, and the unsampled counts of every flush."""
    unsampled: dict[str, int] = {}
    rates, exporters = [], []
    for d in PcapReader(DATA / name):
        out = decoder.decode(
            d.payload, d.src_ip, d.timestamp_ns // 1_000_000, session=f"{d.src_ip}:{d.src_port}"
        )
        for exp, n in out.unsampled.items():
            unsampled[exp] = unsampled.get(exp, 0) + n
        if len(out.flows):
            rates.append(out.flows.columns["sampling_rate"])
            exporters.append(out.flows.columns["exporter"])
    return np.concatenate(rates), np.concatenate(exporters), unsampled


def columns(rates: list[int], exporters: list[str]) -> dict[str, np.ndarray]:
    ex = np.frombuffer(b"".join(ip_bytes(e) for e in exporters), dtype="V16").copy()
    return {"sampling_rate": np.array(rates, dtype=np.uint32), "exporter": ex}


def test_rules_in_order_then_default_then_unknown_counted():
    s = SamplingDefaults([(["10.0.0.0/8"], 1), (["10.9.0.0/16", "2001:db8::/32"], 512)], default=64)
    cols = columns([0, 0, 0, 0, 100], ["10.9.1.1", "2001:db8::7", "192.0.2.1", "10.1.1.1", "10.1.1.1"])
    assert s.apply(cols) == {}
    # the first matching rule wins (10.9.1.1 is in 10.0.0.0/8 first); the datagram's 100 stays
    assert cols["sampling_rate"].tolist() == [1, 512, 64, 1, 100]

    none = SamplingDefaults([(["10.0.0.0/8"], 8)])
    cols = columns([0, 0, 0, 5], ["192.0.2.1", "192.0.2.1", "10.0.0.1", "192.0.2.2"])
    assert none.apply(cols) == {"192.0.2.1": 2}
    assert cols["sampling_rate"].tolist() == [0, 0, 8, 5]


def test_strided_exporter_column():
    """A decoder may hand a strided view (every other row of a wider buffer); seen in CI as a
    lost flush from a mutated sFlow datagram."""
    wide = np.frombuffer(b"".join(ip_bytes(e) for e in ["10.0.0.1", "192.0.2.9"] * 3), dtype="V16")
    for rates in ([0, 0, 0], [0, 7, 0]):
        cols = {"sampling_rate": np.array(rates, dtype=np.uint32), "exporter": wide[::2]}
        assert not cols["exporter"].flags.c_contiguous
        assert SamplingDefaults([(["10.0.0.0/8"], 4)]).apply(cols) == {}
        assert cols["sampling_rate"].tolist() == [4, rates[1] or 4, 4]
    cols = {"sampling_rate": np.zeros(3, dtype=np.uint32), "exporter": wide[1::2]}
    assert SamplingDefaults([(["10.0.0.0/8"], 4)]).apply(cols) == {"192.0.2.9": 3}


def test_bad_rules_are_refused():
    with pytest.raises(ValueError, match="not an address or CIDR: 'ten/8'"):
        SamplingDefaults([(["ten/8"], 4)])
    with pytest.raises(ValueError, match=">= 1"):
        SamplingDefaults([(["10.0.0.0/8"], 0)])


def test_ovs_ipfix_without_rate_is_counted_unless_configured():
    # OVS bridge IPFIX exports counts already multiplied by its sampling period and no rate.
    rates, exporters, unsampled = decode_capture("ovs-sampled-ipfix.pcap", Decoder())
    assert len(rates) and (rates == 0).all()
    assert sum(unsampled.values()) == len(rates)

    exporter = next(iter(unsampled))
    configured = Decoder(exporter_sampling=[([exporter], 1)])
    rates, _, unsampled = decode_capture("ovs-sampled-ipfix.pcap", configured)
    assert (rates == 1).all() and unsampled == {}


def test_the_export_rate_wins_over_configuration():
    plain, _, _ = decode_capture("ovs-sampled-sflow.pcap", Decoder())
    assert (plain == 10).all()  # OVS sFlow at 1:10 carries its rate in every sample
    ruled, _, unsampled = decode_capture(
        "ovs-sampled-sflow.pcap", Decoder(exporter_sampling=[(["0.0.0.0/0"], 999)])
    )
    assert (ruled == 10).all() and unsampled == {}


def test_config_section(tmp_path, monkeypatch):
    good = tmp_path / "good.yaml"
    good.write_text(
        "collector:\n  exporter_sampling:\n"
        "    - {exporters: [192.0.2.0/24], sampling_rate: 1, note: OVS IPFIX is pre-scaled}\n"
        "    - {exporters: ['2001:db8::1'], sampling_rate: 4096}\n"
    )
    cfg = load(good).collector
    decoder = Decoder.from_config(cfg)
    cols = columns([0, 0], ["192.0.2.7", "2001:db8::1"])
    decoder.sampling.apply(cols)
    assert cols["sampling_rate"].tolist() == [1, 4096]

    bad = tmp_path / "bad.yaml"
    bad.write_text("collector:\n  exporter_sampling:\n    - {exporters: [nodes], sampling_rate: 1}\n")
    with pytest.raises(ConfigError, match="exporter_sampling"):
        load(bad)
    zero = tmp_path / "zero.yaml"
    zero.write_text("collector:\n  exporter_sampling:\n    - {exporters: [10.0.0.0/8], sampling_rate: 0}\n")
    with pytest.raises(ConfigError, match="sampling_rate"):
        load(zero)
