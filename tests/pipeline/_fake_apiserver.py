"""A small Kubernetes API server for tests: list and watch in the real wire format.

No kube-apiserver can run on the project's machines, so the official ``kubernetes``
client is tested against this server instead. It serves ``/api/v1/{pods,namespaces,nodes,services}``,
``/apis/kubeovn.io/v1/{subnets,vpcs,ips}`` and ``/apis/networking.k8s.io/v1/networkpolicies``
(every namespace's, as ``list_network_policy_for_all_namespaces`` asks): a list returns ``{kind}List`` with
``metadata.resourceVersion``; ``?watch=true`` returns a chunked stream of JSON watch
events (``{"type": ..., "object": ...}``, one per line) after the given resourceVersion,
and, when that version is older than the compacted history, the apiserver's
``ERROR`` event carrying a ``Status`` with code 410 (Gone), which forces a relist.

It also serves ``coordination.k8s.io/v1`` Leases (get, create, replace) with the apiserver's
optimistic concurrency: a create of an existing name and a replace whose ``resourceVersion`` is
not the current one get ``409 Conflict``; ``down`` makes every request fail with 503.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

# Kube-OVN's underlay, NAT/EIP and QoS resources (cluster-scoped, kubeovn.io/v1).
_KUBE_OVN = {
    "vlans": "Vlan",
    "provider-networks": "ProviderNetwork",
    "ovn-eips": "OvnEip",
    "ovn-fips": "OvnFip",
    "ovn-snat-rules": "OvnSnatRule",
    "ovn-dnat-rules": "OvnDnatRule",
    "iptables-eips": "IptablesEIP",
    "iptables-fip-rules": "IptablesFIPRule",
    "iptables-snat-rules": "IptablesSnatRule",
    "iptables-dnat-rules": "IptablesDnatRule",
    "qos-policies": "QoSPolicy",
    "vpc-nat-gateways": "VpcNatGateway",
}

_PATHS = {
    "/api/v1/pods": ("pods", "v1", "Pod"),
    "/api/v1/namespaces": ("namespaces", "v1", "Namespace"),
    "/api/v1/nodes": ("nodes", "v1", "Node"),
    "/api/v1/services": ("services", "v1", "Service"),
    "/apis/kubeovn.io/v1/subnets": ("subnets", "kubeovn.io/v1", "Subnet"),
    "/apis/kubeovn.io/v1/vpcs": ("vpcs", "kubeovn.io/v1", "Vpc"),
    "/apis/kubeovn.io/v1/ips": ("ips", "kubeovn.io/v1", "IP"),
    **{f"/apis/kubeovn.io/v1/{res}": (res, "kubeovn.io/v1", kind) for res, kind in _KUBE_OVN.items()},
    "/apis/networking.k8s.io/v1/networkpolicies": (
        "networkpolicies",
        "networking.k8s.io/v1",
        "NetworkPolicy",
    ),
}
_KINDS = {res: (api, kind) for res, api, kind in _PATHS.values()}
_LEASE = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases(?:/([^/]+))?$")


class FakeApiServer:
    """State (objects per resource), an event log with resourceVersions, and the HTTP server."""

    def __init__(self, token: str | None = None, serve: tuple[str, ...] | None = None) -> None:
        #: With a token, every request must carry ``Authorization: Bearer <token>`` (401 otherwise).
        self.token = token
        #: Resources this server answers (None: all); others are 404, as a CRD not installed.
        self.serve = serve
        self.unauthorized = 0
        self.objects: dict[str, dict[str, dict]] = {res: {} for res in _KINDS}
        self.events: list[tuple[int, str, str, dict]] = []
        self.rv = 100
        self.compacted = 0
        self.requests: list[str] = []
        self.leases: dict[tuple[str, str], dict] = {}
        self.lease_writes: list[tuple[str, str, float]] = []  # (method, holderIdentity, when) accepted
        self.down = False
        self._cond = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self.compacted = -1  # ends open watches
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def put(self, res: str, obj: dict) -> None:
        """Create or replace an object (ADDED or MODIFIED event)."""
        with self._cond:
            self.rv += 1
            api, kind = _KINDS[res]
            obj = {"apiVersion": api, "kind": kind, **obj}
            obj["metadata"] = {**obj["metadata"], "resourceVersion": str(self.rv)}
            key = _key(obj)
            typ = "MODIFIED" if key in self.objects[res] else "ADDED"
            self.objects[res][key] = obj
            self.events.append((self.rv, res, typ, obj))
            self._cond.notify_all()

    def delete(self, res: str, namespace: str | None, name: str) -> None:
        with self._cond:
            self.rv += 1
            obj = self.objects[res].pop(f"{namespace or ''}/{name}")
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
            self.events.append((self.rv, res, "DELETED", obj))
            self._cond.notify_all()

    def compact(self) -> None:
        """Forget the event history and end open watches: clients must relist (410 Gone)."""
        with self._cond:
            self.rv += 1
            self.compacted = self.rv
            self.events.clear()
            self._cond.notify_all()

    def list_body(self, res: str) -> dict:
        api, kind = _KINDS[res]
        with self._cond:
            items = list(self.objects[res].values())
            return {
                "apiVersion": api,
                "kind": f"{kind}List",
                "metadata": {"resourceVersion": str(self.rv)},
                "items": items,
            }

    def watch(self, res: str, since: int, timeout_s: float, write) -> None:
        """Stream events of ``res`` after ``since`` until the timeout, a compaction or stop."""
        deadline = time.monotonic() + timeout_s
        epoch = self.compacted
        if since < self.compacted:
            write(_gone(since))
            return
        with self._cond:
            while True:
                pending = [(rv, t, o) for rv, r, t, o in self.events if r == res and rv > since]
                if pending:
                    self._cond.release()
                    try:
                        for rv, typ, obj in pending:
                            write({"type": typ, "object": obj})
                            since = rv
                    finally:
                        self._cond.acquire()
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self.compacted != epoch:
                    return
                self._cond.wait(min(left, 0.2))

    def lease(self, method: str, ns: str, name: str | None, body: dict | None) -> tuple[int, dict]:
        """One Lease request → (HTTP status, body), with the apiserver's conflict rules."""
        with self._cond:
            key = (ns, name or (body or {}).get("metadata", {}).get("name", ""))
            current = self.leases.get(key)
            if method == "GET":
                return (200, current) if current else (404, _status(404, "NotFound", f"lease {key[1]}"))
            assert body is not None
            if method == "POST" and current is not None:
                return 409, _status(409, "AlreadyExists", f"lease {key[1]} already exists")
            if method == "PUT":
                if current is None:
                    return 404, _status(404, "NotFound", f"lease {key[1]}")
                if body.get("metadata", {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
                    return 409, _status(409, "Conflict", "the object has been modified")
            self.rv += 1
            meta = {
                **body.get("metadata", {}),
                "namespace": ns,
                "name": key[1],
                "resourceVersion": str(self.rv),
            }
            obj = {**body, "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta}
            self.leases[key] = obj
            holder = (obj.get("spec") or {}).get("holderIdentity") or ""
            self.lease_writes.append((method, holder, time.monotonic()))
            return (201 if method == "POST" else 200), obj


def _status(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
        "metadata": {},
    }


def _key(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace') or ''}/{meta['name']}"


def _gone(since: int) -> dict:
    return {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"too old resource version: {since}",
            "reason": "Expired",
            "code": 410,
        },
    }


def _handler(api: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _lease(self, method: str) -> bool:
            m = _LEASE.match(urlparse(self.path).path)
            if m is None:
                return False
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            if api.down:
                self._json(503, _status(503, "ServiceUnavailable", "apiserver down"))
            else:
                self._json(*api.lease(method, m.group(1), m.group(2), body))
            return True

        def do_POST(self) -> None:
            api.requests.append(self.path)
            if not self._lease("POST"):
                self._json(404, _status(404, "NotFound", self.path))

        def do_PUT(self) -> None:
            api.requests.append(self.path)
            if not self._lease("PUT"):
                self._json(404, _status(404, "NotFound", self.path))

        def do_GET(self) -> None:
            url = urlparse(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            api.requests.append(self.path)
            if api.token is not None and self.headers.get("Authorization") != f"Bearer {api.token}":
                api.unauthorized += 1
                return self._json(
                    401,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "code": 401,
                        "reason": "Unauthorized",
                    },
                )
            if self._lease("GET"):
                return
            spec = _PATHS.get(url.path)
            if spec is not None and api.serve is not None and spec[0] not in api.serve:
                spec = None
            if spec is None:
                return self._json(
                    404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}
                )
            if q.get("watch") in ("true", "1"):
                return self._watch(spec[0], q)
            return self._json(200, api.list_body(spec[0]))

        def _json(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _watch(self, res: str, q: dict) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def write(event: dict) -> None:
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()

            try:
                api.watch(res, int(q.get("resourceVersion") or 0), float(q.get("timeoutSeconds") or 5), write)
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler
