"""The enrichment's native version check (pipeline/_native/enrich.c) and its path key, against the
numpy / plain Python forms they replace, on indexes and rows drawn at test time."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

from pipeline import lookups
from pipeline.enrich import _path_reference, path_of
from pipeline.lookups import IntervalIndex

pytestmark = pytest.mark.skipif(
    lookups._native is None, reason="pipeline._native_enrich not built (make setup)"
)


def _seed() -> int:
    seed = int(os.environ.get("NETOBS_TEST_SEED", random.randrange(2**32)))
    print(f"seed {seed} (NETOBS_TEST_SEED replays it)")
    return seed


def test_interval_lookup_native_is_the_numpy_reference(monkeypatch):
    rng = np.random.default_rng(_seed())
    for _ in range(40):
        nkeys = int(rng.integers(0, 400))
        # versions per key: none, one, a few (scan) or many (binary search); gaps and touching ends
        counts = rng.choice([0, 1, 1, 1, 2, 3, 6], nkeys) if nkeys else np.zeros(0, np.int64)
        keys = np.repeat(np.arange(nkeys), counts)
        starts = rng.integers(0, 10_000, len(keys))
        ends = starts + rng.integers(0, 3_000, len(keys))
        idx = IntervalIndex(keys, starts, ends, nkeys)
        n = int(rng.integers(0, 4000))
        q = rng.integers(-1, max(nkeys, 1), n)  # -1: not found
        tt = rng.integers(0, 14_000, n)
        native = idx.lookup_clipped(q, tt)
        monkeypatch.setenv("NETOBS_NATIVE", "0")
        reference = idx.lookup_clipped(q, tt)
        monkeypatch.delenv("NETOBS_NATIVE")
        assert native.dtype == reference.dtype == np.int64
        assert native.tolist() == reference.tolist()


def test_interval_refuses_bad_input():
    idx = IntervalIndex(np.array([0, 1]), np.array([0, 0]), np.array([10, 10]), 2)
    out = np.empty(2, np.int64)
    with pytest.raises(IndexError):  # a key past the records (two keys and the sentinel)
        lookups._native.interval(idx.record, np.array([0, 3], np.int64), np.zeros(2, np.int64), out)
    with pytest.raises(ValueError):  # times of another length
        lookups._native.interval(idx.record, np.zeros(2, np.int64), np.zeros(3, np.int64), out)
    with pytest.raises(ValueError):  # records that are not (s, e, row) int64
        lookups._native.interval(np.zeros(6, np.int32), np.zeros(2, np.int64), np.zeros(2, np.int64), out)


def test_path_key_matches_the_plain_rule():
    rng = np.random.default_rng(_seed())
    n = 20_000
    ends = []
    for _ in range(2):
        ends.append(
            {
                "inside": rng.random(n) < 0.7,
                "node": rng.integers(0, 4, n).astype(np.int32),  # 0: no node known
                "center": rng.integers(0, 3, n).astype(np.int32),
                "site": rng.integers(0, 2, n).astype(np.int32),
            }
        )
    src, dst = ends
    got = path_of(src, dst)
    want = [
        _path_reference(
            bool(src["inside"][i] or dst["inside"][i]),
            bool(src["inside"][i] and dst["inside"][i]),
            bool(src["node"][i] == dst["node"][i] and src["node"][i] != 0),
            bool(src["center"][i] == dst["center"][i]),
            bool(src["site"][i] == dst["site"][i]),
        )
        for i in range(n)
    ]
    assert got.tolist() == want
    assert set(want) == set(range(6))  # every path drawn
