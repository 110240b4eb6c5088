"""The ``findings`` table: where detectors' findings are kept, one row per finding id.

Its columns are the fields of ``analytics/findings.schema.json`` (``start``/``end`` stored as
``window_start``/``window_end``). A table made before ``type``, ``planned`` and ``confidence``
existed gets them added (``ALTER TABLE ... ADD COLUMN IF NOT EXISTS``) on the first save.

ReplacingMergeTree keyed by id with the analysis time as version: rerunning a window writes
the same ids again and the newest version wins (reads use FINAL), so reruns update findings
instead of duplicating them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable

import pyarrow as pa

from analytics.findings import Finding
from netobs.tables import Column, Table

FINDINGS = "findings"
FINDINGS_TABLE = Table(
    FINDINGS,
    (
        Column("id", "String"),
        Column("detector", "LowCardinality(String)"),
        Column("type", "LowCardinality(String)", "volume_drop, port_scan, ... (findings.schema.json)"),
        Column("severity", "LowCardinality(String)"),
        Column("planned", "UInt8", "1: inside a planned window that expected it (severity info)"),
        Column("confidence", "Float32"),
        Column("score", "Float64"),
        Column("window_start", "DateTime('UTC')"),
        Column("window_end", "DateTime('UTC')"),
        Column("entities", "Map(String, String)"),
        Column("summary", "String"),
        Column("evidence", "String", "JSON"),
        Column("analyzed_at", "DateTime64(3, 'UTC')"),
    ),
    order_by=("detector", "id"),
    version="analyzed_at",
    partition_by="toYYYYMM(window_start)",
)


#: Columns added after the first release of the table: (name, type, default).
ADDED = (("type", "LowCardinality(String)", "''"), ("planned", "UInt8", "0"), ("confidence", "Float32", "1"))


def create_findings(database: str) -> str:
    (statement,) = FINDINGS_TABLE.create(database)
    return statement


def converge_sql(database: str) -> list[str]:
    """The statements that bring an older ``findings`` table to the current columns."""
    return [
        f"ALTER TABLE `{database}`.`{FINDINGS}` ADD COLUMN IF NOT EXISTS `{name}` {kind} DEFAULT {default}"
        for name, kind, default in ADDED
    ]


def insert_sql(database: str, findings: Iterable[Finding], analyzed_at_ms: int | None = None) -> str:
    """One INSERT statement carrying the findings as JSON rows.

    Plain SQL so that it also travels through a running process's control endpoint (the
    embedded store has one owner); findings are few, so text is no burden.
    """
    now = analyzed_at_ms or int(time.time() * 1000)
    rows = []
    for f in findings:
        j = f.to_json()
        rows.append(
            json.dumps(
                {
                    "id": j["id"],
                    "detector": f.detector,
                    "type": f.type,
                    "severity": f.severity,
                    "planned": int(f.planned),
                    "confidence": float(f.confidence),
                    "score": float(f.score),
                    "window_start": j["start"].replace("T", " ").rstrip("Z"),
                    "window_end": j["end"].replace("T", " ").rstrip("Z"),
                    "entities": {k: str(v) for k, v in f.entities.items()},
                    "summary": f.summary,
                    "evidence": json.dumps(f.evidence, sort_keys=True, default=str),
                    "analyzed_at": now / 1000,
                },
                sort_keys=True,
            )
        )
    return f"INSERT INTO `{database}`.`{FINDINGS}` FORMAT JSONEachRow\n" + "\n".join(rows)


def save(query: Callable[[str], pa.Table], database: str, findings: list[Finding]) -> int:
    """Insert (or, for known ids, update) findings; returns how many were written."""
    if not findings:
        return 0
    query(create_findings(database))
    for statement in converge_sql(database):
        query(statement)
    query(insert_sql(database, findings))
    return len(findings)


def load(query: Callable[[str], pa.Table], database: str, start: str, end: str) -> pa.Table:
    """Findings whose window overlaps [start, end), newest version of each id."""
    return query(
        f"SELECT id, detector, type, severity, planned, confidence, score, window_start, window_end, entities, summary, evidence "
        f"FROM `{database}`.`{FINDINGS}` FINAL "
        f"WHERE window_start < toDateTime('{end}', 'UTC') AND window_end > toDateTime('{start}', 'UTC') "
        f"ORDER BY window_start, detector, id"
    )
