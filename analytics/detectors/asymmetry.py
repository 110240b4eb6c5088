"""Detector 5: asymmetric paths, a conversation whose two directions are observed at different centers."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from analytics.findings import Finding


def detect_asymmetric(
    conversations: pd.DataFrame, window: tuple[datetime, datetime], severity: str = "warning"
) -> list[Finding]:
    """``conversations`` rows: src, dst, proto, src_port, dst_port, exporter_center, bytes.

    Each direction is attributed to the center(s) whose exporters saw it; a conversation
    whose forward direction was seen only at one center and its reverse only at another
    crossed the centers by different paths (stateful firewalls drop such traffic).
    """
    if conversations.empty:
        return []
    c = conversations
    forward = c["src"] < c["dst"]
    key_a = c["src"].where(forward, c["dst"])
    key_b = c["dst"].where(forward, c["src"])
    port_a = c["src_port"].where(forward, c["dst_port"])
    port_b = c["dst_port"].where(forward, c["src_port"])
    frame = pd.DataFrame(
        {
            "a": key_a,
            "b": key_b,
            "pa": port_a,
            "pb": port_b,
            "proto": c["proto"],
            "fwd": forward,
            "center": c["exporter_center"],
            "bytes": c["bytes"],
        }
    )
    out = []
    for key, g in frame.groupby(["a", "b", "pa", "pb", "proto"], sort=True):
        there = set(g.loc[g["fwd"], "center"])
        back = set(g.loc[~g["fwd"], "center"])
        if not there or not back or there & back:
            continue
        a, b, pa, pb, proto = key
        out.append(
            Finding(
                detector="asymmetric_path",
                severity=severity,
                score=float(g["bytes"].sum()),
                window_start=window[0],
                window_end=window[1],
                entities={"a": f"{a}:{pa}", "b": f"{b}:{pb}", "proto": str(proto)},
                summary=f"{a}:{pa} → {b}:{pb} seen at {sorted(there)}, the reverse at {sorted(back)}",
                evidence={"forward_centers": sorted(there), "reverse_centers": sorted(back)},
            )
        )
    return out
