"""Columnar flow batches: the unit that moves from decoder to transport to store.

A :class:`FlowBatch` is a set of equally long numpy columns named after
:data:`netobs.schema.FLOW_COLUMNS`. Columns not given are filled with zeros / empty
strings when the batch is turned into Arrow, so decoders only fill what they know.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from netobs import schema

_IPV4_PREFIX = b"\x00" * 10 + b"\xff\xff"


class FlowBatch:
    """Equally long numpy columns, one per known flow column."""

    __slots__ = ("columns", "length")

    def __init__(self, columns: Mapping[str, np.ndarray | list[Any]], length: int | None = None):
        cols: dict[str, np.ndarray] = {}
        for name, values in columns.items():
            dtype = _NUMPY.get(name)
            if dtype is None:
                raise KeyError(f"unknown flow column {name!r}")
            cols[name] = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=dtype)
        lengths = {len(a) for a in cols.values()}
        if length is None:
            if len(lengths) > 1:
                raise ValueError(f"columns of unequal length: {sorted(lengths)}")
            length = lengths.pop() if lengths else 0
        elif lengths and lengths != {length}:
            raise ValueError(f"columns of unequal length: {sorted(lengths)} (expected {length})")
        self.columns = cols
        self.length = length

    def __len__(self) -> int:
        return self.length

    @classmethod
    def empty(cls) -> FlowBatch:
        return cls({}, 0)

    @classmethod
    def concat(cls, batches: Iterable[FlowBatch]) -> FlowBatch:
        """Join batches; a column missing in some is zero-filled there."""
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        names = {n for b in batches for n in b.columns}
        out = {}
        for name in names:
            dtype = _NUMPY[name]
            out[name] = np.concatenate(
                [b.columns[name] if name in b.columns else _zeros(dtype, len(b)) for b in batches]
            )
        return cls(out, sum(len(b) for b in batches))

    def to_arrow(self, columns: tuple[schema.Column, ...] = schema.FLOW_COLUMNS) -> pa.RecordBatch:
        """Arrow record batch with every column of ``columns``, zero-filling the absent.

        Absent columns are slices of one cached array per column, and the schema is built once
        per column set: a batch of a few rows (one exporter of many, per round) then costs its
        present columns only, not ~60 array constructions."""
        n, present = self.length, self.columns
        arrays = [
            arrow_array(c, v, n) if (v := present.get(c.name)) is not None else _absent(c, n) for c in columns
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=_arrow_schema(columns))

    @classmethod
    def from_arrow(cls, rb: pa.RecordBatch | pa.Table) -> FlowBatch:
        cols = {}
        for name in rb.schema.names:
            col = schema.BY_NAME.get(name)
            if col is None:
                continue
            cols[name] = _from_arrow(col, rb.column(name))
        return cls(cols, rb.num_rows)


#: Column name → the numpy dtype decoders fill (Column.numpy, computed once).
_NUMPY: dict[str, np.dtype] = {c.name: c.numpy for c in schema.BY_NAME.values()}
#: id(Column) → an array of its absent value, sliced for each batch (grown by doubling). By id:
#: columns are module constants, and hashing a Column (its Arrow type included) costs more.
_ABSENT: dict[int, tuple[schema.Column, pa.Array]] = {}
_SCHEMAS: dict[int, tuple[tuple[schema.Column, ...], pa.Schema]] = {}


def _numpy(col: schema.Column) -> np.dtype:
    dtype = _NUMPY.get(col.name)
    return dtype if dtype is not None and col is schema.BY_NAME.get(col.name) else col.numpy


def _absent(col: schema.Column, n: int) -> pa.Array:
    known = _ABSENT.get(id(col))
    arr = known[1] if known is not None and known[0] is col else None
    if arr is None or len(arr) < n:
        arr = arrow_array(col, None, max(n, 2 * len(arr) if arr is not None else 1024))
        _ABSENT[id(col)] = (col, arr)  # the column kept: its id cannot be reused
    return arr.slice(0, n)


def _arrow_schema(columns: tuple[schema.Column, ...]) -> pa.Schema:
    known = _SCHEMAS.get(id(columns))
    if known is None or known[0] is not columns:  # (the tuple kept: its id cannot be reused)
        known = _SCHEMAS[id(columns)] = (columns, schema.arrow_schema(columns))
    return known[1]


def _zeros(dtype: np.dtype, n: int) -> np.ndarray:
    if dtype == np.dtype(object):
        return np.full(n, "", dtype=object)
    return np.zeros(n, dtype=dtype)


def arrow_array(col: schema.Column, values: np.ndarray | None, n: int) -> pa.Array:
    if values is None:
        if _numpy(col) == np.dtype(object):  # absent text (enrichment at the collector): 30x faster in C
            return pa.repeat(pa.scalar("", type=col.arrow), n)
        values = _zeros(col.numpy, n)
    elif values.dtype == object and n and _constant(values):  # one value (a type, no tunnel): 5x faster
        return pa.repeat(pa.scalar(values[0], type=col.arrow), n)
    if pa.types.is_fixed_size_binary(col.arrow):
        buf = np.ascontiguousarray(values).view(np.uint8).tobytes()
        return pa.FixedSizeBinaryArray.from_buffers(col.arrow, n, [None, pa.py_buffer(buf)])
    if pa.types.is_timestamp(col.arrow):
        return pa.array(values.astype("int64", copy=False), type=pa.int64()).cast(col.arrow)
    return pa.array(values, type=col.arrow)


def _constant(values: np.ndarray) -> bool:
    """Whether every item of an object column is its first one (the last compared first: cheap)."""
    first = values[0]
    return isinstance(first, str) and values[-1] == first and bool((values == first).all())


def conform(table: pa.Table, kind: str = schema.FLOWS) -> pa.Table:
    """``table`` with exactly the columns of ``kind``, in schema order and types.

    Batches from older producers may lack new columns (zero-filled here); columns this
    schema does not know are left out. Flow batches keep going through :class:`FlowBatch`.
    """
    columns = schema.KINDS[kind][0]
    target = schema.arrow_schema(columns, kind)
    if table.schema.equals(target, check_metadata=False):
        return table
    if kind == schema.FLOWS:
        return pa.Table.from_batches([FlowBatch.from_arrow(table).to_arrow()])
    n, names = table.num_rows, set(table.schema.names)
    arrays = [
        table.column(c.name).cast(c.arrow).combine_chunks() if c.name in names else arrow_array(c, None, n)
        for c in columns
    ]
    return pa.Table.from_arrays(arrays, schema=target)


def _from_arrow(col: schema.Column, arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_fixed_size_binary(col.arrow):
        width = col.arrow.byte_width
        raw = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
        raw = raw[arr.offset * width : (arr.offset + len(arr)) * width]
        return raw.view(col.numpy).copy()
    if pa.types.is_timestamp(col.arrow):
        arr = arr.cast(pa.int64())
    elif col.numpy == np.dtype(object):
        return np.asarray(arr.to_pylist(), dtype=object)
    values: np.ndarray = arr.to_numpy(zero_copy_only=False)
    return values


def ip_bytes(addr: str) -> bytes:
    """16-byte form of an IPv4 or IPv6 address (IPv4 mapped into IPv6)."""
    try:  # the usual forms, without ipaddress's parsing (a collector meets hundreds of exporters)
        return _IPV4_PREFIX + socket.inet_pton(socket.AF_INET, addr)
    except (OSError, TypeError):
        pass
    import ipaddress

    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        return _IPV4_PREFIX + ip.packed
    return ip.packed


def ip_str(raw: bytes) -> str:
    """Text form of a 16-byte address: dotted quad for IPv4-mapped addresses."""
    import ipaddress

    if raw[:12] == _IPV4_PREFIX:
        return str(ipaddress.IPv4Address(raw[12:]))
    return str(ipaddress.IPv6Address(raw))


def mac_str(value: int) -> str:
    """aa:bb:cc:dd:ee:ff form of a 48-bit MAC number."""
    return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -8, -8))
