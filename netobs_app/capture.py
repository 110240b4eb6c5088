"""A capture of export datagrams, decoded datagram by datagram (``decode``, ``ingest``, scenarios)."""

from __future__ import annotations

from collections.abc import Iterator

from collectors.counters import CounterBatch
from collectors.decoder import Decoder
from collectors.pcap import PcapReader
from netobs.batch import FlowBatch
from netobs_app.settings import Settings


def decoded(path: str, settings: Settings | None = None) -> Iterator[tuple[FlowBatch, CounterBatch, int]]:
    """(flows, counters, rejects) per datagram of a capture, template state kept across it;
    with ``settings`` the collector section's sampling rules and limits apply."""
    decoder = Decoder.from_config(settings.collector) if settings is not None else Decoder()
    for d in PcapReader(path):
        out = decoder.decode(
            d.payload, d.src_ip, d.timestamp_ns // 1_000_000, session=f"{d.src_ip}:{d.src_port}"
        )
        yield out.flows, out.counters, sum(out.errors.values())
