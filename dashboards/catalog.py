"""The dashboards netobs ships, built from the configuration, and the walk over their queries.

One explicit dict names them (file name → builder); ``build_all`` gives the JSON models with
the configured database and data source uid. ``queries`` walks every panel target and every
variable query, which is what export checks and ``dashboards check`` runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dashboards import compliance, health, l7, planes, tenant, traffic
from dashboards.model import Dashboard


def _traffic(settings: Any) -> Dashboard:
    dr = tuple(settings.analytics.dr_traffic.dr_centers)
    return traffic.build(settings.store.database, settings.dashboards.datasource_uid, dr)


#: File name (without .json) → builder taking the Settings.
BUILDERS: dict[str, Callable[[Any], Dashboard]] = {
    "cross-center": _traffic,
    "tenant": lambda s: tenant.build(s.store.database, s.dashboards.datasource_uid),
    "collection-health": lambda s: health.build(s.store.database, s.dashboards.datasource_uid),
    "compliance": lambda s: compliance.build(s.store.database, s.dashboards.datasource_uid),
    "protocol-context": lambda s: l7.build(s.store.database, s.dashboards.datasource_uid),
    "planes-qos": lambda s: planes.build(s.store.database, s.dashboards.datasource_uid),
}


def build_all(settings: Any) -> dict[str, dict[str, Any]]:
    """File name → dashboard JSON model."""
    return {name: build(settings).to_json() for name, build in BUILDERS.items()}


@dataclass(frozen=True)
class Query:
    """One SQL text of a dashboard: a panel target or a variable's values query."""

    dashboard: str  # uid
    where: str  # "panel 3 'Title'" or "variable tenant"
    sql: str
    panel: dict[str, Any] | None = None


def variable_queries(model: dict[str, Any]) -> Iterator[Query]:
    for var in model["templating"]["list"]:
        if var.get("type") == "query":
            yield Query(model["uid"], f"variable {var['name']}", var["query"])


def panel_queries(model: dict[str, Any]) -> Iterator[Query]:
    for panel in model["panels"]:
        for t in panel.get("targets", []):
            yield Query(model["uid"], f"panel {panel['id']} {panel['title']!r}", t["rawSql"], panel)


__all__ = ["BUILDERS", "Query", "build_all", "panel_queries", "variable_queries"]
