"""Detector 10: a pod that used TLS to a server starts talking plaintext to it (a downgrade).

A client that always spoke TLS to a server and now sends it clear text has lost its TLS (a changed
config, a proxy or sidecar bypassed, an attacker stripping TLS). Judged per (client, server) pair
from ``netobs sample``'s L7 rows: the pair needs ``min_tls_conversations`` TLS conversations over
the history and at most ``max_plaintext_before`` plaintext ones, and plaintext conversations in the
window. A pod that was always plaintext, or always mixed TLS and plaintext with that server, is no
downgrade; nor is plaintext to a server the pod never spoke TLS to. Reported once: after the window,
the plaintext is in the history.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from analytics.config import PlaintextDowngradeConfig
from analytics.findings import Finding


def _ports(values) -> list[int]:
    return sorted(int(p) for p in (values if values is not None else ()))


def detect_plaintext_downgrade(
    pairs: pd.DataFrame, cfg: PlaintextDowngradeConfig, window: tuple[datetime, datetime]
) -> list[Finding]:
    """``pairs`` rows (:func:`analytics.model.plaintext_after_tls`): src, dst, pod, namespace, tenant,
    client_addr, tls_before, plaintext_before, tls_now, plaintext_now, last_tls, first_plaintext,
    tls_ports, plaintext_ports, http_hosts."""
    out = []
    for row in pairs.itertuples(index=False):
        if (
            int(row.tls_before) < cfg.min_tls_conversations
            or int(row.plaintext_before) > cfg.max_plaintext_before
        ):
            continue
        tls_ports, plain_ports = _ports(row.tls_ports), _ports(row.plaintext_ports)
        hosts = sorted(str(h) for h in (row.http_hosts if row.http_hosts is not None else ()))
        first = datetime.fromtimestamp(int(row.first_plaintext), UTC)
        out.append(
            Finding(
                detector="plaintext_downgrade",
                severity=cfg.severity,
                score=round(int(row.plaintext_now) / max(int(row.plaintext_now) + int(row.tls_now), 1), 2),
                window_start=window[0],
                window_end=window[1],
                entities={
                    "src": str(row.src),
                    "dst": str(row.dst),
                    "pod": str(row.pod),
                    "namespace": str(row.namespace),
                    "tenant": str(row.tenant),
                },  # fmt: skip
                summary=f"{row.src} talked plaintext to {row.dst} (port {','.join(map(str, plain_ports))}) in "
                f"{row.plaintext_now} conversations from {first:%Y-%m-%d %H:%M} UTC; before, "
                f"{row.tls_before} conversations to it were TLS (port {','.join(map(str, tls_ports))})",
                evidence={
                    "tls_before": int(row.tls_before),
                    "plaintext_before": int(row.plaintext_before),
                    "plaintext_now": int(row.plaintext_now),
                    "tls_now": int(row.tls_now),
                    "tls_ports": tls_ports,
                    "plaintext_ports": plain_ports,
                    "last_tls": datetime.fromtimestamp(int(row.last_tls), UTC).isoformat(),
                    "first_plaintext": first.isoformat(),
                    "http_hosts": hosts,
                    "client_addr": str(row.client_addr),
                },
            )
        )
    return out
