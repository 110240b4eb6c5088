"""The recvmmsg helper (collectors._native_recv) on real loopback sockets."""

import socket

import pytest

native = pytest.importorskip("collectors._native_recv")
recv_many = native.recv_many


def _receiver(family=socket.AF_INET, host="127.0.0.1"):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:  # dual stack: IPv4 sources arrive as ::ffff:a.b.c.d
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def _sender(host="127.0.0.1", family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((host, 0))
    return s


def _wait_readable(sock):
    import select

    assert select.select([sock], [], [], 2.0)[0], "nothing arrived"


def test_receives_in_order_with_the_source_address_text_recvfrom_gives():
    rx = _receiver()
    a, b = _sender("127.0.0.1"), _sender("127.0.0.2")
    port = rx.getsockname()[1]
    for i, s in enumerate((a, a, b, a)):
        s.sendto(bytes([i]) * (100 + i), ("127.0.0.1", port))
    _wait_readable(rx)
    got, truncated = recv_many(rx.fileno(), bytearray(4 * 2048), 4)
    assert truncated == 0
    assert [(p[0], len(p), src) for p, src in got] == [
        (0, 100, "127.0.0.1"),
        (1, 101, "127.0.0.1"),
        (2, 102, "127.0.0.2"),
        (3, 103, "127.0.0.1"),
    ]
    for s in (rx, a, b):
        s.close()


def test_datagrams_longer_than_a_slot_are_counted_not_delivered_cut():
    rx = _receiver()
    tx = _sender()
    port = rx.getsockname()[1]
    for size in (50, 300, 64):
        tx.sendto(b"x" * size, ("127.0.0.1", port))
    _wait_readable(rx)
    got, truncated = recv_many(rx.fileno(), bytearray(3 * 100), 3)  # slots of 100 bytes
    assert truncated == 1
    assert [len(p) for p, _ in got] == [50, 64]
    rx.close()
    tx.close()


def test_nothing_queued_is_an_empty_round():
    rx = _receiver()
    assert recv_many(rx.fileno(), bytearray(1024), 2) == ([], 0)
    rx.close()


def test_fewer_queued_than_slots_returns_what_is_there():
    rx = _receiver()
    tx = _sender()
    tx.sendto(b"only", rx.getsockname())
    _wait_readable(rx)
    got, truncated = recv_many(rx.fileno(), bytearray(8 * 512), 8)
    assert (got, truncated) == ([(b"only", "127.0.0.1")], 0)
    rx.close()
    tx.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_and_mapped_ipv4_sources_read_as_recvfrom_reads_them():
    rx = _receiver(socket.AF_INET6, "::")
    port = rx.getsockname()[1]
    v6 = _sender("::1", socket.AF_INET6)
    v4 = _sender("127.0.0.1")
    v6.sendto(b"six", ("::1", port))
    v4.sendto(b"four", ("127.0.0.1", port))
    v6.sendto(b"six again", ("::1", port))
    _wait_readable(rx)
    got, _ = recv_many(rx.fileno(), bytearray(4 * 512), 4)
    assert got == [(b"six", "::1"), (b"four", "::ffff:127.0.0.1"), (b"six again", "::1")]
    v4.sendto(b"check", ("127.0.0.1", port))  # the same text as Python's own recvfrom
    _wait_readable(rx)
    assert rx.recvfrom(100)[1][0] == "::ffff:127.0.0.1"
    for s in (rx, v6, v4):
        s.close()


def test_a_closed_socket_raises_oserror():
    rx = _receiver()
    fd = rx.fileno()
    rx.close()
    with pytest.raises(OSError):
        recv_many(fd, bytearray(1024), 1)
    with pytest.raises(OSError):
        recv_many(rx.fileno(), bytearray(1024), 1)  # -1 once closed


def test_bad_arguments_are_refused():
    rx = _receiver()
    with pytest.raises(ValueError):
        recv_many(rx.fileno(), bytearray(1024), 0)
    with pytest.raises(ValueError):
        recv_many(rx.fileno(), bytearray(1024), native.MAX_SLOTS + 1)
    with pytest.raises(ValueError):
        recv_many(rx.fileno(), bytearray(3), 4)  # slots of 0 bytes
    with pytest.raises(TypeError):
        recv_many(rx.fileno(), b"read-only", 1)
    rx.close()
