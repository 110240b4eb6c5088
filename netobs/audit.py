"""The query audit log: who ran what SQL on the control endpoint, when, with what outcome.

One row per request to a SQL route (refused ones too), in the store's ``query_audit`` table
with its own TTL (``control.auth.audit_retention_days``). Rows form a hash chain: each row's
``hash`` is SHA-256 over the previous row's hash and this row's fields, so deleting, changing
or reordering a row breaks every later hash (:func:`verify`). Rows expired by the TTL leave the
chain starting at the oldest kept row, whose ``prev_hash`` is taken as given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pyarrow as pa

from netobs.tables import Column, Table

log = logging.getLogger(__name__)

AUDIT = "query_audit"
GENESIS = "0" * 64

AUDIT_TABLE = Table(
    name=AUDIT,
    columns=(
        Column("seq", "UInt64", "Position in the hash chain (1, 2, ...)."),
        Column("time", "DateTime", "When the request was answered (UTC)."),
        Column("time_ms", "UInt64", "The same, in Unix milliseconds."),
        Column("principal", "String", "Who (principal name, or anonymous)."),
        Column("role", "String", "viewer, operator or admin."),
        Column("via", "String", "token, certificate or anonymous."),
        Column("peer", "String", "Client address."),
        Column("route", "String", "Endpoint path."),
        Column("sql", "String", "The statement as received."),
        Column("outcome", "String", "ok, refused (outside the grant) or error (failed on the engine)."),
        Column("error", "String", "Why it was refused or failed."),
        Column("rows", "UInt64", "Rows returned."),
        Column("prev_hash", "String", "hash of the previous row."),
        Column("hash", "String", "SHA-256 over prev_hash and the fields of this row."),
    ),
    order_by=("seq",),
    partition_by="toYYYYMM(time)",
    ttl="time",
)
FIELDS = tuple(c.name for c in AUDIT_TABLE.columns if c.name != "hash")
#: What the hash covers (``time`` is ``time_ms`` at a coarser grain, typed by the engine).
HASHED = tuple(f for f in FIELDS if f != "time")


def row_hash(row: Mapping[str, Any]) -> str:
    body = json.dumps([str(row[k]) for k in HASHED], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def verify(rows: Iterable[Mapping[str, Any]]) -> list[int]:
    """The ``seq`` of every row whose hash or link is wrong (rows in ``seq`` order); [] if intact."""
    bad, prev = [], None
    for row in rows:
        if (prev is not None and row["prev_hash"] != prev) or row_hash(row) != row["hash"]:
            bad.append(int(row["seq"]))
        prev = row["hash"]
    return bad


class AuditLog:
    """Appends rows to the chain; the head is read back from the store at start."""

    def __init__(
        self,
        insert: Callable[[pa.Table, str], Any],
        query: Callable[[str], pa.Table],
        database: str,
        insert_json: Callable[[list[dict[str, Any]], str], Any] | None = None,
    ):
        """``insert_json`` (optional): insert rows given as JSON-ready dicts, where the store has a
        cheaper path for one small row than an Arrow insert (chdb: a third of the CPU)."""
        self._insert, self._query, self._db = insert, query, database
        self._insert_json = insert_json
        self._lock = threading.Lock()
        self._seq, self._head = 0, GENESIS
        self.failures = 0

    def start(self) -> None:
        t = self._query(f"SELECT seq, hash FROM `{self._db}`.`{AUDIT}` ORDER BY seq DESC LIMIT 1")
        if t.num_rows:
            self._seq, self._head = int(t.column("seq")[0].as_py()), str(t.column("hash")[0].as_py())

    def record(self, **fields: Any) -> None:
        """Append one row; a store failure is logged and counted, never raised to the caller."""
        with self._lock:
            now = time.time()
            row: dict[str, Any] = {
                "seq": self._seq + 1,
                "time": int(now),
                "time_ms": int(now * 1000),
                "principal": "",
                "role": "",
                "via": "",
                "peer": "",
                "route": "",
                "sql": "",
                "outcome": "",
                "error": "",
                "rows": 0,
                **{k: v for k, v in fields.items() if k in FIELDS},
                "prev_hash": self._head,
            }
            row["hash"] = row_hash(row)
            try:
                if self._insert_json is not None:
                    self._insert_json([row], AUDIT)
                else:
                    self._insert(self._table(row), AUDIT)
            except Exception as e:  # the answer still goes out; the gap is counted and logged
                self.failures += 1
                log.error("query audit: cannot store the row of %s: %s", row["principal"], e)
                return
            self._seq, self._head = row["seq"], row["hash"]

    @staticmethod
    def _table(row: dict[str, Any]) -> pa.Table:
        return pa.table(
            {
                **{k: [row[k]] for k in row},
                "time": pa.array([row["time"]], pa.timestamp("s", tz="UTC")),
                "seq": pa.array([row["seq"]], pa.uint64()),
                "time_ms": pa.array([row["time_ms"]], pa.uint64()),
                "rows": pa.array([row["rows"]], pa.uint64()),
            }
        )


__all__ = ["AUDIT", "AUDIT_TABLE", "AuditLog", "row_hash", "verify"]
