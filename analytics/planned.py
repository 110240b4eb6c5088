"""Planned windows, honoured the same way for every detector.

A finding is a planned window's expected effect when the window covers it in time (the finding
overlaps [start, end + one bucket of export lag)), in place (one of the finding's centers is among
the window's, or the window names none) and in tenant (likewise), and its detector is one the
window expects. Such a finding is kept, as ``info`` with ``planned: true`` and the window's kind
and note in its evidence: the NOC sees that the drill did what it should, alerts (which start at
``warning`` by default) stay quiet. Anything else in the same hours keeps its severity.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from analytics.config import Window
from analytics.findings import Finding

#: Entity keys naming centers and tenants.
CENTER_KEYS = ("center", "src_center", "dst_center", "away_from")
TENANT_KEYS = ("tenant", "src_tenant", "dst_tenant")


def centers_of(f: Finding) -> set[str]:
    out = {f.entities[k] for k in CENTER_KEYS if f.entities.get(k)}
    out.update(c for c in f.entities.get("center_pair", "").split("-") if c)
    return out


def tenants_of(f: Finding) -> set[str]:
    out = {f.entities[k] for k in TENANT_KEYS if f.entities.get(k)}
    out.update(f.entities[k].split("/")[0] for k in ("src_service", "dst_service") if f.entities.get(k))
    return out


def window_for(f: Finding, windows: tuple[Window, ...], lag: timedelta) -> Window | None:
    """The planned window of which ``f`` is an expected effect, if any."""
    for w in windows:
        if f.detector not in w.expected:
            continue
        if not (f.window_start < w.end + lag and f.window_end > w.start):
            continue
        if w.centers and not centers_of(f) & set(w.centers):
            continue
        if w.tenants and not tenants_of(f) & set(w.tenants):
            continue
        return w
    return None


def apply(findings: list[Finding], windows: tuple[Window, ...], lag: timedelta) -> list[Finding]:
    """``findings`` with every planned window's expected effects turned into planned ``info`` findings."""
    if not windows:
        return findings
    out = []
    for f in findings:
        w = window_for(f, windows, lag)
        if w is None:
            out.append(f)
            continue
        planned = {
            "kind": w.kind,
            "note": w.note or w.kind,
            "start": w.start.isoformat(),
            "end": w.end.isoformat(),
        }
        out.append(
            replace(
                f,
                severity="info",
                planned=True,
                summary=f"planned ({w.kind}{': ' + w.note if w.note else ''}): {f.summary}",
                evidence={**f.evidence, "planned": planned},
            )
        )
    return out
