"""Enrichment of pod packet samples and L7 conversations: both ends named like flows.

The same time-versioned index as flows (:class:`pipeline.enrich.Enricher`), at the packet's
time (``packet_time``; ``first_seen`` for L7 rows), for the attributes of
:data:`netobs.schema.SAMPLE_ATTRIBUTES`. Vectorized; no Python loop per row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from netobs import schema
from netobs.observations import ms_column
from pipeline.enrich import Enricher, _column, _set
from pipeline.lookups import Addresses, clip_times


def sample_transform(enricher: Enricher):  # type: ignore[no-untyped-def]
    """The pipeline transform of both sample kinds."""

    def enrich(table: pa.Table) -> pa.Table:
        tab = enricher.tables()
        name = "packet_time" if "packet_time" in table.schema.names else "first_seen"
        times = ms_column(table, name)
        if times is None:
            times = np.zeros(table.num_rows, dtype=np.int64)
        received = ms_column(table, "time_received")
        if received is not None:
            times = np.where(times > 0, times, received)
        times = clip_times(times)
        out = table
        for end in ("src", "dst"):
            codes = enricher.resolve(tab, Addresses.from_arrow(table.column(f"{end}_addr")), times)
            for attr in schema.SAMPLE_ATTRIBUTES:
                out = _set(out, f"{end}_{attr}", _column(tab.dicts[attr], codes[attr], False))
        return out

    return enrich


__all__ = ["sample_transform"]
