"""Interface counter records (sFlow counter samples), as a small columnar batch.

One row per sFlow counter sample with a generic interface record (0:1, the RFC 2863
ifTable subset), plus the Ethernet errors (0:2, dot3StatsTable) and OVS's OpenFlow
datapath / port number and port name (0:1004, 0:1005) when the sample has them (0
and '' otherwise). Packet columns are the sums of the unicast, multicast and broadcast
counters; a counter the agent marks unknown (all ones, as OVS does for broadcast and
multicast) counts as 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from collectors._sflow_counters import ETHERNET_NAMES

#: name → numpy dtype, in row order. ``exporter`` is the 16-byte address (IPv4 mapped).
COUNTER_COLUMNS: dict[str, np.dtype] = {
    name: np.dtype(dt)
    for name, dt in (
        ("time_received", "int64"),
        ("type", object),
        ("exporter", "V16"),
        ("observation_domain", "uint32"),
        ("source_id", "uint32"),
        ("if_index", "uint32"),
        ("if_type", "uint32"),
        ("if_speed", "uint64"),
        ("if_direction", "uint32"),
        ("if_status", "uint32"),
        ("in_octets", "uint64"),
        ("in_packets", "uint64"),
        ("in_errors", "uint32"),
        ("in_discards", "uint32"),
        ("out_octets", "uint64"),
        ("out_packets", "uint64"),
        ("out_errors", "uint32"),
        ("out_discards", "uint32"),
    )
    + tuple((name, "uint32") for name in ETHERNET_NAMES)
    + (("of_dpid", "uint64"), ("of_port", "uint32"), ("if_name", object))
}
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
        return cls({}, 0)

    @classmethod
    def concat(cls, batches: Iterable[CounterBatch]) -> CounterBatch:
        """Join batches (all built by the same decoder, so with the same columns)."""
        batches = [b for b in batches if len(b)]
        if len(batches) <= 1:
            return batches[0] if batches else cls.empty()
        names = batches[0].columns.keys()
        return cls({n: np.concatenate([b.columns[n] for b in batches]) for n in names})

    def rows(self) -> Iterator[dict]:
        """One dict per record (offline use: ``netobs decode``, tests)."""
        cols = {n: self.columns[n].tolist() for n in self.columns}
        for i in range(self.length):
            yield {n: v[i] for n, v in cols.items()}
