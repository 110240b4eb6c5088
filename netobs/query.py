"""``netobs query``: run SQL on the configured store and print the result."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa

from netobs.batch import ip_str
from netobs.config import Settings
from netobs.control import remote_query
from netobs.store import make_store


def run_query(settings: Settings, sql: str) -> pa.Table:
    """Through the running process's control endpoint when there is one, else directly.

    An embedded store can be opened by one process only; a server store could be
    queried directly, but going through a running process keeps one code path.
    """
    try:
        return remote_query(settings.control, sql)
    except ConnectionRefusedError:
        pass
    store = make_store(settings.store)
    store.start()
    try:
        return store.query_arrow(sql)
    finally:
        store.stop()


class Querier:
    """Runs many statements on the configured store: through a running process if one answers,
    else on a store opened once (and closed by :meth:`close`)."""

    def __init__(self, settings: Settings):
        self._listen = settings.control
        self._store = None
        try:
            remote_query(self._listen, "SELECT 1")
        except ConnectionRefusedError:
            self._store = make_store(settings.store)
            self._store.start()

    def __call__(self, sql: str) -> pa.Table:
        if self._store is not None:
            return self._store.query_arrow(sql)
        return remote_query(self._listen, sql)

    def close(self) -> None:
        if self._store is not None:
            self._store.stop()
            self._store = None

    def __enter__(self) -> Querier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _text(value: object) -> str:
    if isinstance(value, bytes) and len(value) == 16:
        return ip_str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, bytes):
        return value.hex()
    return "" if value is None else str(value)


def format_table(table: pa.Table, fmt: str = "table") -> str:
    names = table.schema.names
    rows = [[_text(v) for v in row.values()] for row in table.to_pylist()]
    if fmt == "jsonl":
        return "".join(json.dumps(dict(zip(names, r, strict=True))) + "\n" for r in rows)
    if fmt == "tsv":
        return "\t".join(names) + "\n" + "".join("\t".join(r) + "\n" for r in rows)
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() + "\n"

    return line(names) + line(["-" * w for w in widths]) + "".join(line(r) for r in rows)
