"""ClickHouse server store over the native protocol (clickhouse-driver).

Columnar inserts, TLS and user/password options, cluster DDL (ReplicatedMergeTree +
Distributed ``ON CLUSTER``). Servers older than 19.x (such as Debian's 18.16) get the
``legacy`` dialect of the same schema. A dropped connection is retried with backoff;
when the server stays away the insert raises :class:`StoreUnavailable` and the caller
keeps its data (the pipeline then does not commit its offsets).
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from netobs import ddl
from netobs.config import StoreConfig
from netobs.store.base import StoreError, StoreUnavailable, converge_store, raise_classified
from netobs.store.errors import classify
from netobs.tables import Declared

T = TypeVar("T")

__all__ = ["ClickHouseStore", "arrow_to_column"]

log = logging.getLogger(__name__)

_NETWORK_ERRORS = (ch_errors.NetworkError, ch_errors.SocketTimeoutError, EOFError, OSError)
_INTEGER_TYPES = {
    f"{sign}Int{bits}": getattr(pa, f"{sign.lower()}int{bits}")()
    for sign in ("", "U")
    for bits in (8, 16, 32, 64)
}


class _Transient(Exception):
    pass


class ClickHouseStore:
    def __init__(self, config: StoreConfig, schema: Sequence[Declared] = ()):
        self.config = config
        #: The components' tables and views (from the composition root), created at start.
        self.schema = tuple(schema)
        self.database = config.database
        self.dialect = "modern"
        self._lock = threading.Lock()
        c = config.clickhouse
        tls: dict[str, Any] = {}
        if c.tls.enabled:
            tls = {"secure": True, "verify": c.tls.verify}
            if c.tls.ca_file:
                tls["ca_certs"] = str(c.tls.ca_file)
            if c.tls.cert_file:
                tls["certfile"] = str(c.tls.cert_file)
            if c.tls.key_file:
                tls["keyfile"] = str(c.tls.key_file)
        self._client = Client(
            host=c.host,
            port=c.port,
            user=c.user,
            password=c.password.get_secret_value(),
            connect_timeout=c.connect_timeout_s,
            send_receive_timeout=c.send_receive_timeout_s,
            client_name="netobs",
            **tls,
        )
        self._viewer = None
        if c.viewer_user:
            self._viewer = Client(
                host=c.host,
                port=c.port,
                user=c.viewer_user,
                password=c.viewer_password.get_secret_value(),
                connect_timeout=c.connect_timeout_s,
                send_receive_timeout=c.send_receive_timeout_s,
                client_name="netobs-viewer",
                **tls,
            )

    def start(self) -> None:
        version = self._call(lambda: self._client.execute("SELECT version()")[0][0])
        major = int(str(version).split(".")[0])
        self.dialect = "modern" if major >= 19 else "legacy"
        log.info("clickhouse server %s (%s dialect)", version, self.dialect)
        converge_store(self, self.config)

    def stop(self) -> None:
        self._client.disconnect()
        if self._viewer is not None:
            self._viewer.disconnect()

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn``; network and transient server errors (:mod:`netobs.store.errors`) are
        retried with reconnects and exponential backoff, then raised as StoreUnavailable."""
        delay = self.config.retry_backoff_s
        for attempt in range(self.config.insert_retries + 1):
            try:
                with self._lock:
                    try:
                        return fn()
                    except ch_errors.ServerException as e:
                        text = " ".join(str(e).split())
                        if classify(e.code, text) == "transient":
                            raise _Transient(text[:300]) from None
                        raise_classified(text[:500], e.code)
            except (*_NETWORK_ERRORS, _Transient) as e:
                self._client.disconnect()
                if attempt == self.config.insert_retries:
                    c = self.config.clickhouse
                    what = "unavailable" if isinstance(e, _Transient) else "unreachable"
                    raise StoreUnavailable(f"ClickHouse {c.host}:{c.port} {what}: {e}") from None
                log.warning("clickhouse: %s; retry %d in %.1fs", e, attempt + 1, delay)
                time.sleep(delay)
                delay *= 2
            except (ch_errors.TypeMismatchError, OverflowError, struct.error) as e:
                # values the driver cannot serialise for the column type
                raise StoreError(" ".join(str(e).split())[:500], "data") from None
        raise AssertionError("unreachable")

    def execute(self, sql: str) -> None:
        self._call(lambda: self._client.execute(sql))

    def _columns_of(self, table: str) -> dict[str, str]:
        rows = self._call(
            lambda: self._client.execute(
                "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(t)s",
                {"db": self.database, "t": table},
            )
        )
        return dict(rows)

    def query_arrow(self, sql: str, settings: Mapping[str, Any] | None = None) -> pa.Table:
        """Read; with ``settings`` (a guarded statement: ``readonly``...) it runs with them, and as
        ``clickhouse.viewer_user`` when one is configured (a read-only user on the server)."""
        client = self._viewer if settings and self._viewer is not None else self._client
        opts = dict(settings or {})
        if self.dialect == "legacy":
            opts.pop("additional_table_filters", None)  # pre-22 servers: the rewrite alone filters
        rows, meta = self._call(
            lambda: client.execute(sql, with_column_types=True, columnar=True, settings=opts or None)
        )
        names = [m[0] for m in meta]
        if not rows:
            return pa.table({n: pa.array([]) for n in names})
        # Integer types by name: inference would make UInt64 values >= 2**63 overflow int64.
        types = [_INTEGER_TYPES.get(m[1]) for m in meta]
        return pa.table({m[0]: pa.array(list(col), t) for m, col, t in zip(meta, rows, types, strict=True)})

    def explain_ast(self, sql: str) -> str:
        """The server's parse tree of ``sql`` (``EXPLAIN AST``, servers from 20.x; older refuse)."""
        if self.dialect == "legacy":
            raise StoreError("EXPLAIN AST needs a ClickHouse server of 20.x or later")
        rows = self._call(lambda: self._client.execute(f"EXPLAIN AST {sql}"))
        return "\n".join(str(r[0]) for r in rows)

    def insert(self, table: pa.Table, token: str | None = None, target: str = ddl.FLOWS) -> int:
        """Insert ``table`` in one columnar query; the rows the server stored (0 when it dropped
        the block as a duplicate). Values a column type cannot hold raise StoreError."""
        names = table.schema.names
        legacy = self.dialect == "legacy"
        try:
            columns = [arrow_to_column(table.column(n), legacy) for n in names]
        except (ValueError, OverflowError) as e:
            raise StoreError(f"cannot insert {table.num_rows} rows into {target}: {e}", "data") from None
        sql = f"INSERT INTO `{self.database}`.`{target}` ({', '.join(f'`{n}`' for n in names)}) VALUES"
        # numpy columns write numbers and times as one buffer; strings go as the bytes Arrow holds
        # (no encoding per value: 3x faster to write than str).
        settings: dict[str, Any] = {"use_numpy": True, "strings_as_bytes": True}
        if token and not legacy:
            settings["insert_deduplication_token"] = token

        def run() -> int:
            before = self._duplicated_blocks()
            self._client.execute(sql, columns, columnar=True, settings=settings)
            return 0 if self._duplicated_blocks() > before else table.num_rows

        return self._call(run)

    def _duplicated_blocks(self) -> int:
        """The server's count of inserted blocks it dropped as duplicates. No server tells an
        INSERT's client so (18.16 sends no written rows): read around each insert, under the
        store's lock, it is exact unless another client deduplicates on the same server at the
        same moment."""
        rows = self._client.execute(
            "SELECT value FROM system.events WHERE event = 'DuplicatedInsertedBlocks'"
        )
        return int(rows[0][0]) if rows else 0


