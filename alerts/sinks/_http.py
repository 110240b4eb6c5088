"""POST over HTTP(S) with the standard library: TLS options, timeouts, retries with backoff.

Connection errors, timeouts, 429 and 5xx are retried (``retries`` times, the delay doubling from
``backoff_s``); other statuses fail at once. Errors name the URL and status, never a credential.
"""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.error
import urllib.request

from alerts.config import HttpTLSConfig


class SinkError(RuntimeError):
    """A delivery failed; the alerts stay due and are retried next run."""


def ssl_context(tls: HttpTLSConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    return ctx


def _redacted(url: str) -> str:
    """The URL without user:password@ (never in an error message)."""
    scheme, sep, rest = url.partition("://")
    host, at, path = rest.partition("@")
    return f"{scheme}{sep}{path}" if at and "/" not in host else url


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float,
    retries: int,
    backoff_s: float,
    tls: HttpTLSConfig,
) -> int:
    """POST ``body``; returns the 2xx status or raises :class:`SinkError` after the retries."""
    ctx = ssl_context(tls) if url.lower().startswith("https:") else None
    delay, reason = backoff_s, ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(delay)
            delay *= 2
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s, context=ctx) as resp:
                resp.read()
                return int(resp.status)
        except urllib.error.HTTPError as e:
            reason = f"HTTP {e.code}"
            if e.code != 429 and e.code < 500:
                detail = e.read(300).decode("utf-8", "replace").strip()
                raise SinkError(f"POST {_redacted(url)}: {reason} {detail}".strip()) from None
        except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets, TLS, bad replies
            reason = str(getattr(e, "reason", e)) or type(e).__name__
    raise SinkError(f"POST {_redacted(url)} failed after {retries + 1} attempts: {reason}")
