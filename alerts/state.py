"""Delivery state in the store, so that nothing is lost or sent twice across restarts.

``alert_notifications`` holds one row per (fingerprint, target) — a target is ``route/sink`` —
with the alert as last known, the content hash last delivered and when. ``alert_cursors`` holds
each source's read cursor. Both are ReplacingMergeTree tables versioned by a counter that only
grows, read with FINAL; state is written before the cursor moves, so a crash in between re-reads
rows (merged again, harmlessly) rather than skipping them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import pyarrow as pa

from alerts.model import Alert
from alerts.source import Cursor, quote
from netobs.tables import Column, Table

NOTIFICATIONS = "alert_notifications"
CURSORS = "alert_cursors"
NOTIFICATIONS_TABLE = Table(
    NOTIFICATIONS,
    (
        Column("fingerprint", "String"),
        Column("target", "String"),
        Column("source", "LowCardinality(String)"),
        Column("state", "LowCardinality(String)"),
        Column("alert", "String", "JSON"),
        Column("content_hash", "String"),
        Column("sent_hash", "String"),
        Column("last_sent_ms", "UInt64"),
        Column("failures", "UInt32"),
        Column("updated_ms", "UInt64"),
        Column("version", "UInt64"),
    ),
    order_by=("target", "fingerprint"),
    version="version",
    ttl="toDateTime(intDiv(updated_ms, 1000))",
)
CURSORS_TABLE = Table(
    CURSORS,
    (
        Column("source", "String"),
        Column("position", "UInt64"),
        Column("last_id", "String"),
        Column("version", "UInt64"),
    ),
    order_by=("source",),
    version="version",
)
Query = Callable[[str], pa.Table]


@dataclass(frozen=True)
class Delivery:
    """The state of one alert at one target."""

    fingerprint: str
    target: str
    alert: Alert
    sent_hash: str = ""
    last_sent_ms: int = 0
    failures: int = 0

    @property
    def done(self) -> bool:
        return not self.alert.firing and self.sent_hash == self.alert.content_hash

    def due(self, now_ms: int, repeat_s: float) -> bool:
        """New or changed since last delivered, or firing and not repeated for ``repeat_s``."""
        if self.sent_hash != self.alert.content_hash:
            return True
        return self.alert.firing and now_ms - self.last_sent_ms >= repeat_s * 1000

    def sent(self, now_ms: int) -> Delivery:
        return replace(self, sent_hash=self.alert.content_hash, last_sent_ms=now_ms, failures=0)


def create_tables(db: str, retention_days: int) -> list[str]:
    return NOTIFICATIONS_TABLE.create(db, retention_days=retention_days) + CURSORS_TABLE.create(db)


_lock = threading.Lock()
_last = [0]


def next_version() -> int:
    """A version above every one this process handed out (microseconds, strictly increasing)."""
    with _lock:
        _last[0] = max(int(time.time() * 1_000_000), _last[0] + 1)
        return _last[0]


def load(query: Query, db: str, fingerprints: Iterable[str]) -> dict[tuple[str, str], Delivery]:
    """Deliveries not yet done, plus every delivery of ``fingerprints`` (to merge new evidence into)."""
    fps = ", ".join(quote(f) for f in sorted(set(fingerprints)))
    also = f" OR fingerprint IN ({fps})" if fps else ""
    t = query(
        f"SELECT fingerprint, target, alert, sent_hash, last_sent_ms, failures FROM "
        f"(SELECT * FROM `{db}`.`{NOTIFICATIONS}` FINAL) "
        f"WHERE NOT (state = 'resolved' AND sent_hash = content_hash){also}"
    )
    out = {}
    for row in t.to_pylist():
        alert = Alert.from_json(json.loads(row["alert"]))
        d = Delivery(
            row["fingerprint"],
            row["target"],
            alert,
            row["sent_hash"],
            int(row["last_sent_ms"]),
            int(row["failures"]),
        )
        out[(d.fingerprint, d.target)] = d
    return out


def save(query: Query, db: str, deliveries: Iterable[Delivery]) -> int:
    """Write deliveries (a new version of each); returns how many."""
    now_ms = int(time.time() * 1000)
    rows = []
    for d in deliveries:
        a = d.alert
        rows.append(
            json.dumps(
                {
                    "fingerprint": d.fingerprint,
                    "target": d.target,
                    "source": a.source,
                    "state": a.state,
                    "alert": json.dumps(a.to_json(), sort_keys=True),
                    "content_hash": a.content_hash,
                    "sent_hash": d.sent_hash,
                    "last_sent_ms": d.last_sent_ms,
                    "failures": d.failures,
                    "updated_ms": now_ms,
                    "version": next_version(),
                }
            )
        )
    if rows:
        query(f"INSERT INTO `{db}`.`{NOTIFICATIONS}` FORMAT JSONEachRow\n" + "\n".join(rows))
    return len(rows)


def load_cursors(query: Query, db: str) -> dict[str, Cursor]:
    t = query(f"SELECT source, position, last_id FROM `{db}`.`{CURSORS}` FINAL")
    return {r["source"]: Cursor(int(r["position"]), r["last_id"]) for r in t.to_pylist()}


def save_cursors(query: Query, db: str, cursors: dict[str, Cursor]) -> None:
    rows = [
        json.dumps({"source": s, "position": c.position, "last_id": c.last_id, "version": next_version()})
        for s, c in sorted(cursors.items())
    ]
    if rows:
        query(f"INSERT INTO `{db}`.`{CURSORS}` FORMAT JSONEachRow\n" + "\n".join(rows))


__all__ = ["CURSORS", "NOTIFICATIONS", "Delivery", "create_tables", "load", "load_cursors", "save"]