# ---- Arrow → clickhouse-driver (numpy) columns ---------------------------------------------------
#: DateTime (the legacy dialect's time type) is unsigned 32-bit seconds: 1970-01-01 .. 2106-02-07.
_DATETIME_MAX_S = 2**32 - 1


class _QuietIPv6Fallback(logging.Filter):
    """The driver has no numpy IPv6 column and warns, per insert, that it uses its generic one;
    that one takes the 16-byte values :func:`arrow_to_column` gives it (the expected path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        return not (msg.startswith("NumPy support is not implemented") and record.args == ("IPv6",))


_driver_log = logging.getLogger("clickhouse_driver.columns.service")
if not any(isinstance(f, _QuietIPv6Fallback) for f in _driver_log.filters):
    _driver_log.addFilter(_QuietIPv6Fallback())


def arrow_to_column(col: pa.ChunkedArray | pa.Array, legacy: bool = False) -> np.ndarray:
    """One Arrow column → the numpy array clickhouse-driver writes (``use_numpy`` and
    ``strings_as_bytes``) for the column's ClickHouse type in the dialect (see :mod:`netobs.ddl`).

    Vectorized: timestamps as integers (DateTime64(3): milliseconds; legacy DateTime:
    seconds, floored), strings as their UTF-8 ``bytes``, 16-byte addresses sliced from the
    Arrow buffer, dictionary columns decoded once per chunk through their (small)
    dictionary. NULL becomes the type's default ('' / 0 / the epoch / ::), as ClickHouse
    does for a non-Nullable column. A value the type cannot hold raises ValueError.
    """
    chunked = pa.chunked_array([col]) if isinstance(col, pa.Array) else col
    typ = chunked.type
    if pa.types.is_dictionary(typ):
        return _dictionary(chunked, legacy)
    if pa.types.is_timestamp(typ):
        return _timestamps(chunked, legacy)
    if pa.types.is_fixed_size_binary(typ):
        return _fixed_binary(chunked)
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return np.asarray(_utf8(chunked).to_numpy(), dtype=object)
    if chunked.null_count and (pa.types.is_integer(typ) or pa.types.is_floating(typ)):
        chunked = pc.fill_null(chunked, 0)  # before to_numpy, which would make NULLs float NaN
    return np.asarray(chunked.to_numpy())


def _dictionary(col: pa.ChunkedArray, legacy: bool) -> np.ndarray:
    """Decode a dictionary column: each chunk's dictionary becomes Python values once, and the
    rows take them by index (every row of a value shares one object). ``ChunkedArray.to_numpy``
    is not used: on chunks with NULL indices it returns other rows' values (pyarrow 26)."""
    value_type = col.type.value_type
    if not (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)):
        decoded = [c.dictionary.take(c.indices) for c in col.chunks]
        return arrow_to_column(pa.chunked_array(decoded, value_type), legacy)
    parts = []
    for chunk in col.chunks:
        values = np.empty(len(chunk.dictionary) + 1, dtype=object)
        values[:-1] = _utf8(chunk.dictionary).to_numpy(zero_copy_only=False)
        values[-1] = b""  # what a NULL index takes
        indices = chunk.indices
        if indices.null_count:
            indices = pc.fill_null(indices, len(chunk.dictionary))
        parts.append(values[indices.to_numpy()])
    return _concat(parts, object)


