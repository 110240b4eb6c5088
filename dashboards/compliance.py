"""Compliance: policy violations over time by rule and severity, the open violations, and the
detectors' findings by detector and severity.

``violations`` and ``findings`` are ReplacingMergeTree tables read with FINAL. Violations keep
tombstones (``deleted = 1``) for rows a later evaluation withdrew: the time filter sits inside
the FINAL subquery (window_start is the same in every version of a row) and ``deleted = 0``
outside it, as ``analytics.policy.evaluate.live`` does.
"""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, query_variable
from dashboards.model import unit_override as _unit
from dashboards.sql import any_of, table

UID = "netobs-compliance"


def _violations(database: str) -> str:
    inner = (
        f"SELECT * FROM {table(database, 'violations')} FINAL WHERE $__timeFilter_ms(window_start) "
        f"AND {any_of('policy', 'policy')}"
    )
    return f"(SELECT * FROM ({inner}) WHERE deleted = 0 AND {any_of('severity', 'severity')})"


def _findings(database: str) -> str:
    return (
        f"(SELECT * FROM {table(database, 'findings')} FINAL WHERE $__timeFilter(window_start) "
        f"AND {any_of('severity', 'severity')})"
    )


def build(database: str, uid: str) -> Dashboard:
    v, f = _violations(database), _findings(database)
    d = Dashboard(
        UID,
        "Compliance",
        "Network policy violations and anomaly findings.",
        ("netobs", "compliance", "policy"),
        uid,
        time_from="now-7d",
        refresh="5m",
    )
    d.variables = [
        query_variable(
            "policy",
            "Policy",
            f"SELECT DISTINCT policy FROM {table(database, 'violations')} "
            "WHERE $__timeFilter_ms(window_start) ORDER BY policy",
            uid,
        ),
        query_variable(
            "severity",
            "Severity",
            f"SELECT DISTINCT severity FROM (SELECT severity FROM {table(database, 'violations')} "
            f"UNION ALL SELECT severity FROM {table(database, 'findings')}) ORDER BY severity",
            uid,
        ),
    ]
    d.panels = [
        Panel("stat", "Violations (live)", f"SELECT uniqExact(id) AS violations FROM {v}",
              width=6, height=5, steps=((1, "red"),)),
        Panel("stat", "Rules violated", f"SELECT uniqExact(policy, rule) AS rules FROM {v}",
              width=6, height=5, steps=((1, "orange"),)),
        Panel("stat", "Violating traffic", f"SELECT sum(bytes) AS bytes FROM {v}",
              width=6, height=5, unit="bytes"),
        Panel("stat", "Findings", f"SELECT uniqExact(id) AS findings FROM {f}",
              width=6, height=5, steps=((1, "orange"),)),
        Panel(
            "timeseries", "Violations by rule",
            "SELECT $__timeInterval(window_start) AS time, rule, uniqExact(id) AS violations "
            f"FROM {v} GROUP BY time, rule ORDER BY time",
        ),
        Panel(
            "timeseries", "Violations by severity",
            "SELECT $__timeInterval(window_start) AS time, severity, uniqExact(id) AS violations "
            f"FROM {v} GROUP BY time, severity ORDER BY time",
        ),
        Panel(
            "table", "Open violations",
            "SELECT policy, rule, any(severity) AS severity, src_tenant, dst_tenant, src_zone, dst_zone, "
            "groupUniqArray(concat(src_center, '→', dst_center)) AS centers, sum(bytes) AS bytes, "
            "sum(flows) AS flows, min(first_seen) AS first_seen, max(last_seen) AS last_seen, "
            "uniqExact(id) AS windows, any(owner) AS owner "
            f"FROM {v} GROUP BY policy, rule, src_tenant, dst_tenant, src_zone, dst_zone "
            "ORDER BY last_seen DESC, bytes DESC LIMIT 200",
            width=24, height=10, unit="short",
            overrides=[_unit("bytes", "bytes"), _unit("first_seen", "dateTimeAsIso"),
                       _unit("last_seen", "dateTimeAsIso")],
        ),
        Panel(
            "timeseries", "Findings by detector",
            "SELECT $__timeInterval(window_start) AS time, detector, count() AS findings "
            f"FROM {f} GROUP BY time, detector ORDER BY time",
        ),
        Panel(
            "bargauge", "Findings by type and severity",
            "SELECT concat(type, ' / ', severity) AS type_severity, count() AS findings "
            f"FROM {f} GROUP BY type_severity ORDER BY findings DESC",
        ),
        Panel(
            "table", "Latest findings",
            "SELECT window_start, window_end, detector, type, severity, planned, round(confidence, 2) AS confidence, "
            "round(score, 2) AS score, summary, "
            f"toString(entities) AS entities FROM {f} ORDER BY window_start DESC, score DESC LIMIT 100",
            width=24, height=10, overrides=[_unit("window_start", "dateTimeAsIso")],
        ),
    ]  # fmt: skip
    return d


__all__ = ["UID", "build"]
