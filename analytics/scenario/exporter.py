"""A synthetic IPFIX exporter: flow columns → RFC 7011 datagrams → a pcap file.

The scenario generator's flows reach netobs through the real path: they are encoded as
IPFIX (a data template plus an options template announcing the sampling interval, as a
sampling exporter sends them), written to a capture, and ingested like any archived export.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

DATA_TEMPLATE = 256
OPTIONS_TEMPLATE = 257
#: (information element, length) of the data template, in record order.
FIELDS = (
    (152, 8), (153, 8), (8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1),
    (10, 4), (14, 4), (61, 1), (2, 8), (1, 8),
)  # fmt: skip
RECORD = np.dtype(
    [("start", ">u8"), ("end", ">u8"), ("src", ">u4"), ("dst", ">u4"), ("sport", ">u2"), ("dport", ">u2"),
     ("proto", "u1"), ("flags", "u1"), ("in_if", ">u4"), ("out_if", ">u4"), ("direction", "u1"),
     ("packets", ">u8"), ("bytes", ">u8")]
)  # fmt: skip
MAX_RECORDS = 24  # 24 × 55 bytes keeps a datagram under a 1500-byte MTU


def _templates() -> bytes:
    body = struct.pack("!HH", DATA_TEMPLATE, len(FIELDS)) + b"".join(
        struct.pack("!HH", ie, n) for ie, n in FIELDS
    )
    tset = struct.pack("!HH", 2, 4 + len(body)) + body
    # Options template: scope observationDomainId (149), field samplingInterval (34).
    obody = struct.pack("!HHH", OPTIONS_TEMPLATE, 2, 1) + struct.pack("!HHHH", 149, 4, 34, 4)
    oset = struct.pack("!HH", 3, 4 + len(obody)) + obody
    return tset + oset


def _message(sets: bytes, export_s: int, seq: int, domain: int) -> bytes:
    return struct.pack("!HHIII", 10, 16 + len(sets), export_s, seq, domain) + sets


class Exporter:
    """One exporting node: keeps its sequence number and re-sends templates periodically."""

    def __init__(self, address: str, sampling: int, domain: int = 1, refresh_s: int = 600):
        self.address = address
        self.sampling = sampling
        self.domain = domain
        self.refresh_s = refresh_s
        self.sequence = 0
        self._last_templates = -(10**12)

    def datagrams(self, records: np.ndarray, export_s: int) -> list[bytes]:
        """Encode ``records`` (dtype :data:`RECORD`) exported at ``export_s``."""
        out = []
        if export_s - self._last_templates >= self.refresh_s:
            opt = struct.pack("!HHII", OPTIONS_TEMPLATE, 12, self.domain, self.sampling)
            out.append(_message(_templates() + opt, export_s, self.sequence, self.domain))
            self._last_templates = export_s
        for i in range(0, len(records), MAX_RECORDS):
            chunk = records[i : i + MAX_RECORDS]
            body = chunk.tobytes()
            out.append(
                _message(
                    struct.pack("!HH", DATA_TEMPLATE, 4 + len(body)) + body,
                    export_s,
                    self.sequence,
                    self.domain,
                )
            )
            self.sequence += len(chunk)
        return out


class PcapWriter:
    """Writes UDP datagrams as Ethernet/IPv4/UDP frames (exporter → collector) into a pcap."""

    def __init__(self, path: str | Path, collector: str = "127.0.0.1", port: int = 4739):
        self._f = open(path, "wb")  # noqa: SIM115 - closed by close()/context manager
        self._f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self._dst = bytes(int(x) for x in collector.split("."))
        self._port = port

    def write(self, ts_s: float, src: str, payload: bytes) -> None:
        src_b = bytes(int(x) for x in src.split("."))
        udp = struct.pack("!HHHH", 4739, self._port, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src_b, self._dst) + udp
        frame = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip
        sec = int(ts_s)
        self._f.write(struct.pack("<IIII", sec, int((ts_s - sec) * 1e6), len(frame), len(frame)) + frame)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
