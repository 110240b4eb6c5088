"""Alerts: what the NOC and compliance teams are told, built from ``findings`` and ``violations`` rows.

An alert's fingerprint hashes its source, name (detector or policy rule) and entities, not its
window: the same anomaly or violation seen in consecutive windows is one alert that stays firing,
and resolves ``resolve_after`` after the end of the last window that had it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.config import SEVERITY_RANK, LinksConfig

SOURCES = ("findings", "violations")
#: Entity keys (findings) and columns (violations) gathered into the tenant/center/zone/site labels.
_GATHER = {
    "tenant": ("tenant", "src_tenant", "dst_tenant"),
    "center": ("center", "src_center", "dst_center", "dr_center", "away_from"),
    "zone": ("zone", "src_zone", "dst_zone"),
    "site": ("site", "src_site", "dst_site"),
}
_ENDS = ("tenant", "namespace", "workload", "zone", "center", "site", "ip")


@dataclass(frozen=True)
class Alert:
    """One alert. ``ends_at`` is set once it is resolved; ``last_seen`` ends its newest window."""

    fingerprint: str
    source: str
    name: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    last_seen: datetime
    ends_at: datetime | None = None
    generator_url: str = ""
    row_id: str = ""
    deleted: bool = field(default=False, compare=False)

    @property
    def firing(self) -> bool:
        return self.ends_at is None

    @property
    def state(self) -> str:
        return "firing" if self.firing else "resolved"

    @property
    def rank(self) -> int:
        return SEVERITY_RANK.get(self.severity, 0)

    @property
    def content_hash(self) -> str:
        """What makes a change worth a notification: severity, state, labels (not the numbers)."""
        key = json.dumps([self.severity, self.state, sorted(self.labels.items())], separators=(",", ":"))
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("deleted")
        for k in ("starts_at", "last_seen", "ends_at"):
            out[k] = iso(out[k]) if out[k] is not None else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        times = {
            k: parse_iso(data[k]) if data.get(k) else None for k in ("starts_at", "last_seen", "ends_at")
        }
        return cls(**{**data, **times})


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _ms(value: int | float) -> datetime:
    return datetime.fromtimestamp(float(value) / 1000, UTC)


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, separators=(",", ":"), default=str).encode()).hexdigest()[:24]


def _label_name(key: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", key)
    return name if re.match(r"[A-Za-z_]", name) else f"_{name}"


def gathered(values: dict[str, str]) -> dict[str, str]:
    """tenant/center/zone/site labels: every value of their keys, comma-joined, sorted, non-empty."""
    out = {}
    for label, keys in _GATHER.items():
        found = {values[k] for k in keys if values.get(k)}
        if label == "center" and values.get("center_pair"):
            found.update(x for x in values["center_pair"].split("-") if x)
        if found:
            out[label] = ",".join(sorted(found))
    return out


def _fill(template: str, **values: str) -> str:
    try:
        return template.format(**values) if template else ""
    except (KeyError, IndexError, ValueError):
        return template  # a template naming an unknown field is shown as written, not a crash


def from_finding(row: dict[str, Any], links: LinksConfig) -> Alert:
    """The alert of one ``findings`` row (times as epoch milliseconds, entities as key/value lists)."""
    entities = {str(k): str(v) for k, v in zip(row["entity_keys"], row["entity_values"], strict=True)}
    detector, severity = str(row["detector"]), str(row["severity"])
    if severity not in SEVERITY_RANK:
        raise ValueError(f"unknown severity {severity!r}")
    start, end = _ms(row["window_start_ms"]), _ms(row["window_end_ms"])
    if end < start:
        raise ValueError(f"window ends ({iso(end)}) before it starts ({iso(start)})")
    labels = {_label_name(k): v for k, v in entities.items() if v}
    labels |= gathered(entities)
    labels |= {"alertname": detector, "source": "findings", "detector": detector, "severity": severity}
    # type and planned (analytics/findings.schema.json); rows of a table older than them have neither.
    if row.get("type"):
        labels["type"] = str(row["type"])
    if row.get("planned"):
        labels["planned"] = "true"
    evidence = str(row.get("evidence") or "")
    names = {"source": "findings", "name": detector, "id": str(row["id"])}
    annotations = {
        "summary": str(row["summary"]),
        "description": f"{detector} ({severity}, score {float(row['score']):.2f}) in [{iso(start)}, {iso(end)})"
        + (f"; evidence: {evidence[:1000]}" if evidence not in ("", "{}") else ""),
        "runbook_url": _fill(links.runbook_url, **names),
    }
    return Alert(
        fingerprint=_fingerprint("findings", detector, sorted(entities.items())),
        source="findings",
        name=detector,
        severity=severity,
        labels=labels,
        annotations={k: v for k, v in annotations.items() if v},
        starts_at=start,
        last_seen=end,
        generator_url=_fill(links.generator_url, **names),
        row_id=str(row["id"]),
    )


def _end(row: dict[str, Any], end: str) -> str:
    parts = [row.get(f"{end}_{a}") or "" for a in ("tenant", "namespace", "workload")]
    name = "/".join(p for p in parts if p) or str(row.get(f"{end}_ip") or "?")
    where = ",".join(str(row.get(f"{end}_{a}")) for a in ("center", "zone") if row.get(f"{end}_{a}"))
    return f"{name} ({where})" if where else name


def from_violation(row: dict[str, Any], links: LinksConfig) -> Alert:
    """The alert of one ``violations`` row (times as epoch milliseconds); tombstones are marked deleted."""
    policy, rule, severity = str(row["policy"]), str(row["rule"]), str(row["severity"])
    if severity not in SEVERITY_RANK:
        raise ValueError(f"unknown severity {severity!r}")
    ends = {f"{e}_{a}": str(row.get(f"{e}_{a}") or "") for e in ("src", "dst") for a in _ENDS}
    labels = {k: v for k, v in ends.items() if v and not k.endswith("_ip")} | gathered(ends)
    labels |= {"alertname": rule, "source": "violations", "policy": policy, "rule": rule}
    labels |= {"rule_type": str(row["rule_type"]), "severity": severity}
    if row.get("owner"):
        labels["owner"] = str(row["owner"])
    start, end = _ms(row["window_start_ms"]), _ms(row["window_end_ms"])
    regulations = ", ".join(row.get("regulations") or ())
    names = {"source": "violations", "name": rule, "id": str(row["id"]), "policy": policy, "rule": rule}
    annotations = {
        "summary": f"{rule} ({policy}): {_end(row, 'src')} → {_end(row, 'dst')}: "
        f"{int(row['flows'])} flows, {int(row['bytes'])} bytes",
        "description": f"{row['rule_type']} rule {rule} of policy {policy} violated in [{iso(start)}, {iso(end)}), "
        f"first {iso(_ms(row['first_seen_ms']))}, last {iso(_ms(row['last_seen_ms']))}; "
        f"{int(row['packets'])} packets" + (f"; regulations: {regulations}" if regulations else ""),
        "runbook_url": _fill(links.runbook_url, **names),
        "report_url": _fill(links.report_url, **names),
    }
    return Alert(
        fingerprint=_fingerprint("violations", policy, rule, sorted(ends.items())),
        source="violations",
        name=rule,
        severity=severity,
        labels=labels,
        annotations={k: v for k, v in annotations.items() if v},
        starts_at=start,
        last_seen=end,
        generator_url=_fill(links.generator_url, **names),
        row_id=str(row["id"]),
        deleted=bool(row.get("deleted")),
    )


def merge(old: Alert | None, new: Alert, now: datetime) -> Alert | None:
    """The alert after new evidence: newer windows refresh it, a tombstone of its newest window resolves it.

    Evidence older than what is known (a rerun of an old window) changes nothing but ``starts_at``.
    """
    if new.deleted:
        if old is None or not old.firing or old.last_seen > new.last_seen:
            return old
        return replace(old, ends_at=now)
    if old is None:
        return new
    if new.last_seen > old.last_seen:
        if old.firing:
            return replace(new, starts_at=min(old.starts_at, new.starts_at))
        return new  # fired again after it resolved: a new episode
    if old.firing and new.starts_at < old.starts_at:
        return replace(old, starts_at=new.starts_at)
    return old


def settle(alert: Alert, now: datetime, resolve_after_s: float) -> Alert:
    """Resolved (ends at its last window's end) once no window had it for ``resolve_after_s``."""
    if alert.firing and now >= alert.last_seen + timedelta(seconds=resolve_after_s):
        return replace(alert, ends_at=alert.last_seen)
    return alert


__all__ = ["SOURCES", "Alert", "from_finding", "from_violation", "gathered", "iso", "merge", "settle"]
