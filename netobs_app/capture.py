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


def decoded_batches(
    path: str, settings: Settings | None = None, every: int = 512
) -> Iterator[tuple[FlowBatch, CounterBatch, int, int]]:
    """(flows, counters, rejects, datagrams) per ``every`` datagrams of a capture: the decoder is fed
    datagram by datagram (each with its own receive time and session) and flushed once per batch,
    as the collector service does; per-datagram flushes cost more than the decoding of a small
    datagram (a 21-day scenario bank is millions of them)."""
    decoder = Decoder.from_config(settings.collector) if settings is not None else Decoder()
    n = 0
    for d in PcapReader(path):
        decoder.feed(d.payload, d.src_ip, d.timestamp_ns // 1_000_000, session=f"{d.src_ip}:{d.src_port}")
        n += 1
        if n == every:
            out = decoder.flush()
            yield out.flows, out.counters, sum(out.errors.values()), n
            n = 0
    if n:
        out = decoder.flush()
        yield out.flows, out.counters, sum(out.errors.values()), n
