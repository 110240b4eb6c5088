"""Row checks run before every insert, whatever the store: rows no store can take are set
aside with their reason (and quarantined by the pipeline) instead of failing their batch.

Times must lie within ClickHouse ``DateTime``'s range, 1970-01-01 .. 2106-02-07: the legacy
dialect stores them so, the rollups of the modern one round them to ``DateTime``, and a row
outside it makes the server refuse its whole block (or, embedded, makes later queries fail).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: First millisecond past ``DateTime``'s range (2106-02-07 06:28:16 UTC).
TIME_END_MS = (2**32) * 1000


@dataclass
class Invalid:
    reason: str
    detail: str
    mask: np.ndarray  # True for the rows concerned


def check(table: pa.Table) -> list[Invalid]:
    """Every kind of invalid value found in ``table`` (empty when all rows are fine)."""
    out: list[Invalid] = []
    for name, typ in zip(table.schema.names, table.schema.types, strict=True):
        if not pa.types.is_timestamp(typ):
            continue
        col = table.column(name)
        if typ.unit != "ms":
            col = col.cast(pa.timestamp("ms", tz=typ.tz), safe=False)
        ms = pc.fill_null(col.cast(pa.int64()), 0).to_numpy()
        bad = (ms < 0) | (ms >= TIME_END_MS)
        if bad.any():
            first = np.datetime_as_string(ms[bad][:1].astype("datetime64[ms]"))[0]
            out.append(
                Invalid(
                    "time_out_of_range",
                    f"{name} outside 1970-01-01..2106-02-07 in {int(bad.sum())} rows, e.g. {first}",
                    bad,
                )
            )
    return out
