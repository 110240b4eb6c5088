"""The range a flow time must fall in, and the guard that keeps records with absurd times.

Exporters send times relative to their own clocks (sysUpTime, systemInitTimeMilliseconds,
export time minus a delta): a wrong boot time, a wrapped counter or a corrupt field turns
them into dates thousands of years away, which no store or date library can represent.
Such a time is replaced by the time the collector received the datagram and the record
is counted (``<protocol>:time_out_of_range``): the record keeps its counters, and one bad
record never costs the others of its batch.
"""

from __future__ import annotations

import numpy as np

#: Accepted flow times, in ms since the epoch: 1970-01-01 up to (not including) 2200-01-01
#: (inside ClickHouse DateTime64(3)'s range and pandas' nanosecond one).
TIME_MIN_MS = 0
TIME_MAX_MS = 7_258_118_400_000


def guard_times(cols: dict[str, np.ndarray]) -> np.ndarray | None:
    """Replace flow_start / flow_end outside the accepted range by time_received, in place.

    Returns which records had at least one such time (None: none, the columns are untouched).
    """
    received = cols["time_received"]
    bad_any = None
    for name in ("flow_start", "flow_end"):
        t = cols.get(name)
        if t is None:
            continue
        bad = (t < TIME_MIN_MS) | (t >= TIME_MAX_MS)
        if bad.any():
            cols[name] = np.where(bad, received, t)
            bad_any = bad if bad_any is None else bad_any | bad
    return bad_any
