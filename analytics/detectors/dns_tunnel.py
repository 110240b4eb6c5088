"""Detector 9: DNS tunnelling suspects: a pod sending many DNS queries with unusually long names.

Tunnels (iodine, dnscat2, DNSExfiltrator) carry data in the query name, so their names run near
the 253-byte limit while ordinary names stay short. Needs the L7 rows of ``netobs sample``.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from analytics.config import DnsTunnelConfig
from analytics.findings import Finding


def detect_dns_tunnelling(
    current: pd.DataFrame, cfg: DnsTunnelConfig, window: tuple[datetime, datetime]
) -> list[Finding]:
    """``current`` rows: src, pod, namespace, long_queries, queries, longest (one bucket)."""
    out = []
    for row in current.itertuples(index=False):
        if int(row.long_queries) < cfg.min_queries:
            continue
        who = f"{row.namespace}/{row.pod}" if row.pod else str(row.src)
        out.append(
            Finding(
                detector="dns_tunnelling",
                severity=cfg.severity,
                score=round(int(row.long_queries) / cfg.min_queries, 2),
                window_start=window[0],
                window_end=window[1],
                entities={"src": str(row.src), "pod": str(row.pod), "namespace": str(row.namespace)},
                summary=f"{who} sent {row.long_queries} DNS queries with names of {cfg.min_length}+ "
                f"characters (longest {row.longest}) out of {row.queries}",
                evidence={
                    "long_queries": int(row.long_queries),
                    "queries": int(row.queries),
                    "longest": int(row.longest),
                },
            )
        )
    return out
