"""Sequence tracking: an estimate of what was lost between an exporter and us.

Each stream (an sFlow agent / sub-agent, an sFlow data source, an IPFIX observation
domain, a NetFlow v9 source id, a NetFlow v5 engine) numbers its datagrams, samples or
records. A number ahead of the expected one counts the difference as *missing*; one
behind it (reordered: softflowd and UDP do that) counts its own units as *late*, since
they were counted missing before. The estimate of loss is ``missing - late``. A jump
too far back is an exporter restart: the stream starts over and counts a *reset*.
"""

from __future__ import annotations

from collectors.stats import ExporterStats

_MOD = 1 << 32
_HALF = 1 << 31
LATE_WINDOW = 1 << 16  # units behind the expected number still taken as reordering
MAX_STREAMS = 65536  # per tracker; more streams are not tracked (and counted)


class SequenceTracker:
    """Expected next sequence number per stream; counts go to the exporter's stats."""

    def __init__(self, protocol: str, unit: str, max_streams: int = MAX_STREAMS, gaps: bool = True):
        self.protocol = protocol
        self.unit = unit
        self.gaps = gaps  # count gaps in stats.sequence_gaps (the datagram-level streams)
        self.max_streams = max_streams
        self.expected: dict[tuple, int] = {}  # stream → next number (callers may test it inline)

    def check(self, key: tuple, seq: int, advance: int | None, stats: ExporterStats) -> None:
        """Stream ``key`` sent number ``seq`` covering ``advance`` units (None: unknown)."""
        expected = self.expected.get(key)
        if expected == seq and advance is not None:  # the common case, kept cheap
            self.expected[key] = (seq + advance) & 0xFFFFFFFF
            return
        if expected is None:
            if advance is None:
                return
            if len(self.expected) < self.max_streams:
                self.expected[key] = (seq + advance) % _MOD
            else:
                stats.error("sequence:too_many_streams")
            return
        diff = (seq - expected + _HALF) % _MOD - _HALF  # signed distance, wrapping at 2^32
        if diff > 0:
            stats.sequence_gaps += self.gaps
            stats.sequence(self.protocol, self.unit, "missing", diff)
        elif diff < 0:
            if -diff <= LATE_WINDOW:
                stats.sequence(self.protocol, self.unit, "late", advance or 1)
                return  # the expected number stays where it was
            stats.sequence(self.protocol, self.unit, "reset", 1)
        if advance is None:
            del self.expected[key]  # the next number cannot be known (records of unknown templates)
        else:
            self.expected[key] = (seq + advance) % _MOD

    def __len__(self) -> int:
        return len(self.expected)
