"""ClickHouse server store over the native protocol (clickhouse-driver).

Columnar inserts, TLS and user/password options, cluster DDL (ReplicatedMergeTree +
Distributed ``ON CLUSTER``). Servers older than 19.x (such as Debian's 18.16) get the
``legacy`` dialect of the same schema. A dropped connection is retried with backoff;
when the server stays away the insert raises :class:`StoreUnavailable` and the caller
keeps its data (the pipeline then does not commit its offsets).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from netobs import ddl
from netobs.config import StoreConfig
from netobs.store.base import StoreError, StoreUnavailable, converge_store

log = logging.getLogger(__name__)

_NETWORK_ERRORS = (ch_errors.NetworkError, ch_errors.SocketTimeoutError, EOFError, OSError)
#: Server errors that pass (retry, then StoreUnavailable) rather than reject the data: a
#: replicated table is read-only until its ZooKeeper session is back after a restart, etc.
_TRANSIENT_CODES = {
    159,  # TIMEOUT_EXCEEDED
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    225,  # NO_ZOOKEEPER
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    252,  # TOO_MANY_PARTS
    999,  # KEEPER_EXCEPTION
}


class _Transient(Exception):
    pass


class ClickHouseStore:
    def __init__(self, config: StoreConfig):
        self.config = config
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

    def start(self) -> None:
        version = self._call(lambda: self._client.execute("SELECT version()")[0][0])
        major = int(str(version).split(".")[0])
        self.dialect = "modern" if major >= 19 else "legacy"
        log.info("clickhouse server %s (%s dialect)", version, self.dialect)
        converge_store(self, self.config)

    def stop(self) -> None:
        self._client.disconnect()

    def _call(self, fn):
        """Run ``fn`` with reconnects and exponential backoff on network errors."""
        delay = self.config.retry_backoff_s
        for attempt in range(self.config.insert_retries + 1):
            try:
                with self._lock:
                    try:
                        return fn()
                    except ch_errors.ServerException as e:
                        if e.code in _TRANSIENT_CODES:
                            raise _Transient(" ".join(str(e).split())[:300]) from None
                        raise
            except (*_NETWORK_ERRORS, _Transient) as e:
                self._client.disconnect()
                if attempt == self.config.insert_retries:
                    c = self.config.clickhouse
                    raise StoreUnavailable(f"ClickHouse {c.host}:{c.port} unreachable: {e}") from None
                log.warning("clickhouse: %s; retry %d in %.1fs", e, attempt + 1, delay)
                time.sleep(delay)
                delay *= 2
            except ch_errors.ServerException as e:
                raise StoreError(" ".join(str(e).split())[:500]) from None
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

    def query_arrow(self, sql: str) -> pa.Table:
        rows, meta = self._call(lambda: self._client.execute(sql, with_column_types=True, columnar=True))
        names = [m[0] for m in meta]
        if not rows:
            return pa.table({n: pa.array([]) for n in names})
        return pa.table({n: pa.array(list(col)) for n, col in zip(names, rows, strict=True)})

    def insert(self, table: pa.Table, token: str | None = None, target: str = ddl.FLOWS) -> None:
        names = table.schema.names
        columns = [self._column(table.schema.field(n).type, table.column(n)) for n in names]
        sql = f"INSERT INTO `{self.database}`.`{target}` ({', '.join(f'`{n}`' for n in names)}) VALUES"
        settings = {"insert_deduplication_token": token} if token and self.dialect == "modern" else None
        self._call(lambda: self._client.execute(sql, columns, columnar=True, settings=settings))

    def _column(self, typ: pa.DataType, col: pa.ChunkedArray) -> list:
        """Arrow column → the Python values clickhouse-driver writes for the dialect's type."""
        if pa.types.is_timestamp(typ):
            ms = col.cast(pa.int64()).to_numpy()
            if self.dialect == "legacy":
                return [datetime.fromtimestamp(v // 1000, UTC).replace(tzinfo=None) for v in ms.tolist()]
            return [datetime.fromtimestamp(v / 1000, UTC) for v in ms.tolist()]
        if pa.types.is_fixed_size_binary(typ):
            raw = col.to_pylist()
            if self.dialect == "legacy":
                return raw
            import ipaddress

            return [ipaddress.IPv6Address(b) for b in raw]
        if pa.types.is_string(typ):
            return col.to_pylist()
        return np.asarray(col.to_numpy()).tolist()
