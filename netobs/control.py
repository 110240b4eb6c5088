"""The HTTP control endpoint of a running netobs process.

``GET /metrics`` (Prometheus), ``GET /health`` (JSON), ``POST /query`` (SQL in the body,
an Arrow IPC stream back). Only one process may open an embedded chdb directory, so
while ``netobs run`` owns it, ``netobs query``, ``analyze``, ``report`` and ``alerts send`` reach the
store through this endpoint. It binds to loopback by default; it runs whatever SQL it is
given, so never expose it beyond the host without a proxy that authenticates.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pyarrow as pa

from netobs import metrics

log = logging.getLogger(__name__)

ARROW_STREAM = "application/vnd.apache.arrow.stream"
MAX_SQL_BYTES = 1 << 20


class ControlServer:
    """Serves the endpoint in a background thread. Constructed inert."""

    def __init__(
        self,
        listen: str,
        query: Callable[[str], pa.Table] | None = None,
        health: Callable[[], dict[str, Any]] | None = None,
    ):
        host, _, port = listen.rpartition(":")
        self._addr = (host.strip("[]") or "127.0.0.1", int(port))
        self._query = query
        self._health = health or (lambda: {})
        self._server: ThreadingHTTPServer | None = None

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("control: " + fmt, *args)

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, metrics.exposition(), "text/plain; version=0.0.4")
                elif self.path == "/health":
                    health = {"status": "ok", **outer._health()}
                    body = json.dumps(health).encode()
                    self._send(503 if health["status"] == "failing" else 200, body, "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def do_POST(self) -> None:
                if self.path != "/query" or outer._query is None:
                    self._send(404, b"not found\n", "text/plain")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length <= 0 or length > MAX_SQL_BYTES:
                    self._send(400, b"expected a SQL statement in the body\n", "text/plain")
                    return
                sql = self.rfile.read(length).decode("utf-8", "replace")
                try:
                    table = outer._query(sql)
                except Exception as e:  # the error goes back to the caller, the server lives on
                    self._send(400, str(e).encode(), "text/plain")
                    return
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, table.schema) as w:
                    w.write_table(table)
                self._send(200, sink.getvalue().to_pybytes(), ARROW_STREAM)

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        try:
            self._server = ThreadingHTTPServer(self._addr, Handler)
        except OSError as e:
            raise OSError(
                f"control endpoint cannot listen on {self._addr[0]}:{self._addr[1]}: {e.strerror}"
            ) from None
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="control", daemon=True).start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()


class RemoteError(RuntimeError):
    """The running process answered with an error."""


def remote_query(listen: str, sql: str, timeout_s: float = 300.0) -> pa.Table:
    """Run ``sql`` on the process whose control endpoint is at ``listen``.

    Raises ``ConnectionRefusedError`` when nothing listens there, :class:`RemoteError`
    when the query failed on the server.
    """
    req = urllib.request.Request(f"http://{listen}/query", data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        raise RemoteError(e.read().decode("utf-8", "replace").strip()) from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, ConnectionRefusedError):
            raise e.reason from None
        raise
    return pa.ipc.open_stream(body).read_all()


def remote_health(listen: str, timeout_s: float = 2.0) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{listen}/health", timeout=timeout_s) as resp:
        health: dict[str, Any] = json.loads(resp.read())
        return health
