"""A bounded on-disk spool of transport messages: checksummed segments, replayed in order.

Records are appended to numbered segment files (``<first seq>.seg``) with one ``write(2)``
each (unbuffered, so a SIGKILL loses nothing written: the page cache keeps it), each
record ``NSP1 | value length | crc32(key + value) | rows | kind | key length | key | value``.
Records are numbered from 0 up; ``ack(n)`` says every record before ``n`` is delivered; the
ack point is kept in ``acked`` and segments wholly before it are deleted.

Bounds: ``max_bytes`` (a record that does not fit is refused and counted, reason
``spool_full``; the disk refusing a write counts as ``disk_full``) and ``max_age_s``
(segments older than that are dropped, ``expired``). Every drop is counted per exporter
(the record key), kind and reason, and logged at most every few seconds. On open, a
segment's torn tail (a write cut short by a crash) is cut off; a record whose checksum
fails ends its segment there (counted, ``corrupt``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from netobs.transport.base import TransportError

log = logging.getLogger(__name__)

_HEAD = struct.Struct("!4sIIIBH")
_MAGIC = b"NSP1"
#: Record kinds as stored (the wire's kind names).
KINDS = ("flows", "interface_counters")
_LOG_EVERY_S = 10.0


@dataclass
class Record:
    seq: int
    key: bytes
    value: bytes
    rows: int
    kind: str


@dataclass
class _Segment:
    first: int  # seq of its first record
    path: Path
    created: float
    size: int = 0
    count: int = 0
    #: (start offset, rows, kind, key) per record, for counting drops without re-reading.
    index: list[tuple[int, int, int, bytes]] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.first + self.count


class SpoolLocked(TransportError):
    """Another process owns the spool directory."""


class Spool:
    """One process's spool directory. Thread-safe; ``close()`` releases the directory."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        max_age_s: float,
        segment_bytes: int = 8 << 20,
        on_drop: Callable[[str, str, str, int], None] | None = None,
    ):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.segment_bytes = segment_bytes
        self.on_drop = on_drop
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._segments: list[_Segment] = []
        self._fd: int | None = None  # the last segment, open for appending
        self.bytes = 0
        self.acked = 0  # every record before this is delivered
        self._cursor = 0  # next record read() hands out
        #: (exporter, kind, reason) → rows dropped; ... → records dropped
        self.dropped: Counter[tuple[str, str, str]] = Counter()
        self.dropped_records: Counter[str] = Counter()
        self.disk_full = False
        self._logged = 0.0
        self._unlogged: Counter[str] = Counter()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lockfile = open(self.directory / "lock", "a+")  # noqa: SIM115 - held while open
        except OSError as e:
            raise TransportError(f"spool directory {self.directory}: {e.strerror or e}") from None
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise SpoolLocked(
                f"spool directory {self.directory} is in use by another process; give each process its own "
                "(transport.spool.dir)"
            ) from None
        self._recover()

    # ---- state -------------------------------------------------------------------------------
    @property
    def end(self) -> int:
        """The seq the next appended record gets."""
        return self._segments[-1].end if self._segments else self.acked

    def depth(self) -> int:
        """Records spooled and not acknowledged."""
        with self._lock:
            return self.end - self.acked

    def oldest_age_s(self) -> float:
        with self._lock:
            return time.time() - self._segments[0].created if self.end > self.acked else 0.0

    def stats(self) -> dict[str, object]:
        with self._lock:
            return {
                "records": self.end - self.acked,
                "bytes": self.bytes,
                "oldest_age_s": round(time.time() - self._segments[0].created, 1)
                if self.end > self.acked
                else 0.0,
                "disk_full": self.disk_full,
                "dropped": {"/".join(k): v for k, v in sorted(self.dropped.items())},
            }

    def dropped_rows(self, kind: str = "flows") -> int:
        with self._lock:
            return sum(n for (_, k, _), n in self.dropped.items() if k == kind)

    # ---- writing -----------------------------------------------------------------------------
    def append(self, key: bytes, value: bytes, rows: int, kind: str = "flows") -> bool:
        """Spool one record; False (counted as dropped) when it does not fit or the disk refuses it."""
        data = _HEAD.pack(
            _MAGIC, len(value), zlib.crc32(value, zlib.crc32(key)), rows, _kind_code(kind), len(key)
        )
        with self._lock:
            self._expire_locked(time.time())
            if self.bytes + len(data) + len(key) + len(value) > self.max_bytes:
                self._drop_locked(key, kind, "spool_full", rows, value)
                return False
            try:
                seg = self._writable_locked(len(data) + len(key) + len(value))
                _write_all(self._fd, data + key + value)  # type: ignore[arg-type]
            except OSError as e:
                self._write_failed_locked(e)
                self._drop_locked(key, kind, "disk_full" if _no_space(e) else "spool_error", rows, value)
                return False
            if self.disk_full:
                log.warning("spool %s: writing again", self.directory)
                self.disk_full = False
            seg.index.append((seg.size, rows, _kind_code(kind), key))
            n = len(data) + len(key) + len(value)
            seg.size += n
            seg.count += 1
            self.bytes += n
            self._ready.notify_all()
            return True

    def _writable_locked(self, size: int) -> _Segment:
        seg = self._segments[-1] if self._segments and self._fd is not None else None
        if seg is None or (seg.size and seg.size + size > self.segment_bytes):
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            first = self.end
            path = self.directory / f"{first:016d}.seg"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            seg = _Segment(first, path, time.time())
            self._segments.append(seg)
        return seg

    def _write_failed_locked(self, e: OSError) -> None:
        """A failed write may have left part of a record: cut the segment back to its last record."""
        seg = self._segments[-1] if self._segments else None
        if seg is not None and self._fd is not None:
            try:
                os.ftruncate(self._fd, seg.size)
            except OSError:
                os.close(self._fd)
                self._fd = None  # the next append starts a new segment
        if not self.disk_full:
            log.error("spool %s cannot write: %s", self.directory, e)
        self.disk_full = _no_space(e)

    # ---- reading and acknowledging -----------------------------------------------------------
    def read(self, max_records: int, timeout_s: float = 0.0) -> list[Record]:
        """The next records after the last ones read (waits up to ``timeout_s`` for one)."""
        with self._lock:
            if self._cursor >= self.end and timeout_s > 0:
                self._ready.wait(timeout_s)
            self._cursor = max(self._cursor, self.acked)
            return self._read_locked(self._cursor, max_records, advance=True)

    def peek(self, max_records: int, start: int | None = None) -> list[Record]:
        """Records from ``start`` (default: the ack point) on, without moving the read cursor."""
        with self._lock:
            return self._read_locked(max(self.acked, start or 0), max_records, advance=False)

    def rewind(self) -> None:
        """Read again from the ack point (what was read but not acked is handed out again)."""
        with self._lock:
            self._cursor = self.acked

    def _read_locked(self, seq: int, max_records: int, advance: bool) -> list[Record]:
        out: list[Record] = []
        for seg in self._segments:
            if seg.end <= seq or len(out) >= max_records:
                continue
            start = seg.index[seq - seg.first][0]
            want = min(seg.end - seq, max_records - len(out))
            stop = seg.index[seq - seg.first + want][0] if seq - seg.first + want < seg.count else seg.size
            with open(seg.path, "rb") as f:
                f.seek(start)
                buf = f.read(stop - start)
            for rec in _parse(buf, seq):
                out.append(rec)
            seq += want
        if advance:
            self._cursor = seq
        return out

    def ack(self, upto: int, plan: str = "") -> None:
        """Every record before ``upto`` is delivered: forget them (and persist the ack point)."""
        with self._lock:
            if upto <= self.acked and not plan:
                return
            self.acked = max(self.acked, min(upto, self.end))
            self._persist_ack_locked(plan)
            while self._segments and self._segments[0].end <= self.acked:
                if len(self._segments) == 1 and self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                self._remove_locked(self._segments.pop(0))

    def _persist_ack_locked(self, plan: str) -> None:
        tmp = self.directory / "acked.tmp"
        try:
            tmp.write_text(f"{self.acked} {plan}\n")
            os.replace(tmp, self.directory / "acked")
        except OSError as e:  # a crash then replays from the last persisted point (duplicates, no loss)
            log.warning("spool %s: cannot persist the ack point: %s", self.directory, e)

    def plan(self) -> str:
        """What the last ``ack(..., plan)`` recorded next to the ack point."""
        try:
            parts = (self.directory / "acked").read_text().split()
        except OSError:
            return ""
        return parts[1] if len(parts) > 1 else ""

    def _remove_locked(self, seg: _Segment) -> None:
        self.bytes -= seg.size
        try:
            seg.path.unlink()
        except FileNotFoundError:
            pass

    # ---- bounds ------------------------------------------------------------------------------
    def expire(self) -> None:
        with self._lock:
            self._expire_locked(time.time())

    def _expire_locked(self, now: float) -> None:
        """Drop whole segments older than ``max_age_s`` (never the one being written)."""
        while len(self._segments) > 1 and now - self._segments[0].created > self.max_age_s:
            seg = self._segments.pop(0)
            try:
                records = _parse(seg.path.read_bytes(), seg.first)
            except (OSError, TransportError):
                records = [
                    Record(seg.first + i, k, b"", r, KINDS[c]) for i, (_, r, c, k) in enumerate(seg.index)
                ]
            for rec in records:
                if rec.seq >= self.acked:
                    self._drop_locked(rec.key, rec.kind, "expired", rec.rows, rec.value)
            self.acked = max(self.acked, seg.end)
            self._persist_ack_locked("")
            self._remove_locked(seg)

    def _drop_locked(self, key: bytes, kind: str, reason: str, rows: int, value: bytes = b"") -> None:
        self.dropped_records[reason] += 1
        self._unlogged[reason] += rows
        for exporter, n in _exporters(key, value, rows):
            self.dropped[(exporter, kind, reason)] += n
            if self.on_drop is not None:
                self.on_drop(exporter, kind, reason, n)
        now = time.monotonic()
        if now - self._logged >= _LOG_EVERY_S:
            what = ", ".join(f"{n} rows ({r})" for r, n in sorted(self._unlogged.items()))
            log.error("spool %s dropped %s since the last report", self.directory, what)
            self._unlogged.clear()
            self._logged = now

    # ---- recovery ----------------------------------------------------------------------------
    def _recover(self) -> None:
        try:
            parts = (self.directory / "acked").read_text().split()
            self.acked = int(parts[0])
        except (OSError, ValueError, IndexError):
            self.acked = 0
        for path in sorted(self.directory.glob("*.seg")):
            try:
                first = int(path.stem)
            except ValueError:
                continue
            seg = _Segment(first, path, path.stat().st_mtime)
            data = path.read_bytes()
            bad = _index(data, seg)
            if seg.size < len(data):
                if bad:
                    self.dropped_records["corrupt"] += 1
                    log.error(
                        "spool %s: checksum failed in %s at byte %d; the rest dropped",
                        self.directory,
                        path.name,
                        seg.size,
                    )
                else:
                    log.warning("spool %s: torn record at the end of %s cut off", self.directory, path.name)
                with open(path, "r+b") as f:
                    f.truncate(seg.size)
            if self._segments and first != self._segments[-1].end:
                log.warning("spool %s: records %d..%d missing", self.directory, self._segments[-1].end, first)
            if seg.end <= self.acked or not seg.count:
                path.unlink()
                continue
            self._segments.append(seg)
            self.bytes += seg.size
        if self._segments:
            self.acked = max(self.acked, self._segments[0].first)
            log.info("spool %s: %d records to replay", self.directory, self.end - self.acked)
        self._cursor = self.acked

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._lockfile.close()


