"""The HTTP(S) control endpoint of a running netobs process, as a table of routes.

Routes (:class:`Route`) are added by whoever serves something: the runtime adds ``/query``,
``/health``, ``/livez``, ``/readyz`` and ``/metrics``; other features add theirs with
:meth:`ControlServer.add_route`. Every request passes the same gate before its handler:

- ``Host`` must name this endpoint (its address, localhost, ``control.auth.allowed_hosts``):
  a DNS-rebound name is refused;
- a request carrying an ``Origin`` not in ``control.auth.allowed_origins``, or marked
  ``Sec-Fetch-Site: cross-site``, is refused; a ``POST`` must have a non-simple content type
  (``application/sql``), which a cross-site page cannot send without a CORS preflight we never
  grant;
- a route with a ``role`` authenticates the caller (:mod:`netobs.auth`: bearer token, client
  certificate, or anonymous loopback) and refuses one below that role;
- a ``token_only`` route (``/clickhouse``) takes only a token in the Authorization header (Bearer,
  or Basic with the token as password when ``basic_auth``), never the anonymous role or a client
  certificate, which a browser could attach to a cross-site request by itself; since a cross-site
  page cannot send that header, such a route's POST may carry any content type (ClickHouse
  clients post SQL as text/plain or untyped).

The endpoint binds to loopback unless TLS and principals are configured (the config refuses
otherwise). Only one process may open an embedded chdb directory, so while ``netobs run`` owns
it, ``netobs query``, ``analyze``, ``report`` and ``alerts send`` reach the store through it.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pyarrow as pa

from netobs import metrics
from netobs.auth import Authenticator, AuthError, Principal, Role, client_token
from netobs.config import ControlAuthConfig, ControlConfig, ControlTLSConfig

log = logging.getLogger(__name__)

ARROW_STREAM = "application/vnd.apache.arrow.stream"
SQL_TYPE = "application/sql"
MAX_BODY_BYTES = 1 << 20
MAX_SQL_BYTES = MAX_BODY_BYTES
#: Content types a cross-site page may send without a CORS preflight (the Fetch standard).
SIMPLE_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})

requests_total = metrics.control_requests
refused_total = metrics.control_refused


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    peer: str
    principal: Principal | None = None


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    #: Least role the caller needs; None: no authentication (health, metrics).
    role: Role | None = None
    #: Content types a POST may carry (all non-simple, unless ``token_only``).
    content_types: tuple[str, ...] = (SQL_TYPE,)
    #: Also accept ``Authorization: Basic`` with a token as the password (ClickHouse clients).
    basic_auth: bool = False
    #: Only a token in the Authorization header authenticates (never anonymous, never a client
    #: certificate). A cross-site page cannot make a browser send that header without a CORS
    #: preflight we never grant, so such a route's POST may take any content type.
    token_only: bool = False


def text(status: int, message: str) -> Response:
    return Response(status, (message.rstrip("\n") + "\n").encode())


def json_response(status: int, data: Any) -> Response:
    return Response(status, json.dumps(data).encode(), "application/json")


class ControlServer:
    """Serves its routes in a background thread. Constructed inert."""

    def __init__(
        self,
        config: ControlConfig | str,
        routes: Iterable[Route] = (),
        *,
        listen: str | None = None,
        authenticator: Authenticator | None = None,
        tls: bool = True,
        check_host: bool = True,
    ):
        if isinstance(config, str):
            config = ControlConfig(listen=config)
        self.config = config
        address = listen or config.listen
        host, _, port = address.rpartition(":")
        self._addr = (host.strip("[]") or "127.0.0.1", int(port))
        self._auth = authenticator or Authenticator(config.auth)
        self._tls = tls and config.tls.enabled
        self._check_host = check_host
        self._routes: dict[tuple[str, str], Route] = {}
        for r in routes:
            self.add_route(r)
        self._server: ThreadingHTTPServer | None = None

    def add_route(self, route: Route) -> None:
        key = (route.method.upper(), route.path)
        if key in self._routes:
            raise ValueError(f"route {route.method} {route.path} already served")
        if route.token_only and route.role is None:
            raise ValueError(f"route {route.path}: token_only needs a role")
        if (
            route.method.upper() == "POST"
            and not route.token_only
            and SIMPLE_TYPES & set(route.content_types)
        ):
            raise ValueError(f"route {route.path}: a POST must not accept a simple content type")
        self._routes[key] = route

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def scheme(self) -> str:
        return "https" if self._tls else "http"

    def start(self) -> None:
        try:
            self._server = ThreadingHTTPServer(self._addr, _handler(self))
        except OSError as e:
            raise OSError(
                f"control endpoint cannot listen on {self._addr[0]}:{self._addr[1]}: {e.strerror}"
            ) from None
        if self._tls:
            # The handshake happens in the request's thread (first read), not in accept(): a
            # client that connects and stays silent must not stall the endpoint.
            self._server.socket = _server_context(self.config.tls).wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
            self._server.handle_error = _log_handshake_error  # type: ignore[method-assign]
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="control", daemon=True).start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # ---- the gate --------------------------------------------------------------------------
    def dispatch(self, req: Request, peer_cert: dict[str, Any] | None) -> Response:
        refusal = self._check_site(req)
        if refusal is not None:
            refused_total.labels(refusal[0]).inc()
            return text(403, refusal[1])
        route = self._routes.get((req.method, req.path))
        if route is None:
            allowed = [m for m, p in self._routes if p == req.path]
            return text(405, "method not allowed") if allowed else text(404, "not found")
        if req.method == "POST" and not route.token_only:
            ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in route.content_types:
                refused_total.labels("content_type").inc()
                return text(415, f"expected Content-Type: {' or '.join(route.content_types)}")
        if route.role is not None:
            try:
                req.principal = self._auth.authenticate(
                    req.headers,
                    peer_cert,
                    req.peer,
                    basic=route.basic_auth,
                    token_only=route.token_only,
                )
            except AuthError as e:
                refused_total.labels("unauthenticated" if e.status == 401 else "forbidden").inc()
                resp = text(e.status, str(e))
                if e.status == 401:
                    resp.headers["WWW-Authenticate"] = 'Bearer realm="netobs"'
                return resp
            if not req.principal.at_least(route.role):
                refused_total.labels("forbidden").inc()
                return text(
                    403,
                    f"{req.path} needs the {route.role} role; {req.principal.name} is {req.principal.role}",
                )
        return route.handler(req)

    def _check_site(self, req: Request) -> tuple[str, str] | None:
        host = _host_name(req.headers.get("host", ""))
        if self._check_host and (host is None or host not in self._hosts()):
            return (
                "host",
                f"Host {req.headers.get('host', '')!r} is not this endpoint (control.auth.allowed_hosts)",
            )
        origin = req.headers.get("origin")
        if origin is not None and origin not in self.config.auth.allowed_origins:
            return "origin", f"Origin {origin!r} is not allowed (control.auth.allowed_origins)"
        if req.headers.get("sec-fetch-site") == "cross-site":
            return "origin", "cross-site requests are not allowed"
        return None

    def _hosts(self) -> set[str]:
        names = {"localhost", "127.0.0.1", "::1", self._addr[0].lower()}
        if self._server is not None:
            names.add(str(self._server.server_address[0]).lower())
        return names | {h.lower() for h in self.config.auth.allowed_hosts}


def _host_name(header: str) -> str | None:
    """The name part of a Host header (``[v6]:port``, ``name:port``, ``name``), lower case."""
    header = header.strip().lower()
    if not header:
        return None
    if header.startswith("["):
        end = header.find("]")
        return header[1:end] if end > 0 else None
    name, _, port = header.partition(":")
    if port and not port.isdigit():
        return None
    return name


def _log_handshake_error(request: Any, client_address: Any) -> None:
    """A failed TLS handshake (a plain-HTTP client, an untrusted certificate): one debug line."""
    log.debug("control: connection from %s failed", client_address, exc_info=True)


def _server_context(tls: ControlTLSConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.client_ca_file is not None:
        ctx.load_verify_locations(str(tls.client_ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def _handler(server: ControlServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("control: " + fmt, *args)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _serve(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0 or length > MAX_BODY_BYTES:
                self._send(text(413, f"body larger than {MAX_BODY_BYTES} bytes"), url.path)
                return
            req = Request(
                method,
                url.path,
                urllib.parse.parse_qs(url.query),
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length) if length else b"",
                str(self.client_address[0]),
            )
            cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
            try:
                resp = server.dispatch(req, cert)
            except Exception as e:  # a handler's bug answers 500; the server lives on
                log.exception("control: %s %s failed", method, url.path)
                resp = text(500, f"internal error: {type(e).__name__}")
            self._send(resp, url.path)

        def _send(self, resp: Response, path: str) -> None:
            requests_total.labels(
                path if (self.command, path) in server._routes else "other", str(resp.status)
            ).inc()
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "no-store")
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(resp.body)

    return Handler


# ---- routes every process serves ---------------------------------------------------------
def metrics_route() -> Route:
    return Route(
        "GET", "/metrics", lambda req: Response(200, metrics.exposition(), "text/plain; version=0.0.4")
    )


def health_routes(
    health: Callable[[], dict[str, Any]], ready: Callable[[], bool] | None = None
) -> list[Route]:
    """``/health`` (JSON: status ok / degraded / failing, reasons), ``/livez`` (503 once failing),
    ``/readyz`` (503 while failing or not ready)."""

    def full(req: Request) -> Response:
        h = {"status": "ok", **health()}
        return json_response(503 if h["status"] == "failing" else 200, h)

    def livez(req: Request) -> Response:
        h = health()
        return text(503, "failing") if h.get("status") == "failing" else text(200, "ok")

    def readyz(req: Request) -> Response:
        h = health()
        if h.get("status") == "failing" or (ready is not None and not ready()):
            return text(503, "not ready: " + "; ".join(f"{k}: {v}" for k, v in h.get("reasons", {}).items()))
        return text(200, "ready")

    return [Route("GET", "/health", full), Route("GET", "/livez", livez), Route("GET", "/readyz", readyz)]


def arrow_response(table: pa.Table) -> Response:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return Response(200, sink.getvalue().to_pybytes(), ARROW_STREAM)


# ---- the client side ---------------------------------------------------------------------
class RemoteError(RuntimeError):
    """The running process answered with an error; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _target(where: ControlConfig | str) -> tuple[str, str | None, ssl.SSLContext | None]:
    """Base URL, token, TLS context of the endpoint ``where`` configures."""
    if isinstance(where, str):
        where = ControlConfig(listen=where, auth=ControlAuthConfig(anonymous_role="operator"))
    host, _, port = where.listen.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    ctx = None
    if where.tls.enabled:
        ctx = ssl.create_default_context(cafile=str(where.tls.ca_file) if where.tls.ca_file else None)
    scheme = "https" if ctx else "http"
    return f"{scheme}://{shown}:{port}", client_token(where.auth), ctx


