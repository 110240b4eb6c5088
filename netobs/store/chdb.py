"""Embedded store: the ClickHouse engine in-process (chdb), one owning process per directory.

Inserts go from Arrow through chdb's ``Python()`` table function (no text round trip;
dictionary-encoded columns go to LowCardinality ones as they are); reads come back as Arrow.
``Python()`` measured ahead of ``INSERT ... FORMAT ArrowStream`` through ``send_insert``
(~230k against ~160k enriched rows per CPU-second into ``flows`` and its views). chdb sessions are shared between threads under one lock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from netobs import ddl
from netobs.config import StoreConfig
from netobs.store.base import StoreUnavailable, converge_store, raise_classified
from netobs.tables import Declared

#: Settings of an insert into ``flows``, which feeds the rollups' materialized views
#: (:data:`netobs.ddl.ROLLUPS`): each view's GROUP BY already gives one row per key of its target's
#: ORDER BY, so ``optimize_on_insert`` (collapsing the block's equal keys again before the Summing/
#: AggregatingMergeTree part is written) only re-sorts it (about 5% of an insert's CPU); the views
#: run side by side (``parallel_view_processing``) instead of one after the other: they are most of
#: an insert's time (about 0.6 of 0.25 + 0.35 s for 200k enriched flows on one core).
FLOWS_INSERT_SETTINGS = ["optimize_on_insert = 0", "parallel_view_processing = 1"]


class ChdbStore:
    dialect = "modern"

    def __init__(self, config: StoreConfig, schema: Sequence[Declared] = ()):
        self.config = config
        #: The components' tables and views (from the composition root), created at start.
        self.schema = tuple(schema)
        self.database = config.database
        self._session: Any = None
        self._lock = threading.Lock()
        self._insert_lock = threading.Lock()  # one insert at a time, so its event counts are its own

    def start(self) -> None:
        from chdb import session

        path = self.config.chdb.path
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._session = session.Session(str(path))  # type: ignore[no-untyped-call]
        except Exception as e:  # chdb raises plain RuntimeError-likes, e.g. a locked directory
            raise StoreUnavailable(f"cannot open embedded store at {path}: {_first_line(e)}") from None
        converge_store(self, self.config)

    def stop(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def _columns_of(self, table: str) -> dict[str, str]:
        t = self.query_arrow(
            f"SELECT name, type FROM system.columns WHERE database = '{self.database}' AND table = '{table}'"
        )
        return dict(zip(t.column("name").to_pylist(), t.column("type").to_pylist(), strict=True))

    def _run(self, sql: str, fmt: str = "CSV") -> Any:
        if self._session is None:
            raise StoreUnavailable("embedded store is not open")
        with self._lock:
            try:
                return self._session.query(sql, fmt)
            except Exception as e:  # chdb raises RuntimeError-likes carrying "Code: N. DB::Exception"
                if fmt == "ArrowTable":
                    self._drain_arrow()
                raise_classified(_first_line(e), detail=str(e))

    def _drain_arrow(self) -> None:
        """After an Arrow result failed part way (e.g. chdb's "Dictionary replacement detected when
        writing IPC file format" for a UNION of LowCardinality and plain strings), chdb hands its
        leftover bytes to the next Arrow query of the session, which then fails with "Invalid
        flatbuffers message": one throwaway query takes them, so no other caller sees that error."""
        try:
            self._session.query("SELECT 1", "ArrowTable")
        except Exception:  # noqa: S110 - it exists to fail in place of the next query
            pass

    def execute(self, sql: str) -> None:
        self._run(sql)

    def query_arrow(self, sql: str, settings: Mapping[str, Any] | None = None) -> pa.Table:
        """Read; ``settings`` (e.g. ``readonly``) are applied to this statement only, as a
        SETTINGS clause after it (a guarded statement carries none of its own)."""
        if settings:
            sql = f"{sql}\nSETTINGS {settings_clause(settings)}"
        return self._run(sql, "ArrowTable")

    def explain_ast(self, sql: str) -> str:
        """The engine's own parse tree of ``sql`` (``EXPLAIN AST``), one node per line."""
        res = self._run(f"EXPLAIN AST {sql}", "TSVRaw")
        return bytes(res.bytes()).decode() if hasattr(res, "bytes") else str(res)

    def query_format(self, sql: str, fmt: str, settings: Mapping[str, Any] | None = None) -> bytes:
        """The result in a ClickHouse output format, as bytes; ``settings`` as for :meth:`query_arrow`."""
        if settings:
            sql = f"{sql}\nSETTINGS {settings_clause(settings)}"
        return bytes(self._run(sql, fmt).bytes())

    def insert(self, table: pa.Table, token: str | None = None, target: str = ddl.FLOWS) -> int:
        """Insert ``table``; the rows stored (0 when the engine dropped them as a duplicate block,
        read from its event counter: exact, this process is the engine's only user)."""
        cols = ", ".join(f"`{n}`" for n in table.schema.names)
        given = [f"insert_deduplication_token = '{_quote(token)}'"] if token else []
        if target == ddl.FLOWS:
            given += FLOWS_INSERT_SETTINGS
        settings = f" SETTINGS {', '.join(given)}" if given else ""
        # One chunk per column: chdb reads a chunked table batch by batch, each batch paying the
        # per-column setup again (a dictionary column: its whole dictionary), which made a
        # 200k-row insert of 20 concatenated messages ~1.5x slower than the one copy here.
        if any(col.num_chunks > 1 for col in table.columns):
            table = table.combine_chunks()
        data = table  # chdb's Python() finds the object by this local name
        with self._insert_lock:
            before = self._duplicated_blocks() if token else 0
            self._run(
                f"INSERT INTO `{self.database}`.`{target}` ({cols}){settings} SELECT {cols} FROM Python(data)"
            )
            duplicated = self._duplicated_blocks() > before if token else False
        del data
        return 0 if duplicated else table.num_rows

    def insert_json(self, rows: list[dict[str, Any]], target: str) -> None:
        """Insert a few rows given as dicts (times as epoch seconds): ``INSERT ... FORMAT JSONEachRow``
        with the rows inline. For one small row it costs about a third of :meth:`insert`'s CPU (no
        Arrow scan through ``Python()``); every value is JSON-escaped into the data part (ASCII
        only, no raw quote or newline), which the engine reads as data, never as SQL."""
        if not rows:
            return
        data = "\n".join(json.dumps(r, ensure_ascii=True, allow_nan=False) for r in rows)
        with self._insert_lock:
            self._run(f"INSERT INTO `{self.database}`.`{target}` FORMAT JSONEachRow {data}")

    def _duplicated_blocks(self) -> int:
        t = self.query_arrow("SELECT value FROM system.events WHERE event = 'DuplicatedInsertedBlocks'")
        return int(t.column(0)[0].as_py()) if t.num_rows else 0


def settings_clause(settings: Mapping[str, Any]) -> str:
    """``k=v, ...`` with ``readonly`` last (once set, no later setting may change)."""
    items = sorted(settings.items(), key=lambda kv: kv[0] == "readonly")
    return ", ".join(f"{k}={_setting_value(v)}" for k, v in items)


def _setting_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"'{_quote(str(k))}': '{_quote(str(v))}'" for k, v in value.items()) + "}"
    return f"'{_quote(str(value))}'"


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace("'", "\\'")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
