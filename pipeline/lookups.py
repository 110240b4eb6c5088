"""Vectorized lookup structures behind the enricher (numpy, pandas and Arrow; no Python loop per flow).

- :class:`Addresses` splits a column of 16-byte addresses into IPv4 (as ``uint32``) and
  IPv6 rows once, so every lookup after that works on fixed-width integers or bytes.
- :class:`AddressSet` maps addresses, optionally masked to a prefix length, to dense ids:
  IPv4 through a pandas ``uint32`` hash index (built once, reused by every lookup), IPv6
  through Arrow's ``index_in``.
- :class:`IntervalIndex` answers "which version of key k was valid at time t": a key with
  one version is checked through per-key arrays (one gather each), keys with several (IP
  reuse) are found by ``searchsorted`` over the packed ``key << 42 | t``. The one-version check
  runs in one native pass (pipeline/_native/enrich.c) unless ``NETOBS_NATIVE=0``; the numpy
  form stays the reference.
- :class:`PrefixIndex` is longest-prefix match over time-versioned networks: one
  AddressSet + IntervalIndex per prefix length, longest first, on the rows still open.

Per-key arrays end with a sentinel entry (never valid), so a key of -1 ("not found")
gathers the sentinel without a mask.
"""

from __future__ import annotations

import importlib
import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from netobs.observations import native_enabled

_TBITS = 42  # time in ms fits 42 bits until 2109; see metadata.versions.OPEN
_TMAX = (1 << _TBITS) - 1
_V4_MAPPED = 0xFFFF0000
_MAPPED = b"\0" * 10 + b"\xff\xff"  # bytes 0..11 of ::ffff:a.b.c.d
_RECORD = np.dtype([("s", "<i8"), ("e", "<i8"), ("row", "<i8")])
_SCAN = 4  # keys with at most this many versions are resolved by a scan, not a binary search

_native: Any
try:  # the one-pass version check (pipeline/_native/enrich.c)
    _native = importlib.import_module("pipeline._native_enrich")
except ImportError:  # pragma: no cover - an install without the C extension
    _native = None


def addr16(text: str) -> bytes:
    """16-byte form of an address (IPv4 mapped into IPv6), as the flow columns hold it."""
    ip = ipaddress.ip_address(text)
    return (_MAPPED + ip.packed) if ip.version == 4 else ip.packed


def addrs16(texts: Sequence[str]) -> list[bytes]:
    """:func:`addr16` for many addresses; ``inet_pton`` is ~10x faster than ``ipaddress``."""
    v4, v6, pton = socket.AF_INET, socket.AF_INET6, socket.inet_pton
    return [pton(v6, t) if ":" in t else _MAPPED + pton(v4, t) for t in texts]


def clip_times(times: np.ndarray) -> np.ndarray:
    """Times as the indexes compare them: int64 ms clipped to ``[0, 2**42)``."""
    return np.clip(np.asarray(times, dtype=np.int64), 0, _TMAX)


class Addresses:
    """A column of 16-byte addresses, split into IPv4 (``uint32``) and IPv6 rows."""

    v6: np.ndarray | None

    def __init__(self, raw: np.ndarray):
        raw = np.ascontiguousarray(raw)
        words = raw.view("<u4").reshape(-1, 4)
        self.n = len(words)
        self.v4 = (raw.view("<u8").reshape(-1, 2)[:, 0] == 0) & (words[:, 2] == _V4_MAPPED)
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
        if len(sub.v6_rows) and self.v6 is not None:
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


