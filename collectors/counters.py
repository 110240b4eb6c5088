"""Interface counter records (sFlow counter samples), as a small columnar batch.

One row per sFlow counter sample with a generic interface record (0:1, the RFC 2863
ifTable subset), plus the Ethernet errors (0:2, dot3StatsTable) and OVS's OpenFlow
datapath / port number and port name (0:1004, 0:1005) when the sample has them (0
and '' otherwise). ``in_packets``/``out_packets`` are the sums of the unicast, multicast
and broadcast counters, which are also kept one by one; a counter the agent marks
unknown (all ones, as OVS does for broadcast and multicast) counts as 0. The columns are
``netobs.schema.COUNTER_COLUMNS``; the batch travels as its own record kind
(:func:`CounterBatch.to_arrow`) into the ``interface_counters`` table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa

from netobs import schema
from netobs.batch import arrow_array

#: name → numpy dtype, in row order. ``exporter`` is the 16-byte address (IPv4 mapped).
COUNTER_COLUMNS: dict[str, np.dtype] = schema.numpy_dtypes(schema.COUNTER_COLLECT_COLUMNS)
COUNTER_NAMES: tuple[str, ...] = tuple(COUNTER_COLUMNS)


class CounterBatch:
    """Equally long numpy columns named after :data:`COUNTER_COLUMNS`."""

    __slots__ = ("columns", "length")

    def __init__(self, columns: dict[str, np.ndarray], length: int | None = None):
        unknown = set(columns) - set(COUNTER_COLUMNS)
        if unknown:
            raise KeyError(f"unknown counter columns {sorted(unknown)}")
        lengths = {len(a) for a in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of unequal length: {sorted(lengths)}")
        self.columns = columns
        self.length = length if length is not None else (lengths.pop() if lengths else 0)

    def __len__(self) -> int:
        return self.length

    @classmethod
    def empty(cls) -> CounterBatch:
        empty = object.__new__(cls)  # (no columns to check: a flush per datagram makes one)
        empty.columns, empty.length = {}, 0
        return empty

    @classmethod
    def concat(cls, batches: Iterable[CounterBatch]) -> CounterBatch:
        """Join batches (all built by the same decoder, so with the same columns)."""
        batches = [b for b in batches if len(b)]
        if len(batches) <= 1:
            return batches[0] if batches else cls.empty()
        names = batches[0].columns.keys()
        return cls({n: np.concatenate([b.columns[n] for b in batches]) for n in names})

    def to_arrow(self) -> pa.RecordBatch:
        """Arrow record batch of the ``counters`` kind: every collect column, zero-filled when absent."""
        cols = schema.COUNTER_COLLECT_COLUMNS
        arrays = [arrow_array(c, self.columns.get(c.name), self.length) for c in cols]
        return pa.RecordBatch.from_arrays(arrays, schema=schema.arrow_schema(cols, schema.COUNTERS))

    def rows(self) -> Iterator[dict]:
        """One dict per record (offline use: ``netobs decode``, tests)."""
        cols = {n: self.columns[n].tolist() for n in self.columns}
        for i in range(self.length):
            yield {n: v[i] for n, v in cols.items()}
