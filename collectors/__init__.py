"""Flow collectors: decode sFlow v5, IPFIX (with PSAMP), NetFlow v9 and v5 into columnar batches.

``Decoder`` is the entry point (protocol detection, per-exporter state and stats);
``collectors.jsonl`` is the offline ``netobs decode`` path over a capture file.
"""

from collectors._templates import Limits
from collectors.counters import COUNTER_COLUMNS, CounterBatch
from collectors.decoder import Decoded, Decoder, detect
from collectors.ipfix import IpfixDecoder
from collectors.jsonl import iter_records, write_jsonl
from collectors.netflow5 import Netflow5Decoder
from collectors.netflow9 import Netflow9Decoder
from collectors.packet import PacketInfo, parse_ethernet, parse_ip
from collectors.pcap import PcapReader, UdpDatagram, read_udp
from collectors.sflow import SflowDecoder
from collectors.stats import ExporterStats

__all__ = [
    "COUNTER_COLUMNS",
    "CounterBatch",
    "Decoded",
    "Decoder",
    "ExporterStats",
    "IpfixDecoder",
    "Limits",
    "Netflow5Decoder",
    "Netflow9Decoder",
    "PacketInfo",
    "PcapReader",
    "SflowDecoder",
    "UdpDatagram",
    "detect",
    "iter_records",
    "parse_ethernet",
    "parse_ip",
    "read_udp",
    "write_jsonl",
]
