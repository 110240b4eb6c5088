"""Vectorized lookup structures behind the enricher (numpy and Arrow; no Python loop per flow).

- :class:`Addresses` splits a column of 16-byte addresses into IPv4 (as ``uint32``) and
  IPv6 rows once, so every lookup after that works on fixed-width integers or bytes.
- :class:`AddressSet` maps addresses, optionally masked to a prefix length, to dense ids
  with Arrow's hash ``index_in``.
- :class:`IntervalIndex` answers "which version of key k was valid at time t": versions
  sorted by ``(key, valid_from)``; a key with one version is checked directly, keys with
  several (IP reuse) are found by ``searchsorted`` over the packed ``key << 42 | t``.
- :class:`PrefixIndex` is longest-prefix match over time-versioned networks: one
  AddressSet + IntervalIndex per prefix length, longest first, on the rows still open.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_TBITS = 42  # time in ms fits 42 bits until 2109; see metadata.store.OPEN
_TMAX = (1 << _TBITS) - 1
_V4_MAPPED = 0xFFFF0000
_MAPPED = b"\0" * 10 + b"\xff\xff"  # little-endian uint32 of bytes 8..11 of ::ffff:a.b.c.d


def addr16(text: str) -> bytes:
    """16-byte form of an address (IPv4 mapped into IPv6), as the flow columns hold it."""
    ip = ipaddress.ip_address(text)
    return (b"\0" * 10 + b"\xff\xff" + ip.packed) if ip.version == 4 else ip.packed


def addrs16(texts: Sequence[str]) -> list[bytes]:
    """:func:`addr16` for many addresses; ``inet_pton`` is ~10x faster than ``ipaddress``."""
    out = []
    for t in texts:
        if ":" in t:
            out.append(socket.inet_pton(socket.AF_INET6, t))
        else:
            out.append(_MAPPED + socket.inet_pton(socket.AF_INET, t))
    return out


class Addresses:
    """A column of 16-byte addresses, split into IPv4 (``uint32``) and IPv6 rows."""

    def __init__(self, raw: np.ndarray):
        words = np.ascontiguousarray(raw).view("<u4").reshape(-1, 4)
        self.n = len(words)
        self.v4 = (words[:, 0] == 0) & (words[:, 1] == 0) & (words[:, 2] == _V4_MAPPED)
        self.u32 = words[:, 3].byteswap()
        self.v6_rows = np.flatnonzero(~self.v4)
        self.v6 = words[self.v6_rows].view("V16").ravel() if len(self.v6_rows) else None

    @classmethod
    def from_arrow(cls, arr: pa.Array | pa.ChunkedArray) -> Addresses:
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        buf = np.frombuffer(arr.buffers()[1], dtype=np.uint8)[arr.offset * 16 : (arr.offset + len(arr)) * 16]
        return cls(buf.view("V16"))

    @classmethod
    def from_text(cls, texts: Sequence[str]) -> Addresses:
        raw = np.frombuffer(b"".join(addrs16(texts)), dtype="V16")
        return cls(raw)

    def take(self, rows: np.ndarray) -> Addresses:
        """The addresses at ``rows`` (a subset to resolve further)."""
        sub = Addresses.__new__(Addresses)
        sub.n, sub.v4, sub.u32 = len(rows), self.v4[rows], self.u32[rows]
        sub.v6_rows = np.flatnonzero(~sub.v4)
        if len(sub.v6_rows):
            pos = np.searchsorted(self.v6_rows, rows[sub.v6_rows])
            sub.v6 = self.v6[pos]
        else:
            sub.v6 = None
        return sub


def _fsb(values: np.ndarray) -> pa.Array:
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(values), [None, pa.py_buffer(values.tobytes())]
    )


def _mask6(values: np.ndarray, bits: int) -> np.ndarray:
    b = values.view(np.uint8).reshape(-1, 16).copy()
    full, rest = divmod(bits, 8)
    if full < 16:
        b[:, full] &= (0xFF << (8 - rest)) & 0xFF
        b[:, full + 1 :] = 0
    return b.view("V16").ravel()


def _index_in(values: pa.Array | np.ndarray, value_set: pa.Array) -> np.ndarray:
    found = pc.index_in(values, value_set=value_set)
    return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)


class AddressSet:
    """Distinct addresses (or network prefixes of one length) → dense ids 0..n-1."""

    def __init__(self, raw: Sequence[bytes], bits: int = 128):
        self.bits = bits
        uniq = list(dict.fromkeys(raw))
        self.ids = {a: i for i, a in enumerate(uniq)}
        v4 = [(i, a) for i, a in enumerate(uniq) if a[:12] == b"\0" * 10 + b"\xff\xff"]
        v6 = [(i, a) for i, a in enumerate(uniq) if a[:12] != b"\0" * 10 + b"\xff\xff"]
        self.v4_ids = np.array([i for i, _ in v4] + [-1], dtype=np.int64)
        self.v4_set = pa.array([int.from_bytes(a[12:], "big") for _, a in v4], pa.uint32())
        self.v6_ids = np.array([i for i, _ in v6] + [-1], dtype=np.int64)
        self.v6_set = pa.array([a for _, a in v6], pa.binary(16))
        self.v4_mask = np.uint32(((1 << 32) - 1) ^ ((1 << (128 - bits)) - 1)) if bits >= 96 else None

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, addrs: Addresses) -> np.ndarray:
        """Id of each address (masked to ``bits``), -1 when absent."""
        out = np.full(addrs.n, -1, dtype=np.int64)
        if self.v4_mask is not None and len(self.v4_set):
            keys = addrs.u32 & self.v4_mask if self.bits < 128 else addrs.u32
            out = self.v4_ids[_index_in(keys, self.v4_set)]
            out[~addrs.v4] = -1
        if addrs.v6 is not None and len(self.v6_set):
            keys6 = _mask6(addrs.v6, self.bits) if self.bits < 128 else addrs.v6
            out[addrs.v6_rows] = self.v6_ids[_index_in(_fsb(keys6), self.v6_set)]
        return out


class IntervalIndex:
    """Version rows keyed by a dense id, each valid over ``[start, end)``."""

    def __init__(self, keys: np.ndarray, starts: np.ndarray, ends: np.ndarray, nkeys: int):
        keys, starts, ends = (np.asarray(a, dtype=np.int64) for a in (keys, starts, ends))
        order = np.lexsort((starts, keys))
        self.rows, self.k, self.s, self.e = order, keys[order], starts[order], ends[order]
        self.nkeys = nkeys
        self.first = np.searchsorted(self.k, np.arange(nkeys + 2))
        self.count = np.diff(self.first)  # nkeys + 1 entries: the last, key ``nkeys``, has none
        self.packed = (self.k << _TBITS) | np.clip(self.s, 0, _TMAX)

    def _keys(self, keys: np.ndarray) -> np.ndarray:
        """Keys outside 0..nkeys-1 (-1: not found) become ``nkeys``, a key with no version."""
        return np.where((keys >= 0) & (keys < self.nkeys), keys, self.nkeys)

    def lookup(self, keys: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Version row valid at each time for each key; -1 when none (or key -1)."""
        if not len(self.k):
            return np.full(len(keys), -1, dtype=np.int64)
        kk = self._keys(keys)
        tt = np.clip(times, 0, _TMAX)
        count = self.count[kk]
        pos = self.first[kk]
        multi = np.flatnonzero(count > 1)
        if len(multi):
            pos[multi] = np.searchsorted(self.packed, (kk[multi] << _TBITS) | tt[multi], side="right") - 1
        pos = np.minimum(pos, len(self.k) - 1)
        valid = (count > 0) & (self.k[pos] == kk) & (self.s[pos] <= tt) & (tt < self.e[pos])
        return np.where(valid, self.rows[pos], -1)

    def covers(self, keys: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """True where a key has no version, or one version covering all of ``[start, end)``."""
        kk = self._keys(keys)
        count = self.count[kk]
        if not len(self.k):
            return np.ones(len(keys), dtype=bool)
        pos = np.minimum(self.first[kk], len(self.k) - 1)
        one = (count == 1) & (self.s[pos] <= starts) & (self.e[pos] >= ends)
        return (count == 0) | one


class PrefixIndex:
    """Longest-prefix match over time-versioned networks, IPv4 and IPv6."""

    def __init__(self, cidrs: Sequence[str], starts: Sequence[int], ends: Sequence[int]):
        by_len: dict[int, list[int]] = {}
        nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        for row, net in enumerate(nets):
            by_len.setdefault(net.prefixlen + (96 if net.version == 4 else 0), []).append(row)
        self.levels = []
        for bits in sorted(by_len, reverse=True):
            rows = np.array(by_len[bits], dtype=np.int64)
            raw = [addr16(str(nets[r].network_address)) for r in rows]
            aset = AddressSet(raw, bits)
            keys = np.array([aset.ids[a] for a in raw], dtype=np.int64)
            idx = IntervalIndex(keys, np.asarray(starts)[rows], np.asarray(ends)[rows], len(aset))
            self.levels.append((aset, idx, rows))

    def lookup(self, addrs: Addresses, times: np.ndarray) -> np.ndarray:
        """Network row of the longest prefix valid at each time holding each address; -1 if none."""
        out = np.full(addrs.n, -1, dtype=np.int64)
        todo = np.arange(addrs.n)
        sub = addrs
        for aset, idx, rows in self.levels:
            hit = idx.lookup(aset.lookup(sub), times[todo])
            found = hit >= 0
            out[todo[found]] = rows[hit[found]]
            if found.all():
                break
            if found.any():
                keep = np.flatnonzero(~found)
                todo, sub = todo[keep], sub.take(keep)
        return out
