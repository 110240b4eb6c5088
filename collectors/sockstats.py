"""Kernel-side health of a listening UDP socket: datagrams the kernel dropped for it.

Linux counts, per socket, the datagrams it discarded because the receive buffer was full
(the last column of ``/proc/net/udp`` and ``/proc/net/udp6``, matched by the socket's inode).
A collector that falls behind loses data there first, silently unless someone reads it.
"""

from __future__ import annotations

import os
import socket


def socket_drops(sock: socket.socket, proc_root: str = "/proc/net") -> int | None:
    """Datagrams the kernel dropped for ``sock`` so far; None when the kernel does not say."""
    try:
        inode = os.fstat(sock.fileno()).st_ino
    except OSError:
        return None
    for name in ("udp", "udp6"):
        try:
            with open(os.path.join(proc_root, name)) as f:
                next(f, None)  # header
                for line in f:
                    fields = line.split()
                    if len(fields) >= 13 and fields[9] == str(inode):
                        return int(fields[12])
        except (OSError, ValueError):
            continue
    return None


def receive_buffer(sock: socket.socket) -> int:
    """The receive buffer the kernel granted (it may cap what was asked, see net.core.rmem_max)."""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
