"""The time-versioned metadata store: every change kept with its validity interval.

A version is one state of one object, valid over ``[valid_from, valid_to)`` in
milliseconds since the epoch (UTC, the unit of ``flow_start``); an open version has
``valid_to == OPEN``. Applying a change closes the open version of its key at the change
time and opens a new one, so a flow is always named by what was true at its
``flow_start``, and re-enriching old data later gives the same answer.

Versions live in memory (the enrichment index is built from them) and, when a store is
given, in the ClickHouse table ``metadata_versions``: a ReplacingMergeTree on
``(kind, key, valid_from)`` whose ``revision`` column makes the closing of an interval a
plain insert (the newest revision of a row wins; reads use FINAL).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from netobs.tables import Column, Table
from pipeline.metadata.model import Obj, from_attrs

log = logging.getLogger(__name__)

#: ``valid_to`` of a version still in force (2109-05-15; beyond any flow, within DateTime64).
OPEN = (1 << 42) - 1
TABLE = "metadata_versions"


@dataclass(frozen=True)
class Version:
    """One state of one object over ``[valid_from, valid_to)`` (ms)."""

    kind: str
    key: str
    valid_from: int
    valid_to: int
    attrs: dict[str, Any]
    source: str = ""


@dataclass(frozen=True)
class Change:
    """A new state for an object (``obj``), or its removal (``obj is None``: give kind and key)."""

    kind: str
    key: str
    obj: Obj | None
    source: str = ""

    @classmethod
    def upsert(cls, obj: Obj, source: str = "") -> Change:
        return cls(obj.kind, obj.key, obj, source)

    @classmethod
    def delete(cls, kind: str, key: str, source: str = "") -> Change:
        return cls(kind, key, None, source)


VERSIONS_TABLE = Table(
    TABLE,
    (
        Column("kind", "LowCardinality(String)", "site, center, node, network, namespace, pod, ip, vpc"),
        Column("key", "String", "name, or namespace/name for pods"),
        Column("valid_from", "DateTime64(3, 'UTC')", "first instant this state holds"),
        Column("valid_to", "DateTime64(3, 'UTC')", "first instant it no longer holds (2109: open)"),
        Column("attrs", "String", "the object, as JSON"),
        Column("source", "LowCardinality(String)", "inventory file, kubernetes, ..."),
        Column("revision", "UInt64", "the newest revision of a (kind, key, valid_from) row wins"),
    ),
    order_by=("kind", "key", "valid_from"),
    version="revision",
)


def create_table(database: str) -> str:
    """DDL of the versions table (modern dialect: chdb and current ClickHouse servers)."""
    (statement,) = VERSIONS_TABLE.create(database)
    return statement


def ms(t: Any) -> int:
    """Milliseconds since the epoch from a datetime (naive = UTC), seconds float or ms int."""
    if hasattr(t, "timestamp"):
        if t.tzinfo is None:
            from datetime import UTC

            t = t.replace(tzinfo=UTC)
        return int(round(t.timestamp() * 1000))
    return int(t)


class MetadataStore:
    """Versions of every metadata object, in memory and optionally in ClickHouse."""

    def __init__(self, store: Any = None, database: str = "netobs"):
        self.store, self.database = store, database
        self._versions: list[Version] = []
        self._open: dict[tuple[str, str], int] = {}
        self._starts: set[tuple[str, str, int]] = set()  # closed-at-birth versions already kept
        self._ended: dict[tuple[str, str], int] = {}  # last valid_to of keys with no open version
        self._lock = threading.Lock()
        self._revision = time.time_ns()
        #: Bumped on every effective change, so an enricher knows when to rebuild.
        self.generation = 0

    def ensure(self) -> None:
        """Create the versions table (idempotent)."""
        if self.store is None:
            return
        if getattr(self.store, "dialect", "modern") != "modern":
            raise RuntimeError("the metadata store needs a modern ClickHouse (DateTime64, LowCardinality)")
        self.store.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
        self.store.execute(create_table(self.database))

    def apply(self, changes: Iterable[Change], at: Any, new_from: Any = None) -> int:
        """Apply changes effective at ``at``; returns how many versions were written.

        A key seen for the first time starts at its own ``start`` (a pod's creation) if it
        has one, else at ``new_from`` when given (the inventory: "true since ever, until it
        says otherwise", so backfills of old captures are named), else at ``at``.
        """
        t = ms(at)
        first = ms(new_from) if new_from is not None else t
        written: list[Version] = []
        with self._lock:
            for ch in changes:
                written += self._apply_one(ch, t, first)
            if written:
                self.generation += 1
        self._persist(written)
        return len(written)

    def replace_all(
        self, kinds: Iterable[str], objects: Iterable[Obj], at: Any, source: str = "", new_from: Any = None
    ) -> int:
        """Make ``objects`` the whole truth of ``source`` for ``kinds`` (a relist, a reloaded file).

        Open versions of those kinds from the same source that are not listed are closed at ``at``.
        """
        return self.apply(self.replace_changes(kinds, objects, source), at, new_from)

    def replace_changes(self, kinds: Iterable[str], objects: Iterable[Obj], source: str = "") -> list[Change]:
        """The changes :meth:`replace_all` applies: deletions of the unlisted, upserts of the listed."""
        kinds = set(kinds)
        objs = {(o.kind, o.key): o for o in objects}
        with self._lock:
            gone = [
                k
                for k, i in self._open.items()
                if k[0] in kinds and k not in objs and self._versions[i].source == source
            ]
        changes = [Change.delete(kind, key, source) for kind, key in gone]
        return changes + [Change.upsert(o, source) for o in objs.values()]

    def current(self, kind: str, key: str) -> dict[str, Any] | None:
        """Attributes of the version of ``(kind, key)`` in force now, or None."""
        with self._lock:
            idx = self._open.get((kind, key))
            return self._versions[idx].attrs if idx is not None else None

    def _apply_one(self, ch: Change, t: int, first: int) -> list[Version]:
        k = (ch.kind, ch.key)
        idx = self._open.get(k)
        cur = self._versions[idx] if idx is not None else None
        attrs = ch.obj.attrs() if ch.obj is not None else None
        if cur is not None and attrs == cur.attrs:
            return []  # same state again (a relist, a resync): nothing changed
        out = []
        start, end = _lifetime(ch.obj, t, cur is None, max(first, self._ended.get(k, first)))
        if end != OPEN and (ch.kind, ch.key, start) in self._starts:
            return []  # a static object with a known end, loaded again
        if cur is not None and idx is not None:
            closed = replace(cur, valid_to=max(cur.valid_from + 1, t))
            self._versions[idx] = closed
            del self._open[k]
            self._ended[k] = closed.valid_to
            out.append(closed)
        if attrs is not None and end > start:
            v = Version(ch.kind, ch.key, start, end, attrs, ch.source)
            self._versions.append(v)
            if end == OPEN:
                self._open[k] = len(self._versions) - 1
            else:
                self._starts.add((ch.kind, ch.key, start))
                self._ended[k] = max(self._ended.get(k, 0), end)
            out.append(v)
        return out

    def _persist(self, versions: list[Version]) -> None:
        if self.store is None or not versions:
            return
        self._revision = max(self._revision + 1, time.time_ns())
        ts = pa.timestamp("ms", tz="UTC")
        table = pa.table(
            {
                "kind": pa.array([v.kind for v in versions]),
                "key": pa.array([v.key for v in versions]),
                "valid_from": pa.array([v.valid_from for v in versions], pa.int64()).cast(ts),
                "valid_to": pa.array([v.valid_to for v in versions], pa.int64()).cast(ts),
                "attrs": pa.array([json.dumps(v.attrs, sort_keys=True) for v in versions]),
                "source": pa.array([v.source for v in versions]),
                "revision": pa.array([self._revision] * len(versions), pa.uint64()),
            }
        )
        self.store.insert(table, target=TABLE)

    def reload(self) -> int:
        """Replace the in-memory history with the one in ClickHouse; returns the version count."""
        t = self.store.query_arrow(
            f"SELECT kind, key, toUnixTimestamp64Milli(valid_from) AS f, toUnixTimestamp64Milli(valid_to) AS t,"
            f" attrs, source FROM `{self.database}`.`{TABLE}` FINAL ORDER BY kind, key, valid_from"
        )
        cols = {n: t.column(n).to_pylist() for n in t.schema.names} if t.num_rows else {}
        versions = [
            Version(k, key, int(f), int(to), json.loads(a), s)
            for k, key, f, to, a, s in zip(
                *(cols.get(n, []) for n in ("kind", "key", "f", "t", "attrs", "source")), strict=True
            )
        ]
        with self._lock:
            self._versions = versions
            self._open = {(v.kind, v.key): i for i, v in enumerate(versions) if v.valid_to >= OPEN}
            self._starts = {(v.kind, v.key, v.valid_from) for v in versions if v.valid_to < OPEN}
            self._ended = {}
            for v in versions:
                if v.valid_to < OPEN:
                    self._ended[(v.kind, v.key)] = max(self._ended.get((v.kind, v.key), 0), v.valid_to)
            self.generation += 1
        return len(versions)

    def versions(self, kind: str | None = None) -> list[Version]:
        """Every version (of ``kind``), oldest first per key."""
        with self._lock:
            return [v for v in self._versions if kind is None or v.kind == kind]

    def snapshot(self, at: Any) -> dict[str, dict[str, Obj]]:
        """The objects valid at ``at``: kind → key → object."""
        t = ms(at)
        out: dict[str, dict[str, Obj]] = {}
        for v in self.versions():
            if v.valid_from <= t < v.valid_to:
                out.setdefault(v.kind, {})[v.key] = from_attrs(v.kind, v.attrs)
        return out


def _lifetime(obj: Obj | None, t: int, first_sight: bool, first: int) -> tuple[int, int]:
    """Interval of a new version: see :meth:`MetadataStore.apply`; ``end`` bounds a static life."""
    start = getattr(obj, "start", None)
    end = getattr(obj, "end", None)
    begin = (ms(start) if start else first) if first_sight else t
    return begin, (ms(end) if end else OPEN)