def _exporters(key: bytes, value: bytes, rows: int) -> list[tuple[str, int]]:
    """Who the rows of a record came from: its key, or, for a message several exporters share
    (key ``exporters-<n>``, see collectors.service), its rows' exporter column."""
    name = key.decode("utf-8", "replace")
    if not name.startswith("exporters-") or not value:
        return [(name, rows)]
    try:
        from netobs import wire
        from netobs.batch import ip_str

        col = wire.decode(value).column("exporter")
    except (wire.WireError, KeyError):
        return [(name, rows)]
    counts = Counter(col.to_pylist())
    return [(ip_str(a) if isinstance(a, bytes) and len(a) == 16 else name, n) for a, n in counts.items()]


def _kind_code(kind: str) -> int:
    return KINDS.index(kind) if kind in KINDS else 0


def _index(data: bytes, seg: _Segment) -> bool:
    """Fill ``seg``'s index from its bytes; True when it stopped at a bad checksum."""
    pos, n = 0, len(data)
    while pos + _HEAD.size <= n:
        magic, vlen, crc, rows, kind, klen = _HEAD.unpack_from(data, pos)
        end = pos + _HEAD.size + klen + vlen
        if magic != _MAGIC or (end <= n and zlib.crc32(memoryview(data)[pos + _HEAD.size : end]) != crc):
            seg.size = pos
            return True
        if end > n:
            break
        body = memoryview(data)[pos + _HEAD.size : end]
        seg.index.append((pos, rows, kind, bytes(body[:klen])))
        seg.count += 1
        pos = end
    seg.size = pos
    return False


def _parse(buf: bytes, seq: int) -> list[Record]:
    out, pos = [], 0
    while pos < len(buf):
        magic, vlen, crc, rows, kind, klen = _HEAD.unpack_from(buf, pos)
        start = pos + _HEAD.size
        key, value = buf[start : start + klen], buf[start + klen : start + klen + vlen]
        if zlib.crc32(value, zlib.crc32(key)) != crc:
            raise TransportError(f"spool record {seq} changed on disk (checksum)")
        out.append(Record(seq, key, value, rows, KINDS[kind]))
        pos = start + klen + vlen
        seq += 1
    return out


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _no_space(e: OSError) -> bool:
    import errno

    return e.errno in (errno.ENOSPC, errno.EDQUOT)