def remote_query(where: ControlConfig | str, sql: str, timeout_s: float = 300.0) -> pa.Table:
    """Run ``sql`` on the process whose control endpoint ``where`` configures (or is at).

    Sends the token of ``$NETOBS_TOKEN`` / ``control.auth.token_file``. Raises
    ``ConnectionRefusedError`` when nothing listens there, :class:`RemoteError` when the query
    was refused or failed on the server.
    """
    base, token, ctx = _target(where)
    headers = {"Content-Type": SQL_TYPE}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"{base}/query", data=sql.encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s, context=ctx) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        raise RemoteError(e.read().decode("utf-8", "replace").strip(), e.code) from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, ConnectionRefusedError):
            raise e.reason from None
        raise
    return pa.ipc.open_stream(body).read_all()


def remote_health(where: ControlConfig | str, timeout_s: float = 2.0) -> dict[str, Any]:
    base, _, ctx = _target(where)
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=timeout_s, context=ctx) as resp:
            health: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as e:  # 503 while failing still carries the JSON
        health = json.loads(e.read())
    return health


__all__ = [
    "ARROW_STREAM",
    "SQL_TYPE",
    "ControlServer",
    "RemoteError",
    "Request",
    "Response",
    "Route",
    "arrow_response",
    "health_routes",
    "json_response",
    "metrics_route",
    "remote_health",
    "remote_query",
    "text",
]
