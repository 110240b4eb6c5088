"""``netobs decode``: a capture of export datagrams to one JSON-ready dict per record.

The offline path, so turning batches into dicts is fine here. Datagrams may use any UDP
port: the protocol is detected from each payload, and template state is kept per
exporter (source address and port) and observation domain across the whole file.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO

from collectors.counters import CounterBatch
from collectors.decoder import Decoder
from collectors.pcap import PcapReader
from netobs.batch import FlowBatch, ip_str, mac_str

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMES = ("time_received", "flow_start", "flow_end")
_ADDRS = ("exporter", "src_addr", "dst_addr", "tunnel_src", "tunnel_dst", "next_hop")
_MACS = ("src_mac", "dst_mac")
_FLOW_KEYS = (
    "kind",
    "type",
    "exporter",
    "observation_domain",
    "time_received",
    "flow_start",
    "flow_end",
    "sampling_rate",
    "src_addr",
    "dst_addr",
    "src_port",
    "dst_port",
    "proto",
    "etype",
    "packets",
    "bytes",
    "in_if",
    "out_if",
    "direction",
    "tcp_flags",
    "src_mac",
    "dst_mac",
    "vlan",
    "tos",
    "tunnel_type",
    "tunnel_id",
    "tunnel_src",
    "tunnel_dst",
    "tunnel_ovn_ingress_port",
    "tunnel_ovn_egress_port",
    "next_hop",
    "src_as",
    "dst_as",
    "src_mask",
    "dst_mask",
    "observation_point",
    "biflow",
    "biflow_direction",
)


_ISO_MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z, datetime's first instant
_ISO_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, its last


def iso_ms(ms: int) -> str | None:
    """ISO-8601 UTC with milliseconds: ``2026-11-30T05:19:39.123Z``; None (JSON null) for a
    time no date can show. (The decoders keep flow times in range: collectors._times.)"""
    ms = int(ms)
    if not _ISO_MIN_MS <= ms <= _ISO_MAX_MS:
        return None
    t = _EPOCH + timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def iter_records(pcap_path: str | os.PathLike, decoder: Decoder | None = None) -> Iterator[dict]:
    """One dict per decoded flow (``kind: flow``) or counter (``kind: counter``) record."""
    decoder = decoder or Decoder()
    for d in PcapReader(pcap_path):
        decoded = decoder.decode(
            d.payload, d.src_ip, d.timestamp_ns // 1_000_000, session=f"{d.src_ip}:{d.src_port}"
        )
        yield from flow_dicts(decoded.flows)
        yield from counter_dicts(decoded.counters)


def flow_dicts(batch: FlowBatch) -> Iterator[dict]:
    """JSON-ready flow dicts: text addresses, MACs and times."""
    if not len(batch):
        return
    cols = {name: batch.columns[name].tolist() for name in _FLOW_KEYS[1:] if name in batch.columns}
    for name in _ADDRS:
        if name in cols:
            cols[name] = [ip_str(a) for a in cols[name]]
    for name in _MACS:
        if name in cols:
            cols[name] = [mac_str(m) for m in cols[name]]
    for name in _TIMES:
        if name in cols:
            cols[name] = [iso_ms(t) for t in cols[name]]
    for i in range(len(batch)):
        row = {"kind": "flow"}
        row.update((name, values[i]) for name, values in cols.items())
        yield row


def counter_dicts(batch: CounterBatch) -> Iterator[dict]:
    """JSON-ready counter dicts (kind ``counter``)."""
    for row in batch.rows():
        row["time_received"] = iso_ms(row["time_received"])
        row["exporter"] = ip_str(row["exporter"])
        yield {"kind": "counter", **row}


def write_jsonl(path: str | os.PathLike | Iterable[dict], out: str | os.PathLike | IO[str] = "-") -> int:
    """Write records as JSON lines to ``out`` (a path, a text stream, or "-" for stdout).

    ``path`` is a capture file (decoded with :func:`iter_records`) or records already
    decoded. Returns the number of lines written.
    """
    records = iter_records(path) if isinstance(path, str | os.PathLike) else path
    if isinstance(out, str | os.PathLike) and str(out) != "-":
        with open(out, "w", encoding="utf-8") as f:
            return _write(records, f)
    return _write(records, sys.stdout if isinstance(out, str | os.PathLike) else out)


def _write(records: Iterable[dict], f: IO[str]) -> int:
    n = 0
    for rec in records:
        f.write(json.dumps(rec, separators=(",", ":")))
        f.write("\n")
        n += 1
    return n
