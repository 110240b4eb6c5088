"""Which exporter each decoded row belongs to, so that one flush can serve a whole round.

The collector feeds every datagram of a drained round to its decoder, flushes once, and
splits the rows back by their ``exporter`` column. That column holds the UDP source
(IPv4 mapped into IPv6) for IPFIX, PSAMP and NetFlow, but for sFlow the agent address the
datagram names (the source only when the agent address is unset, see
:mod:`collectors.sflow`). :func:`owners` predicts these addresses from the datagrams, so
that rows go back to the source their datagrams came from; when two sources would claim
one address in a round (two agents configured with the same address) it returns None and
the caller flushes exporter by exporter instead.
"""

from __future__ import annotations

import numpy as np

from collectors.packet import V4_PREFIX
from netobs.batch import ip_bytes

_SFLOW5 = b"\x00\x00\x00\x05"
_ZERO16 = bytes(16)
_ZERO_V4 = V4_PREFIX + bytes(4)
_PAIR = np.dtype([("hi", "u8"), ("lo", "u8")])  # a 16-byte address as two integers (equality only)
_MAX_CACHED = 65536


def owners(
    burst: dict[str, list[bytes]], protocol: str | None, cache: dict[str, bytes]
) -> dict[bytes, str] | None:
    """Row address → source exporter for a round; None when an address has two sources.

    ``cache`` keeps the 16-byte form of source addresses between rounds (bounded).
    """
    out: dict[bytes, str] = {}
    sflow = protocol in (None, "sflow")
    for exporter, payloads in burst.items():
        source = cache.get(exporter)
        if source is None:
            source = _address(exporter)
            if len(cache) < _MAX_CACHED:
                cache[exporter] = source
        if out.setdefault(source, exporter) != exporter:
            return None
        if not sflow:
            continue
        for payload in payloads:
            if payload.startswith(_SFLOW5):
                agent = _sflow_agent(payload)
                if agent is not None and out.setdefault(agent, exporter) != exporter:
                    return None
    return out


def _sflow_agent(payload: bytes) -> bytes | None:
    """The agent address the rows of an sFlow v5 datagram will carry (None: unset, or not sFlow)."""
    if len(payload) < 24:
        return None
    kind = payload[4:8]
    if kind == b"\x00\x00\x00\x01":
        agent = V4_PREFIX + payload[8:12]
    elif kind == b"\x00\x00\x00\x02" and len(payload) >= 36:
        agent = payload[8:24]
    else:
        return None
    return None if agent in (_ZERO16, _ZERO_V4) else agent


def _address(exporter: str) -> bytes:
    try:
        return ip_bytes(exporter)
    except ValueError:
        return _ZERO16  # as collectors.decoder does for a source that is not an address


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
    return order, [(col[order[s]].tobytes(), int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


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
