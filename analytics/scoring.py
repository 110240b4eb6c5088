"""Score findings against a scenario's labels: precision, recall, F1 and detection delay per detector.

A finding matches a label of its detector when their windows overlap (one bucket of slack)
and the entities they share agree (a label's ``kind`` is the finding's ``type``: ``drop`` matches
``volume_drop``). Planned labels must be matched by ``info`` findings (a planned failover reported
as an incident is a false alarm); negative labels (a planned drill's expected effect) may be
matched by planned ``info`` findings only: anything above ``info`` is a false alarm. Findings
that match nothing are false positives. A label the data cannot show (``excluded``: e.g. the
convention has no exporter that could see it) is left out of the scores, with its reason; its
traffic still explains other detectors' findings.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from analytics.findings import Finding


@dataclass
class Score:
    detector: str
    labels: int = 0
    detected: int = 0
    findings: int = 0
    true_findings: int = 0
    delays_s: list[float] | None = None
    explained: int = 0
    excluded: list[str] | None = None

    @property
    def precision(self) -> float:
        return self.true_findings / self.findings if self.findings else (1.0 if not self.labels else 0.0)

    @property
    def recall(self) -> float:
        return self.detected / self.labels if self.labels else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def row(self, days: float) -> dict:
        delays = sorted(self.delays_s or [])
        return {
            "detector": self.detector,
            "labels": self.labels,
            "detected": self.detected,
            "findings": self.findings,
            "explained": self.explained,
            "precision": round(self.precision, 3),
            "recall": round(self.recall, 3),
            "f1": round(self.f1, 3),
            "false_per_day": round((self.findings - self.true_findings) / days, 2) if days else 0.0,
            "median_delay_min": round(delays[len(delays) // 2] / 60, 1) if delays else None,
            "not_observable": list(self.excluded or []),
        }


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _entity(f: Finding, key: str) -> str | None:
    """The finding's value for a label key; services compare by workload, tenants also via services,
    a label's kind by the finding's type."""
    if key == "kind":
        return None if not f.type else f.type
    value = f.entities.get(key)
    if value is None and key == "tenant":
        value = next((v.split("/")[0] for k, v in sorted(f.entities.items()) if k.endswith("_service")), None)
    if value is not None and key.endswith("_service"):
        value = value.rsplit("/", 1)[-1]
    return value


def _agrees(label: dict, f: Finding) -> bool:
    for k, want in label["entities"].items():
        have = _entity(f, k)
        if k == "kind" and have is not None:
            if not (have == want or have.endswith("_" + want)):
                return False
        elif have not in (None, want):
            return False
    return True


def matches(label: dict, f: Finding, slack: timedelta) -> bool:
    if f.detector != label["detector"] or not _agrees(label, f):
        return False
    return f.window_start < _dt(label["end_ms"]) + slack and f.window_end > _dt(label["start_ms"]) - slack


def score(
    findings: list[Finding], labels: list[dict], bucket: timedelta, excluded: dict[int, str] | None = None
) -> dict[str, Score]:
    """Scores per detector; ``excluded`` maps label positions to why the data cannot show them."""
    scores: dict[str, Score] = defaultdict(lambda: Score(""))
    for lab in labels:
        scores[lab["detector"]].detector = lab["detector"]
    excluded = excluded or {}
    for i, why in sorted(excluded.items()):
        s = scores[labels[i]["detector"]]
        s.excluded = (s.excluded or []) + [why]
    injected = labels  # every injected event, those its own detector cannot see included
    labels = [lab for i, lab in enumerate(labels) if i not in excluded]
    for f in findings:
        scores[f.detector].detector = f.detector
    true_ids: set[str] = set()
    neutral: set[str] = set()  # a drill's expected effect reported as planned info: neither true nor false
    for lab in labels:
        s = scores[lab["detector"]]
        hits = [f for f in findings if matches(lab, f, bucket)]
        if lab.get("negative"):
            # The drill's expected effect reported as planned info is right; above info, a false alarm.
            neutral |= {f.id for f in hits if f.severity == "info" and f.planned}
            continue
        s.labels += 1
        good = [f for f in hits if (f.severity == "info") == bool(lab.get("planned"))]
        if good:
            s.detected += 1
            first = min(f.window_start for f in good)
            s.delays_s = (s.delays_s or []) + [max(0.0, (first - _dt(lab["start_ms"])).total_seconds())]
            true_ids |= {f.id for f in good}
    # A finding that coincides with another detector's injected event (same tenant or
    # entities, same time; a planned drill included) reports a real consequence of it, not a
    # false alarm: it counts as neither true nor false. That holds for an event its own detector
    # cannot see under this convention too (a cross-center asymmetry under probe_egress still
    # adds a conversation that never existed before: a new dependency).
    explained = neutral - true_ids
    # An event left out as not observable (too few sampled packets to count on) that is found
    # anyway is real too: neither true nor false.
    explained |= {
        f.id
        for f in findings
        if f.id not in true_ids
        and any(
            (lab["detector"] != f.detector and _related(lab, f, bucket))
            or (i in excluded and matches(lab, f, bucket))
            for i, lab in enumerate(injected)
        )
    }
    for f in findings:
        if f.id in explained:
            scores[f.detector].explained += 1
            continue
        s = scores[f.detector]
        s.findings += 1
        s.true_findings += f.id in true_ids
    return dict(scores)


def _related(label: dict, f: Finding, slack: timedelta) -> bool:
    overlap = f.window_start < _dt(label["end_ms"]) + slack and f.window_end > _dt(label["start_ms"]) - slack
    tenant = label["entities"].get("tenant")
    return overlap and (tenant is None or _entity(f, "tenant") in (None, tenant))


def table(scores: dict[str, Score], days: float) -> list[dict]:
    return [scores[k].row(days) for k in sorted(scores)]
