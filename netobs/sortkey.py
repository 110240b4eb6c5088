"""Order a batch by its table's sorting key before the insert.

A MergeTree insert sorts every block by the table's ORDER BY before writing the part.
ClickHouse skips that sort when the block already is in order
(``MergeTreeDataWriterBlocksAlreadySorted``), and a block in key order is also cheaper to
write (runs of equal LowCardinality keys). Sorting in Arrow costs less than ClickHouse's
sort of the same rows, and the pipeline does it on its own thread while the previous batch
is being inserted, so the store's single insert thread does less.

This is an optimisation only: a batch this module cannot order (a key expression it does
not know) is inserted as it is and ClickHouse sorts it, as before. The order matches
ClickHouse's: strings by bytes with NULL as the empty string (the columns are not
Nullable), IPv6 as 16 big-endian bytes, DateTime64 by its integer value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_BUCKETS = {"toStartOfHour": 3_600_000, "toStartOfMinute": 60_000, "toStartOfDay": 86_400_000}
_CALL = re.compile(r"^(\w+)\((\w+)\)$")
_NAME = re.compile(r"^\w+$")


def sort_keys(table: pa.Table, order_by: Sequence[str]) -> list[np.ndarray] | None:
    """One numpy array per sort component, most significant first; None if not derivable."""
    keys: list[np.ndarray] = []
    for item in order_by:
        call = _CALL.match(item)
        if call and call.group(1) in _BUCKETS and call.group(2) in table.schema.names:
            millis = _millis(table.column(call.group(2)))
            if millis is None:
                return None
            keys.append(millis // _BUCKETS[call.group(1)])
        elif _NAME.match(item) and item in table.schema.names:
            parts = _column_key(table.column(item))
            if parts is None:
                return None
            keys += parts
        else:
            return None
    return keys


def presort(table: pa.Table, order_by: Sequence[str]) -> pa.Table:
    """``table`` in ``order_by`` order (stable), or unchanged if the key is not derivable."""
    if table.num_rows < 2:
        return table
    keys = sort_keys(table, order_by)
    if keys is None:
        return table
    order = np.lexsort(keys[::-1])  # lexsort: the last key is the primary one
    if np.all(order[1:] > order[:-1]):
        return table  # already in order
    return table.take(pa.array(order))


def _millis(col: pa.ChunkedArray) -> np.ndarray | None:
    if not pa.types.is_timestamp(col.type):
        return None
    values: np.ndarray = pc.fill_null(col.cast(pa.int64()), 0).to_numpy()
    scale = {"s": 1000, "ms": 1, "us": -1000, "ns": -1_000_000}[col.type.unit]
    return values * scale if scale > 0 else values // -scale


def _column_key(col: pa.ChunkedArray) -> list[np.ndarray] | None:
    typ = col.type
    if pa.types.is_dictionary(typ) and _is_string(typ.value_type):
        return [_dictionary_rank(col)]
    if _is_string(typ):
        return [_dense_rank(pc.fill_null(col, ""))]
    if pa.types.is_timestamp(typ) or pa.types.is_integer(typ):
        return [pc.fill_null(col, 0).cast(pa.int64()).to_numpy()]
    if pa.types.is_fixed_size_binary(typ) and typ.byte_width == 16:  # IPv6
        words = _fixed16(col)
        return [words[:, 0], words[:, 1]]
    return None


def _is_string(typ: pa.DataType) -> bool:
    return bool(pa.types.is_string(typ) or pa.types.is_large_string(typ))


def _dense_rank(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.rank(values, sort_keys="ascending", tiebreaker="dense").to_numpy())


def _dictionary_rank(col: pa.ChunkedArray) -> np.ndarray:
    """Rank of each row's string among all strings; NULL (and a NULL entry) ranks as ''."""
    chunk = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)  # one dictionary
    values = pc.fill_null(chunk.dictionary, "")
    ranks = _dense_rank(pa.concat_arrays([pa.array([""], values.type), values]))
    indices = pc.fill_null(pc.add(chunk.indices.cast(pa.int64()), 1), 0).to_numpy()
    ranked: np.ndarray = ranks[indices]
    return ranked


def _fixed16(col: pa.ChunkedArray) -> np.ndarray:
    """(n, 2) big-endian uint64 words of a 16-byte column; NULL as zeros."""
    out = []
    for chunk in col.chunks:
        if len(chunk) == 0:
            continue
        data = np.frombuffer(chunk.buffers()[1], dtype=">u8")[
            chunk.offset * 2 : (chunk.offset + len(chunk)) * 2
        ]
        words = data.reshape(-1, 2).astype(np.uint64)
        if chunk.null_count:
            words[np.asarray(chunk.is_null().to_numpy(zero_copy_only=False))] = 0
        out.append(words)
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.uint64)