class AddressSet:
    """Distinct addresses (or network prefixes of one length) → dense ids 0..n-1.

    IPv4 addresses take the ids 0..n4-1 (in first-seen order), IPv6 ones the rest, so an
    IPv4 hit in the hash index is already the id. ``ids_of_input`` holds the id of every
    address the set was built from, in input order.
    """

    def __init__(self, raw: Sequence[bytes] | np.ndarray, bits: int = 128):
        self.bits = bits
        arr = raw if isinstance(raw, np.ndarray) else np.frombuffer(b"".join(raw), dtype="V16")
        addrs = Addresses(arr) if len(arr) else Addresses(np.zeros(0, dtype="V16"))
        ids = np.full(len(arr), -1, dtype=np.int64)
        codes4, uniq4 = pd.factorize(addrs.u32[addrs.v4])
        ids[addrs.v4] = codes4
        self.n4 = len(uniq4)
        self._v4 = pd.Index(np.asarray(uniq4, dtype=np.uint32))
        first6: dict[bytes, int] = {}
        if addrs.v6 is not None:
            for row, a in zip(addrs.v6_rows.tolist(), addrs.v6.tolist(), strict=True):
                ids[row] = self.n4 + first6.setdefault(bytes(a), len(first6))
        self.v6_set = pa.array(list(first6), pa.binary(16))
        self.ids_of_input = ids
        self.v4_mask = np.uint32(((1 << 32) - 1) ^ ((1 << (128 - bits)) - 1)) if bits >= 96 else None

    def __len__(self) -> int:
        return self.n4 + len(self.v6_set)

    def lookup(self, addrs: Addresses) -> np.ndarray:
        """Id of each address (masked to ``bits``), -1 when absent."""
        if self.v4_mask is not None and self.n4:
            keys = addrs.u32 & self.v4_mask if self.bits < 128 else addrs.u32
            out = self._v4.get_indexer(keys)
            if addrs.v6 is not None:
                out[addrs.v6_rows] = -1
        else:
            out = np.full(addrs.n, -1, dtype=np.int64)
        if addrs.v6 is not None and len(self.v6_set):
            keys6 = _mask6(addrs.v6, self.bits) if self.bits < 128 else addrs.v6
            found = pc.index_in(_fsb(keys6), value_set=self.v6_set)
            hit = pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
            out[addrs.v6_rows] = np.where(hit >= 0, hit + self.n4, -1)
        return out


