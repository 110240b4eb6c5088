"""Sampling rates the exports do not carry: per-exporter defaults, and records left unscaled.

The rate of a flow comes from the datagram (sFlow, NetFlow v5, IPFIX/v9 fields), else from
the exporter's options data (IPFIX/v9 sampling options), else from configuration: the first
``exporter_sampling`` rule whose CIDRs contain the exporter, then the collector-wide
``default_sampling_rate``. A record that still has no rate keeps ``sampling_rate = 0`` (the
queries count it once, as if unsampled) and is counted per exporter as ``unknown``, so the
estimate is never silently 1: the metric and the exporter-health view show it.

A rule with rate 1 says "the counts are already scaled": Open vSwitch's bridge and per-flow
IPFIX multiply each sampled packet by the sampling period before export and send no rate.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Sequence

import numpy as np

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_rules(rules: Sequence[tuple[Sequence[str], int]]) -> list[tuple[list[Network], int]]:
    """(CIDRs, rate) pairs with the CIDRs parsed; a bad CIDR raises ValueError naming it."""
    out = []
    for cidrs, rate in rules:
        if rate < 1:
            raise ValueError(f"sampling rate must be >= 1, got {rate}")
        nets: list[Network] = []
        for c in cidrs:
            try:
                nets.append(ipaddress.ip_network(c, strict=False))
            except ValueError as e:
                raise ValueError(f"not an address or CIDR: {c!r}") from e
        out.append((nets, int(rate)))
    return out


class SamplingDefaults:
    """Fills rate 0 from per-exporter rules and the collector default; counts what stays 0."""

    def __init__(self, rules: Sequence[tuple[Sequence[str], int]] = (), default: int = 0):
        self.rules = parse_rules(rules)
        self.default = int(default)
        self._cache: dict[bytes, int] = {}
        self._names: dict[bytes, str] = {}

    def __bool__(self) -> bool:
        return bool(self.rules) or self.default > 0

    def rate_for(self, exporter16: bytes) -> int:
        """Configured rate of one exporter (16-byte, IPv4 mapped), 0 if none applies."""
        rate = self._cache.get(exporter16)
        if rate is None:
            ip = ipaddress.IPv6Address(exporter16)
            addr = ip.ipv4_mapped or ip
            rate = next((r for nets, r in self.rules if any(addr in n for n in nets)), self.default)
            if len(self._cache) < 65536:  # bounded: a spoofing flood cannot grow it forever
                self._cache[exporter16] = rate
        return rate

    def apply(self, columns: dict[str, np.ndarray]) -> Counter:
        """Fill ``sampling_rate == 0`` in place; returns exporter text → records left at 0."""
        rate = columns.get("sampling_rate")
        if rate is None or not len(rate):
            return Counter()
        missing = rate == 0
        count = int(np.count_nonzero(missing))
        if not count:
            return Counter()
        exporters = columns["exporter"]
        ex = np.ascontiguousarray(exporters if count == len(rate) else exporters[missing])
        pairs = ex.view(np.uint64).reshape(-1, 2)  # a decoder's column may be a strided view
        if (pairs == pairs[0]).all():  # one exporter (a flush of one socket round): no sort
            key = bytes(ex[0])
            r = self.rate_for(key)
            if r == 0:
                return Counter({self._name(key): count})
            columns["sampling_rate"] = np.where(missing, rate.dtype.type(r), rate)
            return Counter()
        unknown: Counter = Counter()
        keys, inverse = np.unique(ex, return_inverse=True)
        fill = np.array([self.rate_for(bytes(k)) for k in keys], dtype=rate.dtype)
        if self:
            rate = rate.copy()  # the decoders' columns may be read-only views of their buffers
            rate[missing] = fill[inverse]
            columns["sampling_rate"] = rate
        left = np.bincount(inverse, minlength=len(keys))
        for key, n, r in zip(keys, left, fill, strict=True):
            if r == 0:
                unknown[self._name(bytes(key))] += int(n)
        return unknown

    def _name(self, exporter16: bytes) -> str:
        """The text of an exporter address (IPv4 unmapped), cached like the rates."""
        name = self._names.get(exporter16)
        if name is None:
            ip = ipaddress.IPv6Address(exporter16)
            name = str(ip.ipv4_mapped or ip)
            if len(self._names) < 65536:
                self._names[exporter16] = name
        return name
