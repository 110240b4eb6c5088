"""Findings: what a detector reports, with an id stable across reruns of the same window.

A finding names its detector, severity, score, window and entities (center pair, tenant,
service, hosts) and carries evidence (expected vs observed, top contributors). Its id is a
hash of (detector, window, entities), so rerunning a window updates the finding instead of
adding a duplicate.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Finding:
    detector: str
    severity: str
    score: float
    window_start: datetime
    window_end: datetime
    entities: dict[str, str]
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")

    @property
    def id(self) -> str:
        key = json.dumps(
            [self.detector, _iso(self.window_start), _iso(self.window_end), sorted(self.entities.items())],
            separators=(",", ":"),
        )
        return hashlib.sha256(key.encode()).hexdigest()[:24]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["id"] = self.id
        out["window_start"] = _iso(self.window_start)
        out["window_end"] = _iso(self.window_end)
        return out


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
