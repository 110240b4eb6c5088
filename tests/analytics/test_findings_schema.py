"""The findings schema (analytics/findings.schema.json) is what analyze, the table and alerts use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jsonschema
import pytest

from alerts.config import LinksConfig
from alerts.model import from_finding
from analytics.findings import Finding, schema
from analytics.findings_table import FINDINGS_TABLE

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def test_the_schema_is_valid_and_every_type_has_its_detector():
    jsonschema.Draft202012Validator.check_schema(schema())
    detectors = set(schema()["properties"]["detector"]["enum"])
    from analytics.detectors import DETECTORS

    assert detectors == set(DETECTORS)


def test_findings_validate_and_bad_ones_do_not():
    f = Finding("volume", "warning", 7.1, T0, T0 + timedelta(hours=1), {"tenant": "t", "port": "443"}, "drop",
                {"z": [None, -7.1]}, type="volume_drop", confidence=0.8)  # fmt: skip
    jsonschema.validate(f.to_json(), schema())
    bad = dict(f.to_json(), type="spike")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in f.to_json().items() if k != "planned"}, schema())
    with pytest.raises(ValueError):
        Finding("volume", "warning", 1, T0, T0, {}, "s", confidence=1.5)


def test_the_table_stores_every_field_of_the_schema():
    stored = set(FINDINGS_TABLE.column_names) | {"start", "end"}  # stored as window_start / window_end
    assert set(schema()["required"]) <= stored


def test_alerts_carry_type_and_planned():
    row = {
        "id": "a" * 24, "detector": "volume", "type": "volume_drop", "severity": "info", "planned": 1,
        "confidence": 0.9, "score": 7.0, "window_start_ms": 0, "window_end_ms": 300_000,
        "entity_keys": ["tenant"], "entity_values": ["t"], "summary": "s", "evidence": "{}",
    }  # fmt: skip
    alert = from_finding(row, LinksConfig())
    assert alert.labels["type"] == "volume_drop" and alert.labels["planned"] == "true"
    old = {k: v for k, v in row.items() if k not in ("type", "planned", "confidence")}
    assert "type" not in from_finding(old, LinksConfig()).labels  # a table older than the schema