def _utf8(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Strings as binary (NULL: empty): ``to_numpy`` then makes ``bytes``, not ``str``."""
    if values.null_count:
        values = pc.fill_null(values, "")
    return values.cast(pa.large_binary() if pa.types.is_large_string(values.type) else pa.binary())


def _timestamps(col: pa.ChunkedArray, legacy: bool) -> np.ndarray:
    """Milliseconds since the epoch (DateTime64(3)), or whole seconds, floored (DateTime)."""
    if col.type.unit != "ms":
        col = col.cast(pa.timestamp("ms", tz=col.type.tz), safe=False)
    ms = col.cast(pa.int64())
    if ms.null_count:
        ms = pc.fill_null(ms, 0)
    out = np.asarray(ms.to_numpy(), dtype=np.int64)
    if not legacy:
        return out
    seconds = out // 1000
    bad = (seconds < 0) | (seconds > _DATETIME_MAX_S)
    if bad.any():
        first = np.datetime_as_string(out[bad][:1].astype("datetime64[ms]"))[0]  # any value: no OverflowError
        raise ValueError(
            f"{int(bad.sum())} times outside DateTime's range 1970-01-01..2106-02-07, e.g. {first}"
        )
    return seconds.astype(np.uint32)


def _fixed_binary(col: pa.ChunkedArray) -> np.ndarray:
    """Each value as ``bytes`` of the type's width, sliced from the chunks' data buffers; NULLs
    become zero bytes (the address ``::``)."""
    width = col.type.byte_width
    parts = []
    for chunk in col.chunks:
        n = len(chunk)
        if not n:
            continue
        data = np.frombuffer(chunk.buffers()[1], dtype=np.uint8, count=(chunk.offset + n) * width)
        rows = data[chunk.offset * width :].reshape(n, width)
        if chunk.null_count:
            rows = rows.copy()
            rows[~np.asarray(chunk.is_valid().to_numpy(zero_copy_only=False))] = 0
        parts.append(rows)
    if not parts:
        return np.empty(0, dtype=object)
    rows = np.ascontiguousarray(_concat(parts, np.uint8))
    return rows.view(f"V{width}").ravel().astype(object)


def _concat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    if not parts:
        return np.empty(0, dtype=dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
