"""The capture ring (``collectors._native_capture``) as the agent uses it.

:data:`RECORD` is the numpy view of the C ``cap_record``; :func:`compile_bpf` compiles a tcpdump
filter with libpcap itself (``pcap_compile`` through ctypes: the maintained compiler, not ours)
into the classic BPF program the kernel runs on the ring. The program's accept instructions
return the snap length, which is how the kernel cuts every frame before it reaches the ring.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
from typing import Any

import numpy as np

#: One captured frame, as the C extension writes it (80 bytes, packed).
RECORD = np.dtype(
    [
        ("ts_ns", "<i8"),
        ("src_addr", "V16"),
        ("dst_addr", "V16"),
        ("wire_len", "<u4"),
        ("payload_len", "<u4"),
        ("src_port", "<u2"),
        ("dst_port", "<u2"),
        ("tcp_flags", "<u2"),
        ("etype", "<u2"),
        ("vlan", "<u2"),
        ("proto", "u1"),
        ("tos", "u1"),
        ("ttl", "u1"),
        ("direction", "u1"),
        ("payload_class", "u1"),
        ("sampled", "u1"),
        ("src_mac", "<u8"),
        ("dst_mac", "<u8"),
    ]
)
#: payload_class codes → names (the C enum).
PAYLOAD_CLASSES = ("none", "tls", "http", "dns", "text", "binary")
DIRECTIONS = ("from_pod", "to_pod")
#: pcap global header, Ethernet link type, microsecond stamps: what the L7 records are framed for.
_PCAP_MAGIC = 0xA1B2C3D4


def native() -> Any:
    """The C extension; ImportError when it was not built."""
    return importlib.import_module("collectors._native_capture")


class BpfError(ValueError):
    """A filter libpcap cannot compile."""


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


_libpcap: Any = None


def _pcap() -> Any:
    global _libpcap
    if _libpcap is None:
        name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
        lib = ctypes.CDLL(name)
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(_BpfProgram),
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_uint32,
        ]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        _libpcap = lib
    return _libpcap


def compile_bpf(expression: str, snaplen: int) -> bytes:
    """The classic BPF program (``struct sock_filter`` array) of a tcpdump ``expression``,
    returning at most ``snaplen`` bytes of each accepted frame."""
    lib = _pcap()
    handle = lib.pcap_open_dead(1, snaplen)  # DLT_EN10MB
    if not handle:
        raise BpfError("libpcap could not open a dead handle")
    prog = _BpfProgram()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), expression.encode(), 1, 0xFFFFFFFF) != 0:
            raise BpfError(f"bad capture filter {expression!r}: {lib.pcap_geterr(handle).decode()}")
        code = ctypes.string_at(prog.bf_insns, prog.bf_len * 8)
        lib.pcap_freecode(ctypes.byref(prog))
        return code
    finally:
        lib.pcap_close(handle)


def pcap_file(records: bytes, snaplen: int) -> bytes:
    """A pcap file around the ring's L7 pcap records."""
    header = np.array([(_PCAP_MAGIC, 2, 4, 0, 0, snaplen, 1)], dtype="<u4,<u2,<u2,<i4,<u4,<u4,<u4")
    return header.tobytes() + records


__all__ = ["DIRECTIONS", "PAYLOAD_CLASSES", "RECORD", "BpfError", "compile_bpf", "native", "pcap_file"]
