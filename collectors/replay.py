"""Replay the export datagrams of a capture to a collector over UDP.

For demos, benchmarks and re-feeding archived exports. Payloads are sent as captured;
the collector sees the replaying host as the exporter. ``rate`` bounds datagrams per
second (0 = as fast as the socket takes them).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from collectors.pcap import PcapReader


def load_payloads(path: str | Path) -> list[bytes]:
    """Every UDP payload of the capture, in order."""
    return [d.payload for d in PcapReader(path)]


def replay(path: str | Path, to: str, *, rate: float = 0, loops: int = 1) -> int:
    """Send the capture's payloads to ``to`` (host:port) ``loops`` times; returns datagrams sent."""
    host, _, port = to.rpartition(":")
    payloads = load_payloads(path)
    if not payloads:
        raise ValueError(f"{path}: no UDP datagrams in this capture")
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sent = 0
    interval = 1.0 / rate if rate > 0 else 0.0
    next_at = time.perf_counter()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((host.strip("[]"), int(port)))
        for _ in range(loops):
            for payload in payloads:
                if interval:
                    next_at += interval
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                sock.send(payload)
                sent += 1
    return sent
