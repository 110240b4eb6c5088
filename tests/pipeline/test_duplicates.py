"""Message ids seen by the pipeline: intervals per stream, copies known, dropped messages forgotten."""

from __future__ import annotations

import random

from pipeline.duplicates import SeenMessages


def test_seen_matches_a_plain_set_on_random_orders():
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    seen, plain = SeenMessages(max_intervals=10**9), set()
    for _ in range(20_000):
        stream = rng.choice([b"a" * 8, b"b" * 8, b"c" * 8])
        seq = int(rng.expovariate(1 / 300))
        if rng.random() < 0.1:
            seen.forget(stream, seq)
            plain.discard((stream, seq))
            continue
        assert seen.seen(stream, seq, now=0) == ((stream, seq) in plain), f"seed {seed}"
        plain.add((stream, seq))
    # Sent in order, a stream stays one interval.
    s = SeenMessages()
    for i in range(1000):
        assert not s.seen(b"x" * 8, i)
    assert s._starts[b"x" * 8] == [0] and s._ends[b"x" * 8] == [1000]
    assert s.seen(b"x" * 8, 500)


def test_idle_streams_are_forgotten_and_intervals_bounded():
    s = SeenMessages(max_idle_s=10, max_intervals=3)
    s.seen(b"old".ljust(8), 0, now=0)
    for i in range(0, 20, 2):  # ten separate intervals: the oldest go
        s.seen(b"new".ljust(8), i, now=100)
    assert len(s._starts[b"new".ljust(8)]) == 3
    s.prune(now=105)
    assert b"old".ljust(8) not in s._starts and len(s) == 1
