"""The ``findings`` table: where detectors' findings are kept, one row per finding id.

ReplacingMergeTree keyed by id with the analysis time as version: rerunning a window writes
the same ids again and the newest version wins (reads use FINAL), so reruns update findings
instead of duplicating them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import pyarrow as pa

from analytics.findings import Finding

FINDINGS = "findings"


def create_findings(database: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{FINDINGS}` (\n"
        "    `id` String,\n"
        "    `detector` LowCardinality(String),\n"
        "    `severity` LowCardinality(String),\n"
        "    `score` Float64,\n"
        "    `window_start` DateTime('UTC'),\n"
        "    `window_end` DateTime('UTC'),\n"
        "    `entities` Map(String, String),\n"
        "    `summary` String,\n"
        "    `evidence` String COMMENT 'JSON',\n"
        "    `analyzed_at` DateTime64(3, 'UTC')\n"
        ")\nENGINE = ReplacingMergeTree(analyzed_at)\n"
        "PARTITION BY toYYYYMM(window_start)\nORDER BY (detector, id)"
    )


def findings_table(findings: Iterable[Finding], analyzed_at_ms: int | None = None) -> pa.Table:
    fs = list(findings)
    now = analyzed_at_ms or int(time.time() * 1000)
    return pa.table(
        {
            "id": [f.id for f in fs],
            "detector": [f.detector for f in fs],
            "severity": [f.severity for f in fs],
            "score": pa.array([float(f.score) for f in fs], pa.float64()),
            "window_start": pa.array([f.window_start for f in fs], pa.timestamp("s", tz="UTC")),
            "window_end": pa.array([f.window_end for f in fs], pa.timestamp("s", tz="UTC")),
            "entities": pa.array([list(f.entities.items()) for f in fs], pa.map_(pa.string(), pa.string())),
            "summary": [f.summary for f in fs],
            "evidence": [json.dumps(f.evidence, sort_keys=True, default=str) for f in fs],
            "analyzed_at": pa.array([now] * len(fs), pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        }
    )


def save(store, database: str, findings: list[Finding]) -> int:
    """Insert (or, for known ids, update) findings; returns how many were written."""
    if not findings:
        return 0
    store.execute(create_findings(database))
    store.insert(findings_table(findings), target=FINDINGS)
    return len(findings)


def load(store, database: str, start: str, end: str) -> pa.Table:
    """Findings whose window overlaps [start, end), newest version of each id."""
    return store.query_arrow(
        f"SELECT id, detector, severity, score, window_start, window_end, entities, summary, evidence "
        f"FROM `{database}`.`{FINDINGS}` FINAL "
        f"WHERE window_start < toDateTime('{end}', 'UTC') AND window_end > toDateTime('{start}', 'UTC') "
        f"ORDER BY window_start, detector, id"
    )
