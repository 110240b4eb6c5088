"""Batch composition: one partition per batch, contiguous offsets, recorded ranges replayed exactly."""

import time

import numpy as np
import pyarrow as pa
import pytest

from netobs.batch import FlowBatch
from netobs.transport import Message
from pipeline.delivery import Batcher


def msg(partition, offset, rows=10, topic="t"):
    table = pa.Table.from_batches([FlowBatch({"packets": np.ones(rows, dtype="uint64")}).to_arrow()])
    return Message(table, (topic, partition, offset))


def drain(batcher, everything=True):
    out = []
    while (b := batcher.next_ready(10.0, everything)) is not None:
        out.append((b.key, b.first, b.last, b.rows, b.token))
        batcher.done(b)
    return out


def test_batches_hold_one_partition_and_close_on_rows():
    b = Batcher(max_rows=30)
    for offset in range(5):
        for partition in (0, 1):
            b.add(msg(partition, offset))
    assert b.rows == 100
    assert drain(b) == [
        (("t", 0), 0, 2, 30, "netobs:t:0:0-2:30"),
        (("t", 0), 3, 4, 20, "netobs:t:0:3-4:20"),
        (("t", 1), 0, 2, 30, "netobs:t:1:0-2:30"),
        (("t", 1), 3, 4, 20, "netobs:t:1:3-4:20"),
    ]
    assert b.rows == 0 and not b


def test_open_batch_waits_for_delay_unless_everything():
    b = Batcher(max_rows=1000)
    b.add(msg(0, 7))
    assert b.next_ready(10.0) is None
    assert b.next_ready(0.0).first == 7


@pytest.mark.parametrize("poll_sizes", [[1, 1, 1, 1, 1, 1], [6], [2, 4], [5, 1]])
def test_recorded_range_is_recreated_whatever_the_polls(poll_sizes):
    """A new owner closes its first batch where the previous owner's plan ended (offset 3)."""
    b = Batcher(max_rows=10_000)
    b.set_plans({("t", 0): (0, 3)})
    offsets = iter(range(6))
    got = []
    for size in poll_sizes:
        for _ in range(size):
            b.add(msg(0, next(offsets)))
        while (ready := b.next_ready(10.0)) is not None:
            got.append((ready.first, ready.last, ready.planned))
            b.done(ready)
    assert got[0] == (0, 3, True)
    assert drain(b)[0][1:3] == (4, 5)


def test_incomplete_replay_is_never_inserted_partially():
    b = Batcher(max_rows=10_000)
    b.set_plans({("t", 0): (0, 3)})
    b.add(msg(0, 0))
    b.add(msg(0, 1))
    assert b.next_ready(0.0, everything=True) is None  # left for the next owner on stop


def test_plan_not_matching_the_resume_point_is_ignored():
    b = Batcher(max_rows=10_000)
    b.set_plans({("t", 0): (5, 9)})
    b.add(msg(0, 10))
    assert drain(b) == [(("t", 0), 10, 10, 10, "netobs:t:0:10-10:10")]


def test_revoked_partitions_are_dropped_with_their_rows():
    b = Batcher(max_rows=15)
    for offset in range(3):
        b.add(msg(0, offset))
        b.add(msg(1, offset))
    assert b.drop([("t", 0)]) == 30
    assert b.rows == 30 and [k for k, *_ in drain(b)] == [("t", 1), ("t", 1)]


def test_messages_without_position_share_one_untokened_batch():
    b = Batcher(max_rows=100)
    b.add(Message(msg(0, 0).table))
    b.add(Message(msg(0, 0).table))
    assert drain(b) == [(None, -1, -1, 20, None)]


def test_sealed_on_first_attempt_so_nothing_joins_a_recorded_batch():
    b = Batcher(max_rows=100)
    b.add(msg(0, 0))
    first = b.next_ready(0.0)
    b.add(msg(0, 1))  # arrives while the first is being inserted
    assert first.sealed and first.last == 0
    b.done(first)
    time.sleep(0.01)
    assert b.next_ready(0.0).first == 1
