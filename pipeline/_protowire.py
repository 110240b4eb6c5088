"""Protobuf wire format of many small flat messages, parsed at once with numpy.

Flow exporters' protobuf messages (goflow2's ``FlowMessage``) are flat: scalar varints,
a few byte strings and packed repeated scalars. Parsing them one by one costs microseconds
of Python per field; here step k reads the k-th field of EVERY message in a handful of
numpy operations and scatters it into its column, so the cost is per field position,
not per flow. Every malformed message
(truncated or overlong varint, a length past its end, field number 0, a group or an
unknown wire type) is flagged with a reason and its fields dropped; the others are kept.

See https://protobuf.dev/programming-guides/encoding/ for the format.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VARINT, I64, LEN, I32 = 0, 1, 2, 5
#: Reasons a message is malformed, by code (0: fine).
REASONS = (
    "",
    "truncated or overlong varint",
    "field runs past the end of the message",
    "field number 0",
    "unsupported wire type (group or reserved)",
)
_U64 = np.uint64
_SHIFTS = (7 * np.arange(10)).astype(_U64)


@dataclass
class Parsed:
    """The wanted fields of every message, one row per message (absent: 0; repeated: the last).

    ``values[:, k]`` is varint field ``varint_fields[k]``; ``offsets[:, k]``/``lengths[:, k]``
    locate the payload of length-delimited field ``len_fields[k]`` in ``buf``. ``bad`` holds
    a reason code per message (index into :data:`REASONS`), ``wrong_wire`` marks messages
    where a wanted field came with another wire type than expected. Other fields are skipped.
    """

    buf: np.ndarray
    values: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    bad: np.ndarray
    wrong_wire: np.ndarray


def _slots(numbers: tuple[int, ...], size: int) -> np.ndarray:
    lut = np.full(size, len(numbers), dtype=np.int64)
    lut[list(numbers)] = np.arange(len(numbers))
    return lut


def varints(buf: np.ndarray, pos: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Values and byte lengths of the varints at ``pos``; length 0 where none ends within ``width``.

    Byte k is read only for the varints still going on after k bytes, so the cost follows
    the bytes there are. ``buf`` must be padded with ``width`` bytes past the last position.
    """
    b = buf[pos]
    value = (b & 0x7F).astype(_U64)
    length = np.ones(len(pos), dtype=np.int64)
    going = np.flatnonzero(b & 0x80)
    k = 1
    while going.size and k < width:
        b = buf[pos[going] + k]
        value[going] |= (b & 0x7F).astype(_U64) << _SHIFTS[k]
        length[going] += 1
        going = going[(b & 0x80) != 0]
        k += 1
    length[going] = 0
    return value, length


def _tags(buf: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Field tags at ``pos``: one or two bytes for field numbers below 2048, read without a loop."""
    b0 = buf[pos].astype(_U64)
    b1 = buf[pos + 1].astype(_U64)
    two = b0 >= 0x80
    tag = np.where(two, (b0 & _U64(0x7F)) | (b1 & _U64(0x7F)) << _U64(7), b0)
    length = 1 + two.astype(np.int64)
    longer = np.flatnonzero(two & (b1 >= 0x80))
    if longer.size:  # field numbers of 2048 and more: rare, read in full
        tag[longer], length[longer] = varints(buf, pos[longer], 5)
    return tag, length


def parse(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    varint_fields: tuple[int, ...],
    len_fields: tuple[int, ...],
    absent: tuple[int, ...] | None = None,
) -> Parsed:
    """The wanted fields of the messages ``buf[starts[i]:ends[i]]`` (``buf`` padded by 16 zero bytes).

    Each step reads the next field of every message still going on and scatters it straight
    into its column, so the cost is a few numpy operations per field position. ``absent``
    gives per varint field the value of messages without it (default 0, as proto3 omits zeros).
    """
    n = len(starts)
    pos = starts.astype(np.int64)
    ends = ends.astype(np.int64)
    bad = np.zeros(n, dtype=np.int8)
    wrong = np.zeros(n, dtype=bool)
    size = max(varint_fields + len_fields) + 2
    vlut, llut = _slots(varint_fields, size), _slots(len_fields, size)
    nv, nl = len(varint_fields), len(len_fields)
    values = np.zeros((n, nv + 1), dtype=_U64)  # the last column takes what is not wanted
    if absent is not None:
        values[:, :nv] = np.asarray(absent, dtype=_U64)
    offsets = np.zeros((n, nl + 1), dtype=np.int64)
    lengths = np.zeros((n, nl + 1), dtype=np.int64)
    active = np.flatnonzero(pos < ends)
    while active.size:
        p, e = pos[active], ends[active]
        tag, tlen = _tags(buf, p)
        why = np.where(tlen == 0, 1, 0).astype(np.int8)
        p = p + tlen
        number, wire = (tag >> _U64(3)).astype(np.int64), (tag & _U64(7)).astype(np.int8)
        why[(number == 0) & (why == 0)] = 3
        number = np.minimum(number, size - 1)
        iv = np.flatnonzero((wire == VARINT) & (why == 0))
        if iv.size:
            v, vlen = varints(buf, p[iv], 10)
            p[iv] += vlen
            why[iv[vlen == 0]] = 1
            values[active[iv], vlut[number[iv]]] = v
        il = np.flatnonzero((wire == LEN) & (why == 0))
        if il.size:
            ln, llen = varints(buf, p[il], 5)
            why[il[llen == 0]] = 1
            start = p[il] + llen
            room = np.maximum(e[il] - start, 0).astype(_U64)
            over = ln > room
            why[il[over & (llen > 0)]] = 2
            ln = np.where(over, 0, ln).astype(np.int64)
            p[il] = start + ln
            slot = llut[number[il]]
            offsets[active[il], slot] = start
            lengths[active[il], slot] = ln
        p[wire == I64] += 8
        p[wire == I32] += 4
        why[((wire == 3) | (wire == 4) | (wire > I32)) & (why == 0)] = 4
        why[(p > e) & (why == 0)] = 2
        mismatch = ((wire == VARINT) & (llut[number] < nl)) | ((wire != VARINT) & (vlut[number] < nv))
        wrong[active[mismatch & (why == 0)]] = True
        failed = why != 0
        bad[active[failed]] = why[failed]
        pos[active] = p
        active = active[~failed & (p < e)]
    return Parsed(buf, values[:, :nv], offsets[:, :nl], lengths[:, :nl], bad, wrong)
