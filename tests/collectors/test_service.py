"""The UDP collector service: real sockets on loopback, garbage counted, good datagrams published."""

from __future__ import annotations

import socket
import time

import pytest

from collectors import metrics
from collectors.replay import load_payloads
from collectors.service import UdpCollector, parse_hostport
from netobs.config import CollectorConfig, InprocessTransportConfig, ListenerConfig
from netobs.transport.inprocess import InprocessTransport

SFLOW = "tests/testdata/ovs-sflow.pcap"


def run_collector(datagrams: list[bytes]) -> tuple[UdpCollector, int]:
    t = InprocessTransport(InprocessTransportConfig(max_batches=1000))
    c = UdpCollector(
        CollectorConfig(listeners=(ListenerConfig(listen="127.0.0.1:0"),), batch_max_delay_ms=50),
        t.producer(),
    )
    c.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in datagrams:
                s.sendto(d, c.addresses[0])
        time.sleep(0.5)
    finally:
        c.stop()
    consumer = t.consumer()
    rows = sum(m.table.num_rows for m in consumer.poll(0.1, 10_000))
    return c, rows


def errors_total() -> float:
    return sum(
        s.value for m in metrics.decode_errors.collect() for s in m.samples if s.name.endswith("_total")
    )


def test_garbage_is_counted_and_good_datagrams_still_flow():
    good = load_payloads(SFLOW)
    before = errors_total()
    garbage = [
        b"",
        b"\x00",
        b"\x00\x00\x00\x05" + b"\xff" * 40,
        b"\x00\x0a\x00\x10" + b"\x00" * 12,
        b"hello world" * 50,
    ]
    c, rows = run_collector(garbage + good + garbage)
    assert rows == c.published == 330  # every flow sample of the capture, the garbage notwithstanding
    assert c.lost == 0
    assert errors_total() - before >= 4


@pytest.mark.parametrize(
    "text, expected",
    [("0.0.0.0:6343", ("0.0.0.0", 6343)), ("[::]:4739", ("::", 4739)), (":2055", ("0.0.0.0", 2055))],
)
def test_parse_hostport(text, expected):
    assert parse_hostport(text) == expected


@pytest.mark.parametrize("text", ["6343", "host:", "host:port"])
def test_parse_hostport_rejects(text):
    with pytest.raises(ValueError):
        parse_hostport(text)


def test_busy_port_is_a_clear_error():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        t = InprocessTransport(InprocessTransportConfig())
        cfg = CollectorConfig(listeners=(ListenerConfig(listen=f"127.0.0.1:{port}", reuse_port=False),))
        with pytest.raises(OSError, match="cannot listen on"):
            UdpCollector(cfg, t.producer()).start()


def test_failed_start_can_be_stopped():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        t = InprocessTransport(InprocessTransportConfig())
        listeners = (
            ListenerConfig(listen="127.0.0.1:0"),
            ListenerConfig(listen=f"127.0.0.1:{port}", reuse_port=False),
        )
        c = UdpCollector(CollectorConfig(listeners=listeners), t.producer())
        with pytest.raises(OSError):
            c.start()
        c.stop()  # releases the first listener's socket without joining unstarted threads


def test_exporter_allowlist_drops_and_counts():
    t = InprocessTransport(InprocessTransportConfig(max_batches=100))
    cfg = CollectorConfig(
        listeners=(ListenerConfig(listen="127.0.0.1:0"),),
        batch_max_delay_ms=50,
        allowed_exporters=("10.0.0.0/8",),
    )
    c = UdpCollector(cfg, t.producer())
    c.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in load_payloads(SFLOW)[:10]:
                s.sendto(d, c.addresses[0])
        deadline = time.monotonic() + 5
        while c.rejected < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        c.stop()
    assert c.rejected == 10 and c.published == 0


def test_allowlist_admits_listed_loopback_and_rejects_garbage_cidr():
    t = InprocessTransport(InprocessTransportConfig(max_batches=100))
    c = UdpCollector(CollectorConfig(allowed_exporters=("127.0.0.0/8", "::1/128")), t.producer())
    assert c._allowed("127.0.0.1") and c._allowed("::ffff:127.0.0.1") and not c._allowed("192.0.2.1")
    with pytest.raises(ValueError, match="allowed_exporters"):
        UdpCollector(CollectorConfig(allowed_exporters=("not-a-cidr",)), t.producer())


def test_kernel_socket_drops_are_read():
    from collectors.sockstats import socket_drops

    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        rx.bind(("127.0.0.1", 0))
        assert socket_drops(rx) == 0
        for _ in range(200):  # never read: the small buffer overflows
            tx.sendto(b"x" * 1000, rx.getsockname())
        assert socket_drops(rx) > 0


def test_reuse_port_shares_one_port_between_collectors():
    """Two collectors (as two processes would) bound to one port with SO_REUSEPORT: the kernel
    spreads exporters (by source address and port) across them, and no datagram is lost."""
    t = InprocessTransport(InprocessTransportConfig(max_batches=1000))
    first = UdpCollector(
        CollectorConfig(listeners=(ListenerConfig(listen="127.0.0.1:0"),), batch_max_delay_ms=50),
        t.producer(),
    )
    first.start()
    port = first.addresses[0][1]
    second = UdpCollector(
        CollectorConfig(listeners=(ListenerConfig(listen=f"127.0.0.1:{port}"),), batch_max_delay_ms=50),
        t.producer(),
    )
    second.start()
    payload = load_payloads(SFLOW)[5]
    try:
        senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
        for s in senders:
            s.sendto(payload, ("127.0.0.1", port))
        time.sleep(0.5)
    finally:
        first.stop()
        second.stop()
        for s in senders:
            s.close()
    assert first.published > 0 and second.published > 0
    assert first.published + second.published == 16 * first_flows(payload)


def first_flows(payload: bytes) -> int:
    from collectors.decoder import Decoder

    return len(Decoder().decode(payload, "127.0.0.1", 0).flows)