class IntervalIndex:
    """Version rows keyed by a dense id 0..nkeys-1, each valid over ``[start, end)``."""

    def __init__(self, keys: np.ndarray, starts: np.ndarray, ends: np.ndarray, nkeys: int):
        keys, starts, ends = (np.asarray(a, dtype=np.int64) for a in (keys, starts, ends))
        order = np.lexsort((starts, keys))
        self.rows, self.k, self.s, self.e = order, keys[order], starts[order], ends[order]
        self.nkeys = nkeys
        self.first = np.searchsorted(self.k, np.arange(nkeys + 2))
        self.count = np.diff(self.first)  # nkeys + 1 entries: the last, key ``nkeys``, has none
        self.packed = (self.k << _TBITS) | np.clip(self.s, 0, _TMAX)
        # One record per key (then the sentinel, reached by key -1), read with one gather:
        # a key's only version as (start, end, row); a key with several as (first, count, -2),
        # which never passes the time check; no version: (1, 0, -1).
        cnt = self.count[:nkeys]
        at = np.minimum(self.first[:nkeys], max(len(self.k) - 1, 0))
        one, multi = cnt == 1, cnt > 1
        rec = np.zeros(nkeys + 1, dtype=_RECORD)
        rec["s"], rec["e"], rec["row"] = 1, 0, -1
        if len(self.k):
            rec["s"][:nkeys] = np.where(one, self.s[at], np.where(multi, self.first[:nkeys], 1))
            rec["e"][:nkeys] = np.where(one, self.e[at], np.where(multi, cnt, 0))
            rec["row"][:nkeys] = np.where(one, self.rows[at], np.where(multi, -2, -1))
        self.record = rec
        self.any_multi = bool(multi.any())

    def clamp_keys(self, keys: np.ndarray) -> np.ndarray:
        """Keys outside 0..nkeys-1 (-1: not found) become -1, the sentinel."""
        keys = np.asarray(keys, dtype=np.int64)
        if len(keys) and (keys.min() < -1 or keys.max() >= self.nkeys):
            return np.where((keys >= 0) & (keys < self.nkeys), keys, -1)
        return keys

    def lookup(self, keys: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Version row valid at each time for each key; -1 when none (or key -1)."""
        return self.lookup_clipped(self.clamp_keys(keys), clip_times(times))

    def lookup_clipped(self, keys: np.ndarray, tt: np.ndarray) -> np.ndarray:
        """:meth:`lookup` for keys in -1..nkeys-1 and times from :func:`clip_times`."""
        if not len(self.k):
            return np.full(len(keys), -1, dtype=np.int64)
        if _native is not None and native_enabled():  # one pass, no record-array temporaries
            keys, tt = np.ascontiguousarray(keys, dtype=np.int64), np.ascontiguousarray(tt, dtype=np.int64)
            out = np.empty(len(keys), dtype=np.int64)
            if _native.interval(self.record, keys, tt, out):
                multi = np.flatnonzero(out == -2)
                rec = np.take(self.record, keys[multi])
                out[multi] = self._versions(rec["s"], rec["e"], keys[multi], tt[multi])
            return out
        rec = np.take(self.record, keys)  # (a fancy index on a record array is ~10x slower)
        out = np.where((rec["s"] <= tt) & (tt < rec["e"]), rec["row"], -1)
        if self.any_multi:
            multi = np.flatnonzero(rec["row"] == -2)
            if len(multi):
                out[multi] = self._versions(rec["s"][multi], rec["e"][multi], keys[multi], tt[multi])
        return out

    def _versions(self, first: np.ndarray, count: np.ndarray, keys: np.ndarray, tt: np.ndarray) -> np.ndarray:
        """Keys with several versions: the last version starting at or before ``t``, if it
        still holds at ``t``. Up to ``_SCAN`` versions by a scan, more by ``searchsorted``."""
        best = first - 1
        last = len(self.k) - 1
        for j in range(min(int(count.max()), _SCAN)):
            pos = first + j
            later = (j < count) & (self.s[np.minimum(pos, last)] <= tt)
            best = np.where(later, pos, best)
        many = np.flatnonzero(count > _SCAN)
        if len(many):
            packed = (keys[many] << _TBITS) | tt[many]
            best[many] = np.searchsorted(self.packed, packed, side="right") - 1
        at = np.maximum(best, 0)
        ok = (best >= first) & (self.k[at] == keys) & (tt < self.e[at])
        return np.where(ok, self.rows[at], -1)

    def covers(self, keys: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """True where a key has no version, or one version covering all of ``[start, end)``."""
        kk = np.where((keys >= 0) & (keys < self.nkeys), keys, self.nkeys)
        count = self.count[kk]
        if not len(self.k):
            return np.ones(len(keys), dtype=bool)
        pos = np.minimum(self.first[kk], len(self.k) - 1)
        one = (count == 1) & (self.s[pos] <= starts) & (self.e[pos] >= ends)
        return (count == 0) | one


class PrefixIndex:
    """Longest-prefix match over time-versioned networks, IPv4 and IPv6."""

    def __init__(
        self, cidrs: Sequence[str], starts: Sequence[int] | np.ndarray, ends: Sequence[int] | np.ndarray
    ):
        by_len: dict[int, list[int]] = {}
        nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        for row, net in enumerate(nets):
            by_len.setdefault(net.prefixlen + (96 if net.version == 4 else 0), []).append(row)
        start_arr, end_arr = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
        self.levels: list[tuple[AddressSet, IntervalIndex, np.ndarray]] = []
        for bits in sorted(by_len, reverse=True):
            rows = np.array(by_len[bits], dtype=np.int64)
            aset = AddressSet([addr16(str(nets[r].network_address)) for r in rows], bits)
            idx = IntervalIndex(aset.ids_of_input, start_arr[rows], end_arr[rows], len(aset))
            self.levels.append((aset, idx, rows))

    def lookup(self, addrs: Addresses, times: np.ndarray) -> np.ndarray:
        """Network row of the longest prefix valid at each time holding each address; -1 if none."""
        return self.lookup_clipped(addrs, clip_times(times))

    def lookup_clipped(self, addrs: Addresses, tt: np.ndarray) -> np.ndarray:
        """:meth:`lookup` with times from :func:`clip_times`."""
        out = np.full(addrs.n, -1, dtype=np.int64)
        todo = np.arange(addrs.n)
        sub = addrs
        for aset, idx, rows in self.levels:
            hit = idx.lookup_clipped(aset.lookup(sub), tt[todo])
            found = hit >= 0
            out[todo[found]] = rows[hit[found]]
            if found.all():
                break
            if found.any():
                keep = np.flatnonzero(~found)
                todo, sub = todo[keep], sub.take(keep)
        return out
