"""Findings: what a detector reports, in one documented shape (``analytics/findings.schema.json``).

A finding names its detector and its ``type`` (``volume_drop``, ``port_scan``, ...), severity,
window, whether it fell in a planned window (``planned``: then it is ``info`` and carries the
window's note), a confidence, the entities it is about (the affected service's tenant, workload,
centers, port, proto, ...) and its evidence. Its id hashes (detector, type, window, entities),
so rerunning a window updates the finding instead of adding a duplicate.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

SEVERITIES = ("info", "warning", "critical")
SCHEMA_PATH = Path(__file__).with_name("findings.schema.json")


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
    type: str = ""  # e.g. volume_drop; the detector's name when it has a single kind
    planned: bool = False
    confidence: float = 1.0

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")
        if not self.type:
            object.__setattr__(self, "type", self.detector)
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], not {self.confidence!r}")

    @property
    def id(self) -> str:
        key = json.dumps(
            [
                self.detector,
                self.type,
                _iso(self.window_start),
                _iso(self.window_end),
                sorted(self.entities.items()),
            ],
            separators=(",", ":"),
        )
        return hashlib.sha256(key.encode()).hexdigest()[:24]

    def to_json(self) -> dict[str, Any]:
        """The finding as the schema describes it (``analyze --output jsonl`` writes one per line)."""
        return {
            "id": self.id,
            "detector": self.detector,
            "type": self.type,
            "severity": self.severity,
            "start": _iso(self.window_start),
            "end": _iso(self.window_end),
            "planned": self.planned,
            "confidence": round(float(self.confidence), 3),
            "score": float(self.score),
            "entities": {k: str(v) for k, v in self.entities.items()},
            "summary": self.summary,
            "evidence": json.loads(json.dumps(self.evidence, default=str)),
        }


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of a finding (the one in the repository, shipped with the package)."""
    return json.loads(SCHEMA_PATH.read_text())


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
