"""Messages the pipeline has already taken, by message id (:func:`netobs.wire.message_id`).

A producer cannot tell whether a message whose delivery timed out in flight was stored before
the broker went away; it spools the message and sends it again with the id it had the first
time (:mod:`netobs.transport.spooled`). The pipeline drops the second copy here and counts it
(``netobs_pipeline_duplicate_messages_total``, ``netobs_pipeline_duplicate_rows_total``), like Kafka's idempotent
producer does for its own retries, one step further along.

What is kept: per stream (a producer incarnation and message key, which also fixes the
partition) the sequence numbers seen, as sorted half-open intervals, which a stream sent in
order keeps at one. A stream silent for ``max_idle_s`` is forgotten, and so are the oldest
intervals of a stream past ``max_intervals``. The memory is this process's: a copy that
arrives after the pipeline restarted (or its partition moved to another replica) since the
original was taken passes; such copies are at most the messages in flight when a broker stopped.
"""

from __future__ import annotations

import bisect
import time


class SeenMessages:
    def __init__(self, max_idle_s: float = 7 * 86400, max_intervals: int = 4096, max_streams: int = 100_000):
        self.max_idle_s = max_idle_s
        self.max_intervals = max_intervals
        self.max_streams = max_streams
        self._starts: dict[bytes, list[int]] = {}
        self._ends: dict[bytes, list[int]] = {}
        self._last: dict[bytes, float] = {}
        self._pruned = time.monotonic()

    def __len__(self) -> int:
        return len(self._starts)

    def seen(self, stream: bytes, seq: int, now: float | None = None) -> bool:
        """Whether ``(stream, seq)`` was taken before; if not, it is taken now."""
        now = time.monotonic() if now is None else now
        starts = self._starts.get(stream)
        if starts is None:
            if len(self._starts) >= self.max_streams:
                self.prune(now, force=True)
            self._starts[stream], self._ends[stream], self._last[stream] = [seq], [seq + 1], now
            return False
        ends = self._ends[stream]
        self._last[stream] = now
        i = bisect.bisect_right(starts, seq) - 1  # the interval starting at or before seq
        if i >= 0 and seq < ends[i]:
            return True
        # Not seen: extend the interval before, the one after, join them, or open one.
        joins_before = i >= 0 and ends[i] == seq
        joins_after = i + 1 < len(starts) and starts[i + 1] == seq + 1
        if joins_before and joins_after:
            ends[i] = ends[i + 1]
            del starts[i + 1], ends[i + 1]
        elif joins_before:
            ends[i] = seq + 1
        elif joins_after:
            starts[i + 1] = seq
        else:
            starts.insert(i + 1, seq)
            ends.insert(i + 1, seq + 1)
            if len(starts) > self.max_intervals:
                del starts[0], ends[0]
        if now - self._pruned > 60:
            self.prune(now)
        return False

    def forget(self, stream: bytes, seq: int) -> None:
        """``(stream, seq)`` is no longer taken (its message was dropped before its insert)."""
        starts = self._starts.get(stream)
        if starts is None:
            return
        ends = self._ends[stream]
        i = bisect.bisect_right(starts, seq) - 1
        if i < 0 or seq >= ends[i]:
            return
        lo, hi = starts[i], ends[i]
        del starts[i], ends[i]
        for a, b in ((seq + 1, hi), (lo, seq)):  # what is left on either side, in order
            if a < b:
                starts.insert(i, a)
                ends.insert(i, b)
        if not starts:
            del self._starts[stream], self._ends[stream], self._last[stream]

    def prune(self, now: float | None = None, force: bool = False) -> None:
        """Forget streams silent for ``max_idle_s`` (with ``force``, also the oldest tenth)."""
        now = time.monotonic() if now is None else now
        self._pruned = now
        old = [s for s, t in self._last.items() if now - t > self.max_idle_s]
        if force and not old:
            old = sorted(self._last, key=self._last.__getitem__)[: max(1, len(self._last) // 10)]
        for s in old:
            del self._starts[s], self._ends[s], self._last[s]
