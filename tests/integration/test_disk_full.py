"""Disk full, for real: the embedded store's directory and the spool on small tmpfs mounts the
test makes (and unmounts). A full store disk pauses inserts (transient, retried) and loses
nothing; a full spool disk drops what does not fit, counted, and writes again once there is room."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from netobs.batch import FlowBatch
from netobs.config import ChdbStoreConfig, InprocessTransportConfig, StoreConfig
from netobs.store import make_store
from netobs.transport.deadletter import DirectoryDeadLetters
from netobs.transport.inprocess import InprocessTransport
from netobs.transport.spool import Spool
from pipeline import Pipeline
from pipeline import metrics as pipeline_metrics
from pipeline.config import PipelineConfig
from tests.services import _require

pytestmark = pytest.mark.integration


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``small_fs(megabytes)``: a fresh tmpfs of that size, unmounted at teardown."""
    mounts: list[Path] = []

    def make(size_mb: int) -> Path:
        d = tmp_path / f"fs{len(mounts)}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(d)],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
        if r.returncode:
            _require.unavailable(f"cannot mount a tmpfs (root needed): {r.stderr.strip()}")
        mounts.append(d)
        return d

    yield make
    for d in mounts:
        subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=30)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full (at most 1 GiB); returns it."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as f:
        for _ in range(1024):
            try:
                f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
    for _ in range(64):  # the last partial megabyte
        try:
            with open(filler, "ab", buffering=0) as f:
                f.write(b"\0" * 16384)
        except OSError:
            break
    return filler


def flows(start: int, n: int):
    return FlowBatch(
        {
            "time_received": np.full(n, int(time.time() * 1000), dtype="int64"),
            "type": np.array(["ipfix"] * n, dtype=object),
            "packets": np.arange(start, start + n, dtype="uint64"),
        }
    ).to_arrow()


def wait_until(cond: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def test_embedded_store_disk_full_pauses_and_loses_nothing(small_fs, tmp_path):
    disk = small_fs(64)
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=disk / "chdb")))
    store.start()
    spool = Spool(tmp_path / "spool", max_bytes=1 << 30, max_age_s=3600)
    t = InprocessTransport(InprocessTransportConfig(), spool=spool)
    p = Pipeline(
        PipelineConfig(max_batch_rows=5000, max_batch_delay_ms=50),
        t.consumer(),
        store,
        dead_letters=DirectoryDeadLetters(tmp_path / "dlq"),
    )
    failures = pipeline_metrics.insert_failures.labels(category="transient")
    failed_before = failures._value.get()
    p.start()
    prod = t.producer()
    try:
        for i in range(10):
            prod.send(flows(i * 1000, 1000), b"10.0.0.1")
        assert wait_until(lambda: p.rows_inserted == 10_000, 30)
        filler = fill(disk)
        for i in range(10, 20):
            prod.send(flows(i * 1000, 1000), b"10.0.0.1")
        assert wait_until(lambda: "NOT_ENOUGH_SPACE" in p.store_error or "No space" in p.store_error, 30), (
            p.store_error
        )
        time.sleep(1)
        assert p.rows_inserted == 10_000  # paused: nothing inserted, nothing set aside
        assert p.quarantined_rows == 0 and not list((tmp_path / "dlq").glob("*"))
        assert failures._value.get() > failed_before
        assert spool.depth() > 0  # the batches wait in the spool
        os.remove(filler)
        assert wait_until(lambda: p.rows_inserted == 20_000, 60), p.rows_inserted
        assert p.store_error == ""
    finally:
        p.stop()
        t.close()
    got = store.query_arrow("SELECT count() AS n, uniqExact(packets) AS u FROM netobs.flows").to_pylist()
    store.stop()
    assert got == [{"n": 20_000, "u": 20_000}]


def test_spool_disk_full_counts_what_is_dropped_and_writes_again(small_fs):
    disk = small_fs(4)
    spool = Spool(disk / "spool", max_bytes=1 << 30, max_age_s=3600, segment_bytes=1 << 20)
    t = InprocessTransport(InprocessTransportConfig(), spool=spool)
    prod, cons = t.producer(), t.consumer()
    sent = 0
    for i in range(2000):  # ~4-5 kB a batch: a 4 MiB disk is full well before 2000
        prod.send(flows(i * 100, 100), b"10.0.0.7")
        sent += 100
        if spool.disk_full and spool.dropped_rows() >= 500:
            break
    assert spool.disk_full
    dropped = spool.dropped_rows()
    assert set(spool.dropped) == {("10.0.0.7", "flows", "disk_full")}
    kept = spool.depth()
    assert kept * 100 + dropped == sent  # every batch either spooled or counted
    # the pipeline side takes batches and acknowledges them: whole segments are freed
    msgs = []
    while len(msgs) < kept:
        got = cons.poll(0.1, 500)
        assert got, "spooled batches unreadable"
        msgs += got
    cons.commit_offsets({(msgs[0].position[0], 0): (msgs[-1].position[2] + 1, "")})
    values = [v for m in msgs for v in m.table.column("packets").to_pylist()]
    assert len(values) == len(set(values)) == kept * 100
    prod.send(flows(10**6, 100), b"10.0.0.7")
    assert not spool.disk_full and spool.depth() == 1
    t.close()
