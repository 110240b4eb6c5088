"""Rows grouped by their ``exporter`` column, so that one flush can serve many datagrams.

The collector feeds many datagrams to its decoder, flushes once, and splits the rows back
by source. The ``exporter`` column holds the UDP source (IPv4 mapped into IPv6) for IPFIX,
PSAMP and NetFlow, so those rows go back by it; sFlow rows name the agent address the
datagram carries (which two agents may share), so the decoder counts whose they are instead
(``Decoded.sflow_sources``).
"""

from __future__ import annotations

import numpy as np

from netobs.batch import ip_bytes

_ZERO16 = bytes(16)
_PAIR = np.dtype([("hi", "u8"), ("lo", "u8")])  # a 16-byte address as two integers (equality only)


def address(exporter: str) -> bytes:
    """The 16-byte form of a source address (zeros for a source that is not an address, as
    collectors.decoder does)."""
    try:
        return ip_bytes(exporter)
    except ValueError:
        return _ZERO16


def groups(col: np.ndarray | None, n: int) -> tuple[np.ndarray | None, list[tuple[bytes | None, int, int]]]:
    """Rows grouped by their ``exporter`` address: (the order that makes each group contiguous,
    or None when the rows already are, [(address, start, end)] in that order). Vectorised: the
    work is in the rows, not in how many exporters there are."""
    if n == 0:
        return None, []
    if col is None:
        return None, [(None, 0, n)]
    if bool((col == col[0]).all()):  # the usual case, and cheap
        return None, [(col[0].tobytes(), 0, n)]
    pair = np.ascontiguousarray(col).view(_PAIR)
    _, hi = np.unique(pair["hi"], return_inverse=True)
    lo_values, lo = np.unique(pair["lo"], return_inverse=True)
    codes = hi.ravel() * len(lo_values) + lo.ravel()
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], n]
    firsts = np.ascontiguousarray(col[order[starts]]).view("V16").tolist()  # each group's address, as bytes
    return order, list(zip(firsts, starts.tolist(), ends.tolist(), strict=True))


def runs(col: np.ndarray | None, n: int) -> list[tuple[bytes | None, int, int]]:
    """Rows as runs of one ``exporter`` address, in row order: [(address, start, end)].

    One vectorised pass (no sort): a decoder's rows come in the order their datagrams were
    fed, and the collector feeds a round's datagrams exporter by exporter, so the runs are
    few (about an exporter per round). An address may have several runs."""
    if n == 0:
        return []
    if col is None:
        return [(None, 0, n)]
    pair = np.ascontiguousarray(col).view(_PAIR).ravel()
    hi, lo = pair["hi"], pair["lo"]
    starts = np.flatnonzero(np.r_[True, (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])])
    if len(starts) == 1:
        return [(col[0].tobytes(), 0, n)]
    ends = np.r_[starts[1:], n]
    firsts = np.ascontiguousarray(col[starts]).view("V16").ravel().tolist()  # each run's address, as bytes
    return list(zip(firsts, starts.tolist(), ends.tolist(), strict=True))


def split(columns: dict[str, np.ndarray], n: int) -> list[tuple[bytes | None, dict[str, np.ndarray], int]]:
    """(row address, columns, rows) per distinct ``exporter`` value, rows kept in order.

    The address is None when the rows have no exporter column.
    """
    col = columns.get("exporter")
    if n == 0:
        return []
    if col is None:
        return [(None, columns, n)]
    if bool((col == col[0]).all()):  # the usual case, and cheap
        return [(col[0].tobytes(), columns, n)]
    pair = np.ascontiguousarray(col).view(_PAIR)
    _, hi = np.unique(pair["hi"], return_inverse=True)
    lo_values, lo = np.unique(pair["lo"], return_inverse=True)
    codes = hi.ravel() * len(lo_values) + lo.ravel()
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], n]
    taken = {name: values[order] for name, values in columns.items()}
    return [
        (col[order[s]].tobytes(), {name: v[s:e] for name, v in taken.items()}, int(e - s))
        for s, e in zip(starts, ends, strict=True)
    ]
