"""Turn per-record values into numpy columns (the per-record decoders' last step).

The sFlow decoder packs each sample into a fixed binary row with one precompiled
``struct`` (:class:`PackedRows`), so a flush is one ``np.frombuffer`` whose fields are
the columns: no dict, no per-field object, no transposition per sample. Rarer records
(counters) append plain tuples and are transposed once per flush with ``zip(*rows)``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from netobs import schema
from netobs.batch import FlowBatch

_DTYPES = schema.numpy_dtypes()
DIRECTION_NAMES = np.array(["ingress", "egress", "unknown"], dtype=object)


_STRUCT_CODES = {"u1": "B", "u2": "H", "u4": "I", "u8": "Q", "i8": "q", "V16": "16s"}


class PackedRows:
    """Fixed binary rows appended with one struct; read back as one structured array.

    ``fields`` are (name, numpy dtype) in row order; the struct is native-endian and
    unpadded so its layout is exactly the dtype's.
    """

    def __init__(self, fields: Sequence[tuple[str, np.dtype]]):
        codes = [_STRUCT_CODES[np.dtype(dt).str.lstrip("<>|=")] for _, dt in fields]
        self.struct = struct.Struct("=" + "".join(codes))
        offsets = [struct.calcsize("=" + "".join(codes[:i])) for i in range(len(codes))]
        self.dtype = np.dtype(
            {
                "names": [n for n, _ in fields],
                "formats": [np.dtype(dt) for _, dt in fields],
                "offsets": offsets,
                "itemsize": self.struct.size,
            }
        )
        self.pack = self.struct.pack
        self.buf = bytearray()

    def __len__(self) -> int:
        return len(self.buf) // self.struct.size

    def take(self) -> np.ndarray:
        """All rows as a structured array; the buffer starts empty again."""
        buf, self.buf = self.buf, bytearray()
        return np.frombuffer(buf, dtype=self.dtype)


def transpose(rows: Sequence[tuple], names: Sequence[str], dtypes: dict[str, np.dtype]) -> dict:
    """Columns named ``names`` (in row-tuple order) as numpy arrays of ``dtypes``."""
    if not rows:
        return {}
    out = {}
    for name, values in zip(names, zip(*rows, strict=True), strict=True):
        out[name] = column(values, dtypes[name])
    return out


def column(values: Sequence, dtype: np.dtype) -> np.ndarray:
    """One numpy column; fixed-size binary values are joined and viewed, not boxed."""
    if dtype.kind == "V":
        return np.frombuffer(b"".join(values), dtype=dtype).copy()
    if dtype == np.dtype(object):
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return arr
    return np.fromiter(values, dtype=dtype, count=len(values))


def repeat(values: Sequence, counts: Sequence[int], dtype: np.dtype) -> np.ndarray:
    """Per-datagram values (time, exporter...) expanded to one per record."""
    if len(values) == 1:  # the common case of one datagram per flush: skip the boxing
        if dtype.kind == "V":
            return np.frombuffer(bytearray(values[0] * counts[0]), dtype=dtype)
        if dtype == _OBJECT and isinstance(values[0], str):
            return constant_text(values[0], counts[0])
        return np.full(counts[0], values[0], dtype=dtype)
    return np.repeat(column(values, dtype), np.asarray(counts, dtype=np.int64))


_OBJECT = np.dtype(object)
_CONSTANTS: dict[str, np.ndarray] = {}
_MAX_CONSTANTS = 64  # distinct texts kept (protocol names, directions, tunnel types, '')
_MAX_CONSTANT_ROWS = 1 << 20


def constant_text(value: str, n: int) -> np.ndarray:
    """``n`` times ``value`` as a text column: a read-only view of one shared array.

    Filling an object column costs a reference per row (``np.full`` even builds a new
    str per row); the type of a batch, a direction or tunnel type shared by all its
    rows and the absent text columns are views of a cached array instead. Read-only,
    so that no consumer can change the shared values in place.
    """
    arr = _CONSTANTS.get(value)
    if arr is None or len(arr) < n:
        size = max(n, 1024, 2 * len(arr) if arr is not None else 0)
        if size > _MAX_CONSTANT_ROWS or (arr is None and len(_CONSTANTS) >= _MAX_CONSTANTS):
            fresh = np.empty(n, dtype=object)
            fresh.fill(value)
            return fresh
        arr = np.empty(size, dtype=object)
        arr.fill(value)
        arr.flags.writeable = False
        _CONSTANTS[value] = arr
    return arr[:n]


def text(names: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``names[codes]`` (an object array of texts indexed by small codes); when every row
    has the same code, a constant column (see :func:`constant_text`)."""
    if len(codes) and not (codes != codes[0]).any():
        return constant_text(names[codes[0]], len(codes))
    return names.take(codes)


def directions(codes: np.ndarray) -> np.ndarray:
    """IPFIX flowDirection codes (0 ingress, 1 egress, other unknown) as text."""
    return text(DIRECTION_NAMES, np.minimum(codes, 2))


def complete(cols: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Add every collect column a decoder did not fill: zeros, or '' for text (read-only
    views of shared arrays, see :func:`constant` and :func:`constant_text`)."""
    for name, dtype in _DTYPES.items():
        if name not in cols:
            cols[name] = constant_text("", n) if dtype == _OBJECT else constant(dtype, 0, n)
    return cols


_NUMBERS: dict[tuple[str, int], np.ndarray] = {}


def constant(dtype: np.dtype, value: int, n: int) -> np.ndarray:
    """``n`` times ``value`` (0, 1...) as a read-only view of one shared array of ``dtype``.

    The zeros of the columns a decoder does not fill, sFlow's packets of 1: a slice costs
    far less than a new array per flush, which matters when a flush follows every datagram.
    Large batches get their own array, as for :func:`constant_text`.
    """
    key = (dtype.str, value)  # (its text hashes faster than a dtype)
    arr = _NUMBERS.get(key)
    if arr is None or len(arr) < n:
        if n > _MAX_CONSTANT_ROWS:
            return np.zeros(n, dtype=dtype) if value == 0 else np.full(n, value, dtype=dtype)
        size = max(n, 1024, 2 * len(arr) if arr is not None else 0)
        arr = np.zeros(size, dtype=dtype) if value == 0 else np.full(size, value, dtype=dtype)
        arr.flags.writeable = False
        _NUMBERS[key] = arr
    return arr[:n]


def batch(cols: dict[str, np.ndarray], n: int) -> FlowBatch:
    """A FlowBatch of columns a decoder built from the schema's dtypes, every one ``n`` long:
    without the per-column checks of ``FlowBatch()`` (a measurable share of a flush per
    datagram); the tests check the decoders' batches (names, dtypes, lengths)."""
    out = _new_batch(FlowBatch)
    out.columns = cols
    out.length = n
    return out


_new_batch = object.__new__
