"""Who is asking: bearer tokens (stored as SHA-256 hashes) or a client certificate, mapped to a role.

Roles, least to most: ``viewer`` (read-only SELECT on netobs's own tables, tenant-scoped when
bound to tenants), ``operator`` (also writes netobs's own tables and reads ``system``, what the
``netobs`` commands need), ``admin`` (any statement). :func:`authenticate` turns request headers
and the verified peer certificate into a :class:`Principal`; :func:`netobs.sqlguard.guard_sql`
decides what that principal may run. Both are reusable by any route of the control server.

Tokens are 256-bit random strings (``netobs token new``); a plain SHA-256 is enough to keep them
useless at rest (no dictionary to try against them, unlike passwords), and comparisons are
constant-time.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import TypeAdapter, ValidationError

from netobs.config import ControlAuthConfig, PrincipalConfig

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
TOKEN_PREFIX = "nbt_"
#: Environment variable the ``netobs`` commands read their token from (over control.auth.token_file).
TOKEN_ENV = "NETOBS_TOKEN"


class AuthError(Exception):
    """The request is refused; ``status`` is the HTTP status to answer with (401 or 403)."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Principal:
    """An authenticated caller (or the anonymous loopback caller, ``name`` ``anonymous``)."""

    name: str
    role: Role
    tenants: tuple[str, ...] = ()
    via: str = "token"  # token | certificate | anonymous

    def at_least(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def load_principals(config: ControlAuthConfig) -> tuple[PrincipalConfig, ...]:
    """The configured principals plus those of ``principals_file`` (a YAML list; a secret mount)."""
    found = list(config.principals)
    if config.principals_file is not None:
        path = Path(config.principals_file)
        try:
            data = yaml.safe_load(path.read_text()) or []
        except OSError as e:
            raise ValueError(f"{path}: cannot read: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from None
        try:
            found += TypeAdapter(tuple[PrincipalConfig, ...]).validate_python(data)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise ValueError(f"{path}: entry {where}: {first['msg']}") from None
    names = [p.name for p in found]
    if len(set(names)) != len(names):
        raise ValueError("control.auth principals: names must be unique")
    return tuple(found)


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Maps a request's credential to a :class:`Principal`; constructed from the auth config."""

    def __init__(self, config: ControlAuthConfig, now: Any = None):
        self.config = config
        self.principals = load_principals(config)
        self._now = now or (lambda: dt.datetime.now(dt.UTC))

    @property
    def configured(self) -> bool:
        return bool(self.principals)

    def authenticate(
        self,
        headers: Mapping[str, str],
        peer_cert: dict[str, Any] | None,
        peer_host: str,
        *,
        basic: bool = False,
        token_only: bool = False,
    ) -> Principal:
        """The caller. ``basic``: also ``Authorization: Basic`` whose password is a token (what
        ClickHouse clients send; the user name must be empty, ``default`` or the principal's
        name). ``token_only``: only a credential in the Authorization header counts (no client
        certificate, no anonymous loopback): credentials a browser attaches by itself to a
        cross-site request are not accepted."""
        auth = headers.get("Authorization") or headers.get("authorization") or ""
        if auth:
            scheme, _, token = auth.partition(" ")
            if basic and scheme.lower() == "basic":
                return self._by_basic(token.strip())
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError(
                    "expected 'Authorization: Bearer <token>'"
                    + (" or Basic with a token as the password" if basic else "")
                )
            return self._by_token(token.strip())
        if token_only:
            raise AuthError(
                "authentication required: a token (Authorization: Bearer, or Basic with the token as password)"
            )
        cn = _common_name(peer_cert)
        if cn is not None:
            for p in self.principals:
                if p.cert_cn is not None and hmac.compare_digest(p.cert_cn, cn):
                    self._check_expiry(p)
                    return Principal(p.name, p.role, p.tenants, "certificate")
            raise AuthError(f"client certificate CN={cn!r} is not a configured principal", 403)
        role = self.config.anonymous_role
        if role != "none" and is_loopback(peer_host):
            return Principal("anonymous", role, (), "anonymous")
        raise AuthError("authentication required (a bearer token or a client certificate)")

    def _by_basic(self, credentials: str) -> Principal:
        try:
            user, sep, token = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError("malformed Basic credentials") from None
        if not sep or not token:
            raise AuthError("Basic credentials need a token as the password")
        principal = self._by_token(token)
        if user not in ("", "default", principal.name):
            raise AuthError("user name does not match the token's principal")
        return principal

    def _by_token(self, token: str) -> Principal:
        digest = hash_token(token)
        match = None
        for p in self.principals:  # every entry compared: the time taken says nothing
            if p.token_sha256 is not None and hmac.compare_digest(p.token_sha256, digest):
                match = p
        if match is None:
            raise AuthError("invalid token")
        self._check_expiry(match)
        return Principal(match.name, match.role, match.tenants, "token")

    def _check_expiry(self, p: PrincipalConfig) -> None:
        if p.expires is not None and self._now() >= p.expires:
            raise AuthError(f"credential of {p.name!r} expired at {p.expires.isoformat()}")


def _common_name(cert: dict[str, Any] | None) -> str | None:
    """The subject CN of a certificate as ``ssl.SSLSocket.getpeercert()`` returns it (verified)."""
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def client_token(config: ControlAuthConfig) -> str | None:
    """The token the ``netobs`` commands send: ``$NETOBS_TOKEN``, else ``control.auth.token_file``."""
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env.strip()
    if config.token_file is not None:
        try:
            return Path(config.token_file).read_text().strip() or None
        except OSError as e:
            raise ValueError(f"control.auth.token_file {config.token_file}: {e.strerror}") from None
    return None


__all__ = [
    "ROLES",
    "TOKEN_ENV",
    "AuthError",
    "Authenticator",
    "Principal",
    "Role",
    "client_token",
    "hash_token",
    "is_loopback",
    "load_principals",
    "new_token",
]
